"""Ensure etcd and kube-apiserver exist at the pinned versions (build-control-plane.sh)."""

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
