"""A real HTTP server on loopback that records every request it receives (and serves none).

Stands for a host an attacker controls: tests point a provider's `baseURL` at it and then
check that nothing (no key, no request at all) arrived.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    """One request as it arrived."""

    method: str
    path: str
    headers: dict[str, str]


@dataclass
class Listener:
    """Where the listener is and what it got."""

    port: int
    received: list[Received] = field(default_factory=list)

    @property
    def url(self) -> str:
        """Base URL (no path)."""
        return f"http://127.0.0.1:{self.port}"


@contextlib.contextmanager
def recording_listener() -> Iterator[Listener]:
    """A threaded HTTP server on an ephemeral 127.0.0.1 port, answering 404 to everything."""
    listener = Listener(port=0)

    class Handler(BaseHTTPRequestHandler):
        def _record(self) -> None:
            listener.received.append(Received(self.command, self.path, dict(self.headers)))
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _record

        def log_message(self, format: str, *args: object) -> None:
            return  # the test reads `received`

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    listener.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, name="recording-listener", daemon=True)
    thread.start()
    try:
        yield listener
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
