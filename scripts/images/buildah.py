"""Thin wrappers around the buildah CLI (Debian's buildah 1.28, overlay storage, runc).

Every build runs with `--network host`: buildah's private network would create a CNI
bridge and iptables rules on this machine, next to the cluster's own; host networking
leaves nothing behind and is only used to download packages (Debian, PyPI).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from images.progress import CommandError, output, run


def require() -> str:
    """Path of buildah, or a clear error saying how to get it."""
    found = shutil.which("buildah")
    if found is None:
        raise FileNotFoundError(
            "buildah not found: `apt-get install --no-install-recommends buildah runc` "
            "(scripts/install-test-tools.sh installs it)"
        )
    return found


@dataclass(frozen=True)
class ImageInfo:
    """What these scripts need to know about an image in buildah's storage."""

    ref: str
    id: str
    digest: str
    labels: dict[str, str]
    config: dict[str, Any]


def inspect(ref: str) -> ImageInfo | None:
    """The image `ref` in local storage, or None when there is none."""
    try:
        raw = output([require(), "inspect", "--type", "image", ref])
    except CommandError:
        return None
    data = json.loads(raw)
    config: dict[str, Any] = data["OCIv1"].get("config") or {}
    return ImageInfo(
        ref=ref,
        id=data["FromImageID"],
        digest=data["FromImageDigest"],
        labels=dict(config.get("Labels") or {}),
        config=config,
    )


def size(ref: str) -> str:
    """Uncompressed size of an image as buildah prints it (`123 MB`)."""
    raw = output([require(), "images", "--json", ref])
    return str(json.loads(raw)[0]["size"])


def bud(*args: str) -> list[str]:
    """`buildah bud` with the flags every build here uses, then args.

    --layers: cache every step (a rebuild with nothing changed only retags);
    --force-rm: buildah 1.28 otherwise keeps a working container per build (the uv stage's);
    --pull=false: the base images are local (`localhost/...`), never pulled;
    --network=host: package downloads only, no CNI bridge (module docstring).
    """
    flags = ["--layers", "--force-rm", "--pull=false", "--network=host", "--format=oci"]
    return [require(), "bud", *flags, *args]


def containers() -> set[str]:
    """Names of the working containers in local storage."""
    raw = output([require(), "containers", "--format", "{{.ContainerName}}"])
    return set(raw.split())


def push_archive(ref: str, archive: Path, *, log: Path | None = None) -> None:
    """Export `ref` to an oci-archive named `ref` inside, atomically (temp file, rename)."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    partial = archive.with_name(f".{archive.name}.{os.getpid()}.partial")
    partial.unlink(missing_ok=True)
    try:
        run(
            [require(), "push", "--quiet", ref, f"oci-archive:{partial}:{ref}"], heavy=True, log=log
        )
        os.replace(partial, archive)
    finally:
        partial.unlink(missing_ok=True)


def pull_archive(archive: Path) -> None:
    """Load an oci-archive into local storage under the name it carries."""
    run([require(), "pull", "--quiet", f"oci-archive:{archive}"], heavy=True)


def remove_image(ref: str) -> None:
    """Delete an image name from local storage (no error when absent)."""
    output([require(), "rmi", ref], check=False)


class WorkingContainer:
    """`buildah from IMAGE`: a container to mount, run in, commit or throw away."""

    def __init__(self, image: str) -> None:
        self.name = output([require(), "from", "--pull=false", "--quiet", image]).strip()

    def mount(self) -> Path:
        """Mount the container's root file system and return where."""
        return Path(output([require(), "mount", self.name]).strip())

    def umount(self) -> None:
        """Undo mount()."""
        output([require(), "umount", self.name])

    def run(self, *argv: str, network: str = "none", log: Path | None = None) -> str:
        """Run a command inside (as root, with the image's environment)."""
        return run(
            [require(), "run", f"--network={network}", self.name, "--", *argv],
            heavy=True,
            log=log,
        )

    def copy(self, source: Path, dest: str, *, mode: str) -> None:
        """Copy a host file into the container with the given mode, owned by root."""
        output([require(), "copy", "--quiet", f"--chmod={mode}", self.name, str(source), dest])

    def config(self, *args: str) -> None:
        """`buildah config ARGS` on this container."""
        output([require(), "config", *args, self.name])

    def commit(self, ref: str, *, squash: bool = False) -> str:
        """Commit to image `ref` and return its id; the container is removed."""
        argv = [require(), "commit", "--quiet", "--rm", "--format", "oci"]
        argv += ["--squash"] if squash else []
        image_id = run([*argv, self.name, ref], heavy=True).strip().splitlines()[-1]
        self.name = ""
        return image_id

    def remove(self) -> None:
        """Delete the container (no error when it is already gone)."""
        if self.name:
            output([require(), "rm", self.name], check=False)
            self.name = ""
