"""The simulator's HTTP server (stdlib `ThreadingHTTPServer`, one thread per request)."""

from __future__ import annotations

import argparse
import hashlib
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlparse


@dataclass
class Fault:
    """One queued fault and how many more requests it applies to.

    Stream shapes: `slow_stream` answers with exactly `max_tokens` words, one chunk each,
    `seconds` apart (a model generating a long answer at its own pace); `stall` sends
    `after` chunks, then nothing for `seconds` (default an hour) and closes.
    """

    kind: str
    count: int = 1
    model: str | None = None
    seconds: float = 0.0
    retry_after: int = 1
    after: int = 1


@dataclass
class State:
    """Shared, lock-protected server state."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    faults: list[Fault] = field(default_factory=list)
    keys: set[str] = field(default_factory=set)
    requests: list[dict[str, Any]] = field(default_factory=list)

    def take_fault(self, model: str) -> Fault | None:
        """Consume one use of the first fault matching `model`."""
        with self.lock:
            for fault in self.faults:
                if fault.model in (None, model):
                    fault.count -= 1
                    if fault.count <= 0:
                        self.faults.remove(fault)
                    return fault
        return None


def _words(prompt: str) -> list[str]:
    return prompt.split() or ["ok"]


def _reply_text(prompt: str, max_tokens: int) -> str:
    # Deterministic: echo the prompt's words, bounded by max_tokens (1 word = 1 token).
    return " ".join(("echo:", *_words(prompt)))[: max(1, max_tokens) * 8].strip()


def _tokens(text: str) -> int:
    return max(1, len(text.split()))


class Handler(BaseHTTPRequestHandler):
    """Routes the OpenAI, Azure and Anthropic wire formats plus the control API."""

    server: ProviderSimulator
    protocol_version = "HTTP/1.1"
    # Headers and body are separate writes: with Nagle on, a keep-alive client's delayed
    # ACK stalls every answer ~40 ms (RFC 896 + RFC 1122 4.2.3.2), which would dwarf
    # what bench/ai_gateway.py measures. Real providers answer without that stall.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: ARG002
        return  # quiet: tests read /_control/requests instead

    # -- helpers -----------------------------------------------------------------
    def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        return json.loads(raw or b"{}")

    def _api_key(self) -> str | None:
        auth = self.headers.get("Authorization", "")
        if auth.lower().startswith("bearer "):
            return auth[7:].strip()
        return self.headers.get("api-key") or self.headers.get("x-api-key")

    # -- control API ---------------------------------------------------------------
    def _control(self, method: str, path: str) -> None:
        state = self.server.state
        if path == "/_control/faults" and method == "POST":
            faults = [Fault(**f) for f in self._body().get("faults", [])]
            with state.lock:
                state.faults.extend(faults)
            self._send_json(200, {"queued": len(faults)})
        elif path == "/_control/faults" and method == "DELETE":
            with state.lock:
                state.faults.clear()
            self._send_json(200, {"cleared": True})
        elif path == "/_control/keys" and method == "PUT":
            keys = set(self._body().get("keys", []))
            with state.lock:
                state.keys = keys
            self._send_json(200, {"keys": len(keys)})
        elif path == "/_control/requests" and method == "GET":
            with state.lock:
                self._send_json(200, {"requests": list(state.requests)})
        elif path == "/_control/requests" and method == "DELETE":
            with state.lock:
                state.requests.clear()
            self._send_json(200, {"cleared": True})
        elif path == "/_control/health":
            self._send_json(200, {"ok": True})
        else:
            self._send_json(404, {"error": "unknown control path"})

    # -- provider API --------------------------------------------------------------
    def do_GET(self) -> None:
        path = urlparse(self.path).path
        if path.startswith("/_control/"):
            self._control("GET", path)
        elif path.endswith("/models"):
            self._send_json(200, {"data": [{"id": "sim-small"}, {"id": "sim-large"}]})
        else:
            self._send_json(404, {"error": {"message": "not found"}})

    def do_DELETE(self) -> None:
        self._control("DELETE", urlparse(self.path).path)

    def do_PUT(self) -> None:
        self._control("PUT", urlparse(self.path).path)

    def do_POST(self) -> None:
        path = urlparse(self.path).path
        if path.startswith("/_control/"):
            self._control("POST", path)
            return
        if path.endswith("/chat/completions"):
            self._generate("openai", path)
        elif path.endswith("/messages"):
            self._generate("anthropic", path)
        else:
            self._send_json(404, {"error": {"message": f"no route {path}"}})

    def _generate(self, flavour: str, path: str) -> None:
        try:
            body = self._body()
        except json.JSONDecodeError:
            self._send_json(400, {"error": {"message": "invalid JSON", "type": "invalid_request"}})
            return
        model = str(body.get("model") or path.split("/deployments/")[-1].split("/")[0])
        key = self._api_key()
        stream = bool(body.get("stream"))
        state = self.server.state
        with state.lock:
            state.requests.append(
                {
                    "path": path,
                    "model": model,
                    "stream": stream,
                    # Only a fingerprint: tests compare keys without the simulator keeping them.
                    "key_sha256": hashlib.sha256(key.encode()).hexdigest() if key else None,
                    "at": time.time(),
                }
            )
            accepted = set(state.keys)
        if accepted and key not in accepted:
            self._send_json(401, {"error": {"message": "invalid api key", "type": "auth"}})
            return
        fault = state.take_fault(model)
        if fault is not None and self._apply_fault(fault):
            return
        messages = body.get("messages") or []
        prompt = " ".join(
            str(m.get("content", "")) for m in messages if isinstance(m, dict)
        ) or str(body.get("prompt", ""))
        max_tokens = int(body.get("max_tokens") or 64)
        text = _reply_text(prompt, max_tokens)
        if fault and fault.kind == "slow_stream":
            text = " ".join(f"t{i}" for i in range(max(1, max_tokens)))
        usage = None if fault and fault.kind == "no_usage" else (_tokens(prompt), _tokens(text))
        truncated = bool(fault and fault.kind == "truncated")
        if stream:
            self._stream(flavour, model, text, usage, truncated, fault)
        else:
            self._send_json(200, self._completion(flavour, model, text, usage))

    def _apply_fault(self, fault: Fault) -> bool:
        """Act out a fault; True when the response is fully handled."""
        if fault.kind == "latency":
            time.sleep(fault.seconds)
            return False
        if fault.kind == "hang":
            time.sleep(fault.seconds or 3600)
            self.close_connection = True
            return True
        if fault.kind == "429":
            self._send_json(
                429,
                {"error": {"message": "rate limited", "type": "rate_limit"}},
                {"Retry-After": str(fault.retry_after)},
            )
            return True
        if fault.kind in {"500", "503", "401"}:
            self._send_json(int(fault.kind), {"error": {"message": "simulated", "type": "server"}})
            return True
        if fault.kind == "malformed":
            raw = b'{"id": "x", "choices": [ {"message": '
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)
            return True
        return False  # no_usage / truncated shape the normal answer

    @staticmethod
    def _completion(
        flavour: str, model: str, text: str, usage: tuple[int, int] | None
    ) -> dict[str, Any]:
        if flavour == "anthropic":
            out: dict[str, Any] = {
                "id": f"msg_{uuid.uuid4().hex[:12]}",
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [{"type": "text", "text": text}],
                "stop_reason": "end_turn",
            }
            if usage:
                out["usage"] = {"input_tokens": usage[0], "output_tokens": usage[1]}
            return out
        out = {
            "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
        }
        if usage:
            out["usage"] = {
                "prompt_tokens": usage[0],
                "completion_tokens": usage[1],
                "total_tokens": usage[0] + usage[1],
            }
        return out

    def _stream(
        self,
        flavour: str,
        model: str,
        text: str,
        usage: tuple[int, int] | None,
        truncated: bool,
        fault: Fault | None = None,
    ) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        words = text.split(" ")
        cut = max(1, len(words) // 2) if truncated else len(words)
        delay = self.server.stream_delay
        if fault and fault.kind == "slow_stream":
            delay = fault.seconds
        stall_at = fault.after if fault and fault.kind == "stall" else None
        try:
            for i, word in enumerate(words[:cut]):
                if i == stall_at:
                    assert fault is not None
                    time.sleep(fault.seconds or 3600)
                    return  # the connection closes, as a provider that gave up would
                piece = word if i == 0 else " " + word
                if flavour == "anthropic":
                    event = {
                        "type": "content_block_delta",
                        "index": 0,
                        "delta": {"type": "text_delta", "text": piece},
                    }
                    self._sse(event, name="content_block_delta")
                else:
                    chunk = {
                        "id": "chatcmpl-sim",
                        "object": "chat.completion.chunk",
                        "model": model,
                        "choices": [
                            {"index": 0, "delta": {"content": piece}, "finish_reason": None}
                        ],
                    }
                    self._sse(chunk)
                if delay:
                    time.sleep(delay)
            if truncated:
                return  # connection closes mid-stream, no final event
            if flavour == "anthropic":
                if usage:
                    self._sse(
                        {
                            "type": "message_delta",
                            "delta": {"stop_reason": "end_turn"},
                            "usage": {"input_tokens": usage[0], "output_tokens": usage[1]},
                        },
                        name="message_delta",
                    )
                self._sse({"type": "message_stop"}, name="message_stop")
            else:
                final: dict[str, Any] = {
                    "id": "chatcmpl-sim",
                    "object": "chat.completion.chunk",
                    "model": model,
                    "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                }
                if usage:
                    final["usage"] = {
                        "prompt_tokens": usage[0],
                        "completion_tokens": usage[1],
                        "total_tokens": usage[0] + usage[1],
                    }
                self._sse(final)
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            return  # the client went away mid-stream

    def _sse(self, payload: dict[str, Any], name: str | None = None) -> None:
        prefix = f"event: {name}\n".encode() if name else b""
        self.wfile.write(prefix + b"data: " + json.dumps(payload).encode() + b"\n\n")
        self.wfile.flush()


class ProviderSimulator(ThreadingHTTPServer):
    """The server; `stream_delay` spaces stream chunks so cancellation can be tested."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, host: str = "127.0.0.1", port: int = 0, stream_delay: float = 0.0) -> None:
        super().__init__((host, port), Handler)
        self.state = State()
        self.stream_delay = stream_delay

    @property
    def url(self) -> str:
        """Base URL, e.g. http://127.0.0.1:PORT."""
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"


def run(argv: list[str] | None = None) -> None:
    """Command line: `python -m provider_sim --port 9100 [--stream-delay 0.05]`."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--stream-delay", type=float, default=0.0)
    args = parser.parse_args(argv)
    server = ProviderSimulator(args.host, args.port, args.stream_delay)
    print(f"provider simulator listening on {server.url}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
