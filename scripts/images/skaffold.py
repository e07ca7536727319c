"""skaffold's `custom` build for the devcluster profile: buildah, then containerd import.

skaffold runs `scripts/images/skaffold-build.sh` with IMAGE (the reference to build, e.g.
`structured-api:1a2b3c4d5e6f`), PUSH_IMAGE and BUILD_CONTEXT in the environment
(skaffold.dev/docs/builders/builder-types/custom). This builds the base, the development
dependency and the app images (all cached), names the app image exactly as containerd will
look it up (`structured-api:x` is `docker.io/library/structured-api:x` to kubelet), and
imports every archive into the cluster's containerd (namespace k8s.io) with
`kubetools.images.import_archive`. The containerd socket comes from CONTAINERD_ADDRESS
(ctr's own variable), else from the cluster `python -m kubetools.cluster up` runs.
"""

from __future__ import annotations

import os
from pathlib import Path

from images import app, deps, records
from images.paths import REPO_ROOT, normalize_reference
from images.progress import say, stage


class SkaffoldError(RuntimeError):
    """The environment skaffold should have set is missing or asks for the impossible."""


def target_reference(env: dict[str, str] | os._Environ[str]) -> str:
    """The full reference to build from skaffold's IMAGE."""
    image = env.get("IMAGE", "")
    if not image:
        raise SkaffoldError("IMAGE is not set: run this as skaffold's custom build command")
    if env.get("PUSH_IMAGE", "false").lower() == "true":
        raise SkaffoldError(
            "PUSH_IMAGE=true but no registry exists here; the devcluster profile sets "
            "build.local.push: false and imports into containerd instead"
        )
    return normalize_reference(image)


def import_archives(archives: list[Path], socket: str) -> list[str]:
    """Import oci-archives into the cluster's containerd; return the references it holds."""
    from kubetools.images import import_archive  # the cluster side (scripts/kubetools)

    refs: list[str] = []
    for archive in archives:
        with stage(f"import {archive.name} into containerd ({socket})"):
            refs += import_archive(socket, archive)
    return refs


def containerd_socket(env: dict[str, str] | os._Environ[str]) -> str:
    """CONTAINERD_ADDRESS, or the socket of the cluster running on this machine."""
    if env.get("CONTAINERD_ADDRESS"):
        return env["CONTAINERD_ADDRESS"]
    from kubetools.cluster import running_state_dir  # the cluster side (scripts/kubetools)

    state = running_state_dir()
    # kubetools.cluster.Cluster.containerd_socket: <state dir>/containerd/containerd.sock
    socket = state / "containerd" / "containerd.sock" if state is not None else None
    if socket is None or not socket.is_socket():
        raise SkaffoldError(
            "no cluster is running (`python -m kubetools.cluster up --detach`) and "
            "CONTAINERD_ADDRESS is not set: nowhere to import the images"
        )
    return str(socket)


def build_and_import() -> list[records.Built]:
    """What skaffold's custom build command runs."""
    ref = target_reference(os.environ)
    socket = containerd_socket(os.environ)
    context = Path(os.environ.get("BUILD_CONTEXT") or REPO_ROOT)
    built = [*deps.build_all(), app.build(ref, context=context)]
    refs = import_archives([b.archive for b in built], socket)
    say(f"containerd now holds {', '.join(refs)}")
    return built
