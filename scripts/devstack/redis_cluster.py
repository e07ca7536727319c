"""A Redis Cluster from the same redis-server binary: primaries, each with replicas.

    with RedisClusterGroup(tmp / "cluster", primaries=3, replicas=1) as cluster:
        nodes = cluster.seeds  # "127.0.0.1:p1,127.0.0.1:p2,..." for REDIS_CLUSTER_NODES
        victim = cluster.primary_for("sapi:rl:{g}:p:r:l")
        victim.kill()  # SIGKILL: the Cluster promotes its replica after the node timeout
        cluster.wait_promoted(victim)

Cluster mode is the redis-server binary with `cluster-enabled yes` (redis.io, "Scale with
Redis Cluster"); `redis-cli --cluster create ... --cluster-replicas 1` assigns the slots
and pairs every primary with a replica. Each node also listens on its port + 10000 (the
cluster bus), so ports are chosen with both free.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from pathlib import Path
from typing import Any, Self

from redis.crc import key_slot

from .process import LOOPBACK, free_port, port_is_free
from .redis_server import RedisReplyError, RedisServer, server_binary
from .server import ServerError, Started

BUS_OFFSET = 10_000


def _bus_safe_port() -> int:
    for _ in range(100):
        port = free_port(LOOPBACK)
        if port + BUS_OFFSET < 65536 and port_is_free(port + BUS_OFFSET):
            return port
    raise ServerError("no port with a free cluster-bus port")


class ClusterNode(RedisServer):
    """A redis-server in cluster mode (no persistence: a killed node's data is gone)."""

    def __init__(self, *args: Any, node_timeout_ms: int = 1000, **kwargs: Any) -> None:
        super().__init__(*args, port=_bus_safe_port(), **kwargs)
        self.node_timeout_ms = node_timeout_ms

    def _command(self) -> list[str]:
        return [
            *super()._command(),
            "--cluster-enabled", "yes",
            "--cluster-config-file", str(self.data_dir / "nodes.conf"),
            "--cluster-node-timeout", str(self.node_timeout_ms),
        ]  # fmt: skip

    def info(self, section: str) -> dict[str, str]:
        """`INFO <section>` (or `CLUSTER INFO` for "cluster") as a dict."""
        args = ("CLUSTER", "INFO") if section == "cluster" else ("INFO", section)
        raw = self.command(*args, timeout=1.0)
        assert isinstance(raw, bytes)
        pairs = (line.split(":", 1) for line in raw.decode().splitlines() if ":" in line)
        return {k: v.strip() for k, v in pairs}

    @property
    def address(self) -> str:
        """host:port."""
        return f"{self.host}:{self.port}"


class RedisClusterGroup(Started):
    """`primaries` x (1 + `replicas`) cluster nodes on loopback, slots assigned."""

    def __init__(
        self,
        root: Path,
        *,
        primaries: int = 3,
        replicas: int = 1,
        node_timeout_ms: int = 1000,
        startup_timeout: float = 60.0,
    ) -> None:
        self.root = Path(root)
        self.replicas = replicas
        self.nodes = [
            ClusterNode(self.root / f"node{i}", node_timeout_ms=node_timeout_ms)
            for i in range(primaries * (1 + replicas))
        ]
        self.startup_timeout = startup_timeout

    @property
    def seeds(self) -> str:
        """Every node as host:port, comma-separated (REDIS_CLUSTER_NODES)."""
        return ",".join(n.address for n in self.nodes)

    def start(self) -> Self:
        """Start every node, create the Cluster, wait until it serves every slot."""
        cli = server_binary().with_name("redis-cli")
        try:
            for node in self.nodes:
                node.start()
            subprocess.run(
                [
                    str(cli), "--cluster", "create", *(n.address for n in self.nodes),
                    "--cluster-replicas", str(self.replicas), "--cluster-yes",
                ],
                check=True, capture_output=True, timeout=60,
            )  # fmt: skip
            self.wait_healthy()
        except BaseException:
            self.stop()  # no node outlives a Cluster that never came up
            raise
        return self

    def stop(self) -> None:
        """Stop every node still running."""
        for node in self.nodes:
            with contextlib.suppress(ServerError):
                node.stop()

    def live(self) -> list[ClusterNode]:
        """The nodes whose process runs."""
        return [n for n in self.nodes if n.running]

    def role(self, node: ClusterNode) -> str:
        """ "master" or "slave" (as INFO replication says)."""
        return node.info("replication").get("role", "")

    def wait_healthy(self, timeout: float | None = None) -> None:
        """Until every live node reports `cluster_state:ok` and every replica is in sync."""
        deadline = time.monotonic() + (timeout or self.startup_timeout)
        while time.monotonic() < deadline:
            try:
                ok = all(n.info("cluster").get("cluster_state") == "ok" for n in self.live())
                synced = all(
                    n.info("replication").get("master_link_status") == "up"
                    for n in self.live()
                    if self.role(n) == "slave"
                )
            except (OSError, RedisReplyError):
                ok = synced = False
            if ok and synced:
                return
            time.sleep(0.1)
        raise ServerError("the Redis Cluster did not become healthy")

    def primary_for(self, key: str) -> ClusterNode:
        """The live primary serving `key`'s slot now."""
        slot = int(key_slot(key.encode()))
        for node in self.live():
            if self.role(node) == "master" and self._serves(node, slot):
                return node
        raise ServerError(f"no live primary serves slot {slot}")

    def _serves(self, node: ClusterNode, slot: int) -> bool:
        myself = node.command("CLUSTER", "MYID", timeout=1.0)
        raw = node.command("CLUSTER", "SLOTS", timeout=1.0)
        assert isinstance(raw, list) and isinstance(myself, bytes)
        for entry in raw:
            assert isinstance(entry, list)
            start, end, owner = entry[0], entry[1], entry[2]
            assert isinstance(start, int) and isinstance(end, int) and isinstance(owner, list)
            if start <= slot <= end:
                return len(owner) > 2 and owner[2] == myself
        return False

    def replica_of(self, primary: ClusterNode) -> ClusterNode:
        """A live replica following `primary`."""
        for node in self.live():
            info = node.info("replication")
            if info.get("role") == "slave" and info.get("master_port") == str(primary.port):
                return node
        raise ServerError(f"{primary.address} has no live replica")

    def wait_promoted(self, replica: ClusterNode, timeout: float = 30.0) -> float:
        """Seconds until `replica` is a primary and the Cluster serves every slot again."""
        started = time.monotonic()
        deadline = started + timeout
        while time.monotonic() < deadline:
            try:
                if self.role(replica) == "master":
                    self.wait_healthy(timeout=max(0.1, deadline - time.monotonic()))
                    return time.monotonic() - started
            except (OSError, RedisReplyError):
                pass
            time.sleep(0.05)
        raise ServerError(f"{replica.address} was not promoted within {timeout} s")
