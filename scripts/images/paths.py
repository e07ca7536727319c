"""Where the image builds read and write, and the names of the images they make."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Final

REPO_ROOT: Final = Path(__file__).resolve().parents[2]
SCRIPTS_DIR: Final = REPO_ROOT / "scripts"
CONTAINERFILES: Final = Path(__file__).resolve().parent / "containerfiles"
#: Git-ignored (.gitignore lists .cache/). IMAGES_CACHE_DIR moves it (tests use a temp dir).
CACHE_DIR: Final = Path(os.environ.get("IMAGES_CACHE_DIR") or REPO_ROOT / ".cache" / "images")
#: Base-image archives shared by every clone on this machine (a fresh CI clone reuses the
#: Python base instead of debootstrapping it again), like the control plane's binaries
#: (scripts/build-control-plane.sh). Only the default cache uses it; an empty value turns
#: it off.
SHARED_CACHE_DIR: Final = (
    None
    if os.environ.get("IMAGES_CACHE_DIR") or os.environ.get("IMAGES_SHARED_CACHE_DIR") == ""
    else Path(
        os.environ.get("IMAGES_SHARED_CACHE_DIR")
        or Path.home() / ".cache" / "structured-api" / "images"
    )
)

#: Every image these scripts make lives under `localhost/`: containerd's archive importer
#: keeps a name only when it is a full reference (host/path:tag), and kubelet resolves
#: `localhost/...` to the imported image instead of trying a registry.
REGISTRY: Final = "localhost"
PYTHON_IMAGE: Final = f"{REGISTRY}/python"
UV_IMAGE: Final = f"{REGISTRY}/uv"
APP_IMAGE: Final = f"{REGISTRY}/structured-api"
DEVDEPS_IMAGE: Final = f"{REGISTRY}/structured-api-devdeps"
#: Label holding the cache key an image was built for (base images) or its inputs' digest.
KEY_LABEL: Final = "io.structured-api.images.key"


def uv_version() -> str:
    """The uv release the Makefile pins (`UV_VERSION := ...`), as the Dockerfile's UV_IMAGE."""
    found = re.search(r"^UV_VERSION := (\S+)$", (REPO_ROOT / "Makefile").read_text(), re.M)
    if found is None:
        raise RuntimeError("Makefile has no `UV_VERSION := ...` line")
    return found.group(1)


def archive_name(ref: str) -> str:
    """File name of an image's oci-archive: `localhost/a/b:tag` -> `a-b-tag.oci.tar`."""
    body = ref.removeprefix(f"{REGISTRY}/")
    return re.sub(r"[^A-Za-z0-9._-]+", "-", body) + ".oci.tar"


def normalize_reference(ref: str) -> str:
    """A full image reference as containerd names it (`foo:1` -> `docker.io/library/foo:1`).

    Kubelet asks containerd for the normalised name, so an archive must carry that one.
    """
    first, _, rest = ref.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return ref
    return f"docker.io/{ref}" if rest else f"docker.io/library/{ref}"
