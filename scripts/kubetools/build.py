"""Ensure the pinned Kubernetes binaries exist (scripts/build-control-plane.sh builds them)."""

from __future__ import annotations

import fcntl
import subprocess
from dataclasses import dataclass
from pathlib import Path

from kubetools.paths import CACHE_DIR, SCRIPTS_DIR

BUILD_SCRIPT = SCRIPTS_DIR / "build-control-plane.sh"


@dataclass(frozen=True)
class Binaries:
    """Paths of the control-plane binaries."""

    etcd: Path
    kube_apiserver: Path

    def exist(self) -> bool:
        """Tell whether both binaries are already in the cache."""
        return self.etcd.is_file() and self.kube_apiserver.is_file()


def binary_paths() -> Binaries:
    """Ask the build script where the pinned binaries live (they may not exist yet)."""
    out = subprocess.run(
        ["bash", str(BUILD_SCRIPT), "path"], check=True, capture_output=True, text=True
    ).stdout.split()
    return Binaries(etcd=Path(out[0]), kube_apiserver=Path(out[1]))


def ensure_binaries() -> Binaries:
    """Build etcd and kube-apiserver if missing; a no-op when they are cached."""
    paths = binary_paths()
    if paths.exist():
        return paths
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    # A cold build takes many minutes on 2 cores (notes: "Expect a long cold build"); the lock
    # keeps two test processes from building the same thing twice at once.
    with open(CACHE_DIR / "control-plane.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        subprocess.run(["bash", str(BUILD_SCRIPT), "all"], check=True)
    paths = binary_paths()
    if not paths.exist():
        raise FileNotFoundError(f"{BUILD_SCRIPT} finished but {paths} are missing")
    return paths


@dataclass(frozen=True)
class ClusterBinaries:
    """Paths of what a one-node cluster runs besides etcd and kube-apiserver."""

    kubelet: Path
    kube_controller_manager: Path
    kube_scheduler: Path
    kube_proxy: Path
    coredns: Path
    crictl: Path
    pause: Path

    def exist(self) -> bool:
        """Tell whether every binary is already in the cache."""
        return all(Path(p).is_file() for p in vars(self).values())


def cluster_binary_paths() -> ClusterBinaries:
    """Ask the build script where the pinned node binaries live (they may not exist yet)."""
    out = subprocess.run(
        ["bash", str(BUILD_SCRIPT), "path-cluster"], check=True, capture_output=True, text=True
    ).stdout
    found = dict(line.split("=", 1) for line in out.split())
    return ClusterBinaries(**{k.replace("-", "_"): Path(v) for k, v in found.items()})


def ensure_cluster_binaries() -> tuple[Binaries, ClusterBinaries]:
    """Build everything the cluster runs if missing (a no-op when cached); return the paths.

    The script prints each stage, a heartbeat every 30 s and each stage's time to stderr.
    """
    paths, node = binary_paths(), cluster_binary_paths()
    if paths.exist() and node.exist():
        return paths, node
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with open(CACHE_DIR / "control-plane.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        subprocess.run(["bash", str(BUILD_SCRIPT), "cluster"], check=True)
    paths, node = binary_paths(), cluster_binary_paths()
    if not (paths.exist() and node.exist()):
        raise FileNotFoundError(f"{BUILD_SCRIPT} cluster finished but {paths}, {node} are missing")
    return paths, node
