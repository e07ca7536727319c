"""The project's image, built from its own Dockerfile with buildah on the local base images.

`buildah bud --layers` caches every step in buildah's storage, so a build with nothing
changed reuses all of them and only retags; the uv download cache of the Dockerfile's
`RUN --mount=type=cache` survives between builds too. The archive is exported again only
when the image id changed.

Tag: the short git commit, plus `-dirty` when the working tree has changes (as skaffold's
gitCommit tagger). Rebuilding a dirty tree reuses the tag: restart pods after importing.
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

from images import base, buildah, records
from images.archive import export_if_changed
from images.paths import APP_IMAGE, CACHE_DIR, REPO_ROOT, archive_name
from images.progress import run, stage

DOCKERFILE = REPO_ROOT / "Dockerfile"
#: The host's CA bundle: uv in the build stage trusts the image's store (UV_SYSTEM_CERTS),
#: and this machine reaches PyPI through a TLS-inspecting egress proxy whose CA only the
#: host's bundle holds. Mounted for the RUN steps only; no layer keeps it.
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
#: How many app archives (one per tag) the cache keeps.
KEEP_ARCHIVES = 3


def git_tag(repo: Path = REPO_ROOT) -> str:
    """`<12-char commit>` or `<commit>-dirty`."""
    commit = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "--short=12", "HEAD"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    status = subprocess.run(
        ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=normal"],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    return f"{commit}-dirty" if status.strip() else commit


def is_step(line: str) -> bool:
    """buildah's line per instruction: `STEP 3/9: COPY ...`, `[2/3] STEP 3/9: ...`."""
    return re.match(r"(\[\d+/\d+\] )?STEP \d+/\d+: ", line) is not None


def _revision_label(context: Path) -> list[str]:
    """`--label org.opencontainers.image.revision=<git tag>` when the context is a checkout."""
    try:
        return ["--label", f"org.opencontainers.image.revision={git_tag(context)}"]
    except subprocess.CalledProcessError:
        return []


def _trust_mount() -> list[str]:
    if not HOST_CA_BUNDLE.is_file():
        return []
    return ["--volume", f"{HOST_CA_BUNDLE}:{HOST_CA_BUNDLE}:ro"]


def build(
    ref: str | None = None,
    *,
    cache_dir: Path = CACHE_DIR,
    context: Path = REPO_ROOT,
    bases: tuple[records.Built, records.Built] | None = None,
) -> records.Built:
    """Build the Dockerfile into `ref` (default `localhost/structured-api:<git tag>`); the
    oci-archive carries that name, and containerd names the imported image after it.

    bases: the (python, uv) base images; default: base.ensure_all() from the same cache.
    """
    started = time.monotonic()
    python, uv = bases or base.ensure_all(cache_dir)
    ref = ref or f"{APP_IMAGE}:{git_tag(context)}"
    log = cache_dir / "logs" / "app.log"
    log.unlink(missing_ok=True)
    with stage(f"buildah bud {ref} (Dockerfile, layer cache on)"):
        run(
            buildah.bud(
                "--file", str(context / "Dockerfile"), *_trust_mount(),
                "--build-arg", f"PYTHON_IMAGE={python.ref}",
                "--build-arg", f"UV_IMAGE={uv.ref}", *_revision_label(context),
                "--tag", ref, str(context),
            ),
            heavy=True, log=log, echo=is_step,
        )  # fmt: skip
    built = export_if_changed(ref, cache_dir / archive_name(ref), started=started, log=log)
    repository = ref.rsplit(":", 1)[0]
    records.prune(repository, keep=built.archive, cache_dir=cache_dir, newest=KEEP_ARCHIVES)
    return built
