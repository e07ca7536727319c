"""Redis behind Sentinel from the same redis-server binary: a primary, replicas, sentinels.

    with SentinelGroup(tmp / "ha", replicas=1, sentinels=3, password="pw") as ha:
        url = ha.url  # redis+sentinel://:pw@127.0.0.1:p1,127.0.0.1:p2,.../mymaster/0
        ha.primary().kill()  # SIGKILL: the sentinels promote a replica

Sentinel mode is the redis-server binary run with `--sentinel` on a config file it may
rewrite (redis.io, "High availability with Redis Sentinel"). Every data node has the
same password (`requirepass` and `masterauth`, so a demoted primary can follow the new
one); the sentinels may have their own (`requirepass` on each, which Sentinel also uses
to reach its peers).
"""

from __future__ import annotations

import contextlib
import socket
import time
from pathlib import Path
from typing import Any, ClassVar, Final, Self

from .process import LOOPBACK
from .redis_server import (
    RedisReplyError,
    RedisServer,
    RespValue,
    _command_bytes,
    _read_reply,
    server_binary,
)
from .server import ManagedServer, ServerError, Started

MASTER: Final = "mymaster"


def _command(host: str, port: int, *args: str, password: str | None, timeout: float) -> RespValue:
    with socket.create_connection((host, port), timeout=timeout) as sock:
        if password:
            sock.sendall(_command_bytes("AUTH", password))
        sock.sendall(_command_bytes(*args))
        with sock.makefile("rb") as stream:
            if password:
                _read_reply(stream)
            return _read_reply(stream)


class DataNode(RedisServer):
    """A Redis data node with a password, optionally a replica of `primary` at start."""

    def __init__(
        self,
        *args: Any,
        password: str | None = None,
        replica_of: tuple[str, int] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.password = password
        self.replica_of = replica_of

    def command(self, *args: str, timeout: float = 2.0) -> RespValue:
        """Send one command (after AUTH) over a fresh connection."""
        return _command(self.host, self.port, *args, password=self.password, timeout=timeout)

    def _command(self) -> list[str]:
        argv = super()._command()
        if self.password:
            argv += ["--requirepass", self.password, "--masterauth", self.password]
        if self.replica_of is not None:
            argv += ["--replicaof", self.replica_of[0], str(self.replica_of[1])]
        return argv

    def role(self) -> str:
        """`master` or `slave`, as INFO replication says."""
        info = self.command("INFO", "replication")
        assert isinstance(info, bytes)
        for line in info.decode().splitlines():
            if line.startswith("role:"):
                return line.split(":", 1)[1].strip()
        raise ServerError("INFO replication has no role")


class SentinelServer(ManagedServer):
    """One sentinel watching the master `MASTER`; its config file persists across restarts."""

    name: ClassVar[str] = "sentinel"

    def __init__(
        self,
        *args: Any,
        monitor: tuple[str, int],
        quorum: int,
        down_after_ms: int,
        failover_timeout_ms: int,
        password: str | None = None,
        master_password: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.monitor = monitor
        self.quorum = quorum
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self.password = password
        self.master_password = master_password

    @property
    def url(self) -> str:
        """host:port of this sentinel."""
        return f"{self.host}:{self.port}"

    @property
    def config_path(self) -> Path:
        """The config file Sentinel rewrites with what it learns."""
        return self.data_dir / "sentinel.conf"

    def command(self, *args: str, timeout: float = 2.0) -> RespValue:
        """Send one command (after AUTH) to this sentinel."""
        return _command(self.host, self.port, *args, password=self.password, timeout=timeout)

    def _prepare(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.config_path.exists():
            return  # a restart keeps what this sentinel learnt (the current master)
        lines = [
            f"port {self.port}",
            f"bind {self.host}",
            f"dir {self.data_dir}",
            f"sentinel monitor {MASTER} {self.monitor[0]} {self.monitor[1]} {self.quorum}",
            f"sentinel down-after-milliseconds {MASTER} {self.down_after_ms}",
            f"sentinel failover-timeout {MASTER} {self.failover_timeout_ms}",
            f"sentinel parallel-syncs {MASTER} 1",
        ]
        if self.master_password:
            lines.append(f"sentinel auth-pass {MASTER} {self.master_password}")
        if self.password:
            lines.append(f"requirepass {self.password}")
        self.config_path.write_text("\n".join(lines) + "\n")
        self.config_path.chmod(0o600)

    def _command(self) -> list[str]:
        return [str(server_binary()), str(self.config_path), "--sentinel", "--daemonize", "no"]

    def _ready(self) -> bool:
        try:
            info = self.command("INFO", "server", timeout=0.5)
        except (OSError, RedisReplyError):
            return False
        return isinstance(info, bytes) and f"process_id:{self.pid}\r\n".encode() in info

    def master_address(self) -> tuple[str, int] | None:
        """The master this sentinel currently names."""
        reply = self.command("SENTINEL", "get-master-addr-by-name", MASTER)
        if not isinstance(reply, list) or len(reply) != 2:
            return None
        host, port = reply
        assert isinstance(host, bytes) and isinstance(port, bytes)
        return host.decode(), int(port)


class SentinelGroup(Started):
    """A primary, `replicas` replicas and `sentinels` sentinels on loopback."""

    def __init__(
        self,
        data_dir: str | Path,
        *,
        replicas: int = 1,
        sentinels: int = 3,
        password: str | None = None,
        sentinel_password: str | None = None,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 10_000,
        persistent: bool = True,
    ) -> None:
        base = Path(data_dir).absolute()
        self.password = password
        self.sentinel_password = sentinel_password
        self.down_after_ms = down_after_ms
        first = DataNode(base / "node-0", password=password, persistent=persistent)
        self.nodes: list[DataNode] = [first]
        for n in range(1, replicas + 1):
            self.nodes.append(
                DataNode(
                    base / f"node-{n}",
                    password=password,
                    replica_of=(LOOPBACK, first.port),
                    persistent=persistent,
                )
            )
        self.sentinels = [
            SentinelServer(
                base / f"sentinel-{n}",
                monitor=(LOOPBACK, first.port),
                quorum=sentinels // 2 + 1,
                down_after_ms=down_after_ms,
                failover_timeout_ms=failover_timeout_ms,
                password=sentinel_password,
                master_password=password,
            )
            for n in range(sentinels)
        ]

    @property
    def url(self) -> str:
        """`redis+sentinel://` URL of database 0 (the data nodes' password in it)."""
        auth = f":{self.password}@" if self.password else ""
        hosts = ",".join(s.url for s in self.sentinels)
        return f"redis+sentinel://{auth}{hosts}/{MASTER}/0"

    def master_address(self) -> tuple[str, int] | None:
        """The master a majority of the running sentinels name, or None."""
        seen: dict[tuple[str, int], int] = {}
        for s in self.sentinels:
            if not s.running:
                continue
            with contextlib.suppress(OSError, ServerError):
                addr = s.master_address()
                if addr is not None:
                    seen[addr] = seen.get(addr, 0) + 1
        best = max(seen.items(), key=lambda kv: kv[1], default=None)
        return best[0] if best and best[1] > len(self.sentinels) // 2 else None

    def primary(self) -> DataNode:
        """The data node the sentinels name as master."""
        addr = self.master_address()
        for node in self.nodes:
            if (node.host, node.port) == addr:
                return node
        raise ServerError(f"no data node is the master the sentinels name ({addr})")

    def wait_until_ready(self, timeout: float = 30.0) -> None:
        """Until every replica is in sync and every sentinel knows its peers and replicas."""
        deadline = time.monotonic() + timeout
        want_peers = len(self.sentinels) - 1
        want_replicas = len(self.nodes) - 1
        while True:
            ok = True
            for s in self.sentinels:
                try:
                    state = s.command("SENTINEL", "master", MASTER)
                except (OSError, ServerError):
                    ok = False
                    break
                assert isinstance(state, list)
                fields = {
                    k.decode(): v.decode()
                    for k, v in zip(state[::2], state[1::2], strict=True)
                    if isinstance(k, bytes) and isinstance(v, bytes)
                }
                if (
                    int(fields.get("num-other-sentinels", 0)) < want_peers
                    or int(fields.get("num-slaves", 0)) < want_replicas
                ):
                    ok = False
                    break
            if ok:
                return
            if time.monotonic() > deadline:
                raise ServerError("the sentinels did not find each other and the replicas")
            time.sleep(0.1)

    def wait_for_new_master(self, old: tuple[str, int], timeout: float = 60.0) -> float:
        """Seconds until a majority of sentinels name a master other than `old`."""
        start = time.monotonic()
        while True:
            addr = self.master_address()
            if addr is not None and addr != old:
                return time.monotonic() - start
            if time.monotonic() - start > timeout:
                raise ServerError(f"no failover away from {old} within {timeout:.0f} s")
            time.sleep(0.02)

    def start(self) -> Self:
        """Start the nodes, then the sentinels, and wait until they all know each other."""
        try:
            for node in self.nodes:
                node.start()
            for s in self.sentinels:
                s.start()
            self.wait_until_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop every sentinel and node."""
        for server in [*self.sentinels, *self.nodes]:
            with contextlib.suppress(ServerError):
                server.stop(timeout=10)
