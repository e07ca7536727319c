"""Container images without a registry: build with buildah, keep as oci-archive, import.

No registry is reachable from this machine, so every image a cluster runs is built here,
saved as an OCI archive in the cache and imported into the cluster's containerd, in the
`k8s.io` namespace that the kubelet's CRI uses. Two calls cover it:

    from kubetools.images import File, build_scratch_image, import_archive

    archive = build_scratch_image(
        "localhost/structured-api/busybox:1",
        {"/bin/busybox": Path("/bin/busybox"), "/www/index.html": File(b"ok\\n")},
        entrypoint=["/bin/busybox"],
    )
    import_archive(cluster, archive)   # cluster: a kubetools.cluster.Cluster (or a socket)

and a pod then uses `image: localhost/structured-api/busybox:1` with
`imagePullPolicy: IfNotPresent` (or Never): nothing is ever pulled. Use a `localhost/`
reference: should something try to pull it anyway, it asks 127.0.0.1, not the internet.

`build_scratch_image` caches: the archive's name carries a digest of the reference, the
files (content and mode) and the image config, so calling it again with the same inputs
returns the archive at once, and a changed file builds a new one. Anything you can lay
out as files works: a static binary, a directory tree (a Python venv, a rootfs made with
debootstrap, ...). For an image built another way (`buildah bud`, skopeo), pass its
oci-archive to `import_archive` directly.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from kubetools.paths import CACHE_DIR

IMAGES_DIR = CACHE_DIR / "images"
# containerd namespace of the CRI plugin: the kubelet sees only images in it.
K8S_NAMESPACE = "k8s.io"


class HasContainerd(Protocol):
    """Anything that knows its containerd socket (kubetools.cluster.Cluster does)."""

    @property
    def containerd_socket(self) -> Path: ...


@dataclass(frozen=True)
class File:
    """One file of an image: its content (bytes, or a host path to copy) and its mode.

    A plain `Path` in the files mapping copies that file or directory keeping its modes;
    `File(b"...", 0o755)` writes bytes; `File(Path(...), 0o755)` copies with another mode.
    """

    source: bytes | Path
    mode: int | None = None


class ImageError(RuntimeError):
    """buildah or ctr failed; the message holds the command and its output."""


def build_scratch_image(
    ref: str,
    files: Mapping[str, Path | File],
    *,
    entrypoint: Sequence[str] = (),
    cmd: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    workdir: str | None = None,
    user: str | None = None,
    labels: Mapping[str, str] | None = None,
    cache_dir: Path | None = None,
) -> Path:
    """Build `FROM scratch` + files with buildah; return the cached oci-archive's path.

    ref: the image reference pods will name, e.g. "localhost/structured-api/api:dev".
    files: absolute path inside the image -> Path (file or directory, copied with its
    modes) or File (bytes or a path, with an explicit mode). Parent directories are made.
    entrypoint, cmd, env, workdir, user, labels: the image config (OCI format).
    The archive is rebuilt only when one of these inputs changes (see the module doc).
    """
    for dest in files:
        if not dest.startswith("/"):
            raise ValueError(f"image paths must be absolute: {dest!r}")
    config = {
        "ref": ref,
        "entrypoint": list(entrypoint),
        "cmd": list(cmd),
        "env": dict(env or {}),
        "workdir": workdir,
        "user": user,
        "labels": dict(labels or {}),
    }
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode())
    for dest in sorted(files):
        digest.update(dest.encode() + b"\0")
        _hash_source(digest, files[dest])
    directory = cache_dir or IMAGES_DIR
    directory.mkdir(parents=True, exist_ok=True)
    archive = directory / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', ref)}-{digest.hexdigest()[:16]}.tar"
    if archive.is_file():
        return archive

    _require("buildah", "buildah")
    # A name of our own: other people may run buildah on this machine at the same time.
    name = f"kubetools-{os.getpid()}-{digest.hexdigest()[:8]}"
    container = _buildah("from", "--format", "oci", "--name", name, "scratch").strip()
    try:
        with tempfile.TemporaryDirectory(prefix="kubetools-image-") as tmp:
            for index, (dest, spec) in enumerate(sorted(files.items())):
                source, mode = _materialize(spec, Path(tmp) / str(index))
                args = ["copy"]
                if mode is not None:
                    args.append(f"--chmod={mode:o}")
                _buildah(*args, container, str(source), dest)
        settings: list[str] = []
        if entrypoint:
            settings += ["--entrypoint", json.dumps(list(entrypoint))]
        if cmd:
            settings += ["--cmd", json.dumps(list(cmd))]
        for key, value in (env or {}).items():
            settings += ["--env", f"{key}={value}"]
        for key, value in (labels or {}).items():
            settings += ["--label", f"{key}={value}"]
        if workdir:
            settings += ["--workingdir", workdir]
        if user:
            settings += ["--user", user]
        if settings:
            _buildah("config", *settings, container)
        tmp_archive = archive.with_name(f".{archive.name}.{os.getpid()}")
        tmp_archive.unlink(missing_ok=True)
        # Commit straight to an archive: nothing stays in buildah's image store.
        _buildah(
            "commit", "--format", "oci", "--quiet", container, f"oci-archive:{tmp_archive}:{ref}"
        )
        tmp_archive.replace(archive)
    finally:
        subprocess.run(["buildah", "rm", container], capture_output=True, check=False)
    return archive


def import_archive(target: HasContainerd | str | os.PathLike[str], archive: Path) -> list[str]:
    """Import an oci-archive into a cluster's containerd (namespace k8s.io); return its refs.

    target: a kubetools.cluster.Cluster, or the path of a containerd socket.
    """
    _require("ctr", "containerd")
    socket = (
        Path(os.fspath(target))
        if isinstance(target, str | os.PathLike)
        else target.containerd_socket
    )
    argv = ["ctr", "--address", str(socket), "--namespace", K8S_NAMESPACE]
    out = _run([*argv, "images", "import", str(archive)])
    # ctr prints "unpacking <ref> (sha256:...)...done" for every image it imported.
    refs = re.findall(r"^unpacking (\S+) \(", out, flags=re.MULTILINE)
    if not refs:
        raise ImageError(f"ctr imported no image from {archive}:\n{out}")
    return refs


def image_refs(target: HasContainerd | str | os.PathLike[str]) -> list[str]:
    """List the image references a cluster's containerd holds in the k8s.io namespace."""
    socket = (
        Path(os.fspath(target))
        if isinstance(target, str | os.PathLike)
        else target.containerd_socket
    )
    out = _run(
        ["ctr", "--address", str(socket), "--namespace", K8S_NAMESPACE, "images", "ls", "-q"]
    )
    return out.split()


def _hash_source(digest: hashlib._Hash, spec: Path | File) -> None:
    source, mode = (spec.source, spec.mode) if isinstance(spec, File) else (spec, None)
    digest.update(f"mode={mode}\0".encode())
    if isinstance(source, bytes):
        digest.update(b"bytes\0" + source)
        return
    paths = [source] if source.is_file() else sorted(p for p in source.rglob("*"))
    if not source.exists():
        raise FileNotFoundError(source)
    for path in paths:
        rel = path.relative_to(source) if path != source else Path(".")
        info = path.lstat()
        digest.update(f"{rel}\0{info.st_mode:o}\0".encode())
        if path.is_symlink():
            digest.update(os.readlink(path).encode())
        elif path.is_file():
            with path.open("rb") as fh:
                while chunk := fh.read(1 << 20):
                    digest.update(chunk)


def _materialize(spec: Path | File, scratch: Path) -> tuple[Path, int | None]:
    """Return a host path buildah can copy, writing bytes to a scratch file first."""
    if isinstance(spec, Path):
        return spec, None
    if isinstance(spec.source, Path):
        return spec.source, spec.mode
    scratch.write_bytes(spec.source)
    return scratch, spec.mode if spec.mode is not None else 0o644


def _require(command: str, package: str) -> None:
    if shutil.which(command) is None:
        raise ImageError(f"{command} not found: apt-get install -y {package}")


def _buildah(*args: str) -> str:
    return _run(["buildah", *args])


def _run(argv: list[str]) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ImageError(f"{' '.join(argv)} exited {result.returncode}:\n{result.stderr}")
    return result.stdout + result.stderr
