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


def _text_of(content: Any) -> str:
    """Text of a message content: a string, or OpenAI parts / Anthropic blocks."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    out = []
    for part in content:
        if not isinstance(part, dict):
            continue
        if part.get("type") == "text":
            out.append(str(part.get("text", "")))
        elif part.get("type") == "tool_result":
            out.append(_text_of(part.get("content", "")))
    return " ".join(o for o in out if o)


def _value_for(schema: Any) -> Any:
    """A deterministic value matching a (simple) JSON Schema."""
    if not isinstance(schema, dict):
        return "sim"
    kind = schema.get("type")
    if schema.get("enum"):
        return schema["enum"][0]
    if kind == "object":
        props = schema.get("properties") or {}
        return {name: _value_for(sub) for name, sub in props.items()}
    if kind == "array":
        return [_value_for(schema.get("items"))]
    if kind == "integer":
        return 1
    if kind == "number":
        return 1.5
    if kind == "boolean":
        return True
    return "sim"


def _tool_call(body: dict[str, Any], flavour: str) -> tuple[str, str] | None:
    """(tool name, JSON arguments) when the simulated model should call a tool: tools are
    offered, tool_choice is not none, and the last turn is not a tool result."""
    tools = body.get("tools") or []
    if not tools:
        return None
    choice = body.get("tool_choice")
    if choice in ("none",) or (isinstance(choice, dict) and choice.get("type") == "none"):
        return None
    messages = body.get("messages") or []
    last = messages[-1] if messages else {}
    if isinstance(last, dict):
        if last.get("role") == "tool":
            return None
        content = last.get("content")
        if isinstance(content, list) and any(
            isinstance(b, dict) and b.get("type") == "tool_result" for b in content
        ):
            return None
    wanted = None
    if isinstance(choice, dict):
        wanted = (choice.get("function") or {}).get("name") or choice.get("name")
    for tool in tools:
        if flavour == "anthropic":
            name, schema = tool.get("name"), tool.get("input_schema")
        else:
            fn = tool.get("function") or {}
            name, schema = fn.get("name"), fn.get("parameters")
        if wanted in (None, name):
            return str(name), json.dumps(_value_for(schema or {"type": "object"}))
    return None


def _structured(body: dict[str, Any], prompt: str) -> str | None:
    """JSON text for `response_format` json_object / json_schema (OpenAI only)."""
    fmt = body.get("response_format")
    if not isinstance(fmt, dict):
        return None
    if fmt.get("type") == "json_object":
        return json.dumps({"echo": prompt})
    if fmt.get("type") == "json_schema":
        return json.dumps(_value_for((fmt.get("json_schema") or {}).get("schema") or {}))
    return None


def _vector(text: str, dimensions: int) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    return [round((digest[i % len(digest)] - 128) / 128, 6) for i in range(dimensions)]


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
        elif path.endswith("/embeddings"):
            self._generate("embeddings", path)
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
                    # The request's fields (never its headers: keys travel there).
                    "params": sorted(body) if isinstance(body, dict) else [],
                    "body": body,
                }
            )
            accepted = set(state.keys)
        if accepted and key not in accepted:
            self._send_json(401, {"error": {"message": "invalid api key", "type": "auth"}})
            return
        fault = state.take_fault(model)
        if fault is not None and self._apply_fault(fault):
            return
        if flavour == "embeddings":
            self._embeddings(body, model, fault)
            return
        messages = body.get("messages") or []
        texts = [_text_of(m.get("content", "")) for m in messages if isinstance(m, dict)]
        if isinstance(body.get("system"), str):
            texts.insert(0, body["system"])
        prompt = " ".join(t for t in texts if t) or str(body.get("prompt", ""))
        max_tokens = int(body.get("max_tokens") or body.get("max_completion_tokens") or 64)
        text = _structured(body, prompt) or _reply_text(prompt, max_tokens)
        if fault and fault.kind == "slow_stream":
            text = " ".join(f"t{i}" for i in range(max(1, max_tokens)))
        call = _tool_call(body, flavour)
        if call is not None:
            text = ""
        usage = None if fault and fault.kind == "no_usage" else (
            _tokens(prompt), _tokens(text or (call[1] if call else ""))
        )  # fmt: skip
        truncated = bool(fault and fault.kind == "truncated")
        if stream:
            self._stream(flavour, model, text, usage, truncated, fault, call)
        else:
            self._send_json(200, self._completion(flavour, model, text, usage, call))

    def _embeddings(self, body: dict[str, Any], model: str, fault: Fault | None) -> None:
        inputs = body.get("input")
        items = [inputs] if isinstance(inputs, str) else list(inputs or [])
        dimensions = int(body.get("dimensions") or 8)
        data = [
            {"object": "embedding", "index": i, "embedding": _vector(str(text), dimensions)}
            for i, text in enumerate(items)
        ]
        out: dict[str, Any] = {"object": "list", "data": data, "model": model}
        if not (fault and fault.kind == "no_usage"):
            tokens = sum(_tokens(str(t)) for t in items)
            out["usage"] = {"prompt_tokens": tokens, "total_tokens": tokens}
        self._send_json(200, out)

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
        flavour: str,
        model: str,
        text: str,
        usage: tuple[int, int] | None,
        call: tuple[str, str] | None = None,
    ) -> dict[str, Any]:
        call_id = f"call_{uuid.uuid4().hex[:8]}"
        if flavour == "anthropic":
            content: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
            if call is not None:
                content.append({"type": "tool_use", "id": f"toolu_{call_id[5:]}",
                                "name": call[0], "input": json.loads(call[1])})  # fmt: skip
            out: dict[str, Any] = {
                "id": f"msg_{uuid.uuid4().hex[:12]}",
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": content,
                "stop_reason": "tool_use" if call else "end_turn",
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
                    "message": {"role": "assistant", "content": text if not call else None},
                    "finish_reason": "tool_calls" if call else "stop",
                }
            ],
        }
        if call is not None:
            out["choices"][0]["message"]["tool_calls"] = [
                {"id": call_id, "type": "function",
                 "function": {"name": call[0], "arguments": call[1]}}
            ]  # fmt: skip
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
        call: tuple[str, str] | None = None,
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
        if call is not None:
            self._stream_tool_call(flavour, model, usage, call)
            return
        try:
            if flavour == "anthropic":
                start: dict[str, Any] = {"type": "message_start", "message": {
                    "id": "msg_sim", "type": "message", "role": "assistant", "model": model,
                    "content": [], "stop_reason": None,
                    "usage": {"input_tokens": usage[0] if usage else 0, "output_tokens": 1},
                }}  # fmt: skip
                if not usage:
                    del start["message"]["usage"]
                self._sse(start, name="message_start")
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

    def _stream_tool_call(
        self, flavour: str, model: str, usage: tuple[int, int] | None, call: tuple[str, str]
    ) -> None:
        """A streamed tool call: the call's start, its arguments in two pieces, the end."""
        name, arguments = call
        half = len(arguments) // 2
        pieces = [arguments[:half], arguments[half:]]
        try:
            if flavour == "anthropic":
                self._sse({"type": "message_start", "message": {
                    "id": "msg_sim", "type": "message", "role": "assistant", "model": model,
                    "content": [], "stop_reason": None,
                    "usage": {"input_tokens": usage[0] if usage else 0, "output_tokens": 1},
                }}, name="message_start")  # fmt: skip
                block = {"type": "tool_use", "id": "toolu_sim1", "name": name, "input": {}}
                self._sse({"type": "content_block_start", "index": 0, "content_block": block},
                          name="content_block_start")  # fmt: skip
                for piece in pieces:
                    self._sse({"type": "content_block_delta", "index": 0,
                               "delta": {"type": "input_json_delta", "partial_json": piece}},
                              name="content_block_delta")  # fmt: skip
                self._sse({"type": "content_block_stop", "index": 0}, name="content_block_stop")
                delta: dict[str, Any] = {"type": "message_delta",
                                         "delta": {"stop_reason": "tool_use"}}  # fmt: skip
                if usage:
                    delta["usage"] = {"output_tokens": usage[1]}
                self._sse(delta, name="message_delta")
                self._sse({"type": "message_stop"}, name="message_stop")
                return
            first = {"index": 0, "id": "call_sim1", "type": "function",
                     "function": {"name": name, "arguments": ""}}  # fmt: skip
            chunks: list[dict[str, Any]] = [{"role": "assistant", "tool_calls": [first]}]
            chunks += [{"tool_calls": [{"index": 0, "function": {"arguments": p}}]} for p in pieces]
            for delta_ in chunks:
                self._sse(
                    {
                        "id": "chatcmpl-sim",
                        "object": "chat.completion.chunk",
                        "model": model,
                        "choices": [{"index": 0, "delta": delta_, "finish_reason": None}],
                    }
                )
            final: dict[str, Any] = {
                "id": "chatcmpl-sim", "object": "chat.completion.chunk", "model": model,
                "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}],
            }  # fmt: skip
            if usage:
                final["usage"] = {"prompt_tokens": usage[0], "completion_tokens": usage[1],
                                  "total_tokens": usage[0] + usage[1]}  # fmt: skip
            self._sse(final)
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            return

    def _sse(self, payload: dict[str, Any], name: str | None = None) -> None:
        prefix = f"event: {name}\n".encode() if name else b""
        self.wfile.write(prefix + b"data: " + json.dumps(payload).encode() + b"\n\n")
        self.wfile.flush()


class ProviderSimulator(ThreadingHTTPServer):
    """The server; `stream_delay` spaces stream chunks so cancellation can be tested."""

    daemon_threads = True
    allow_reuse_address = True
    # socketserver's default listen backlog is 5: a sixth simultaneous connect (16 load
    # clients, or a gateway opening a connection per stream) has its SYN dropped and
    # retried a second later, which a real provider's listener never does.
    request_queue_size = 128

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
