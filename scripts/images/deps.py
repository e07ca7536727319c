"""Images of the in-cluster DEVELOPMENT dependencies, on the same local Python base image.

* PostgreSQL 15: Debian's `postgresql-15`; an entrypoint initdb's the (emptyDir) data
  directory on first start and runs postgres as uid 999 (containerfiles/).
* Redis: Debian's `redis-server`, uid 999, no persistence, `noeviction`.
* The AI provider simulator: `scripts/provider_sim` (standard library only), uid 10001.

Production never uses these: the main chart points at managed PostgreSQL and Redis and at
real providers. Each image is a Containerfile under containerfiles/ built with
`buildah bud --layers`; its context is staged from the files it copies, so a build with
nothing changed is all cache hits and the archive is not exported again.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from images import app, base, buildah, records
from images.archive import export_if_changed
from images.paths import CACHE_DIR, CONTAINERFILES, DEVDEPS_IMAGE, SCRIPTS_DIR, archive_name
from images.progress import run, stage


@dataclass(frozen=True)
class Dependency:
    """One development dependency image: its Containerfile and what its context holds."""

    name: str
    tag: str
    #: Context entry name -> source path (a file or a directory).
    files: tuple[tuple[str, Path], ...] = ()

    @property
    def ref(self) -> str:
        """`localhost/structured-api-devdeps/<name>:<tag>`."""
        return f"{DEVDEPS_IMAGE}/{self.name}:{self.tag}"

    @property
    def containerfile(self) -> Path:
        """containerfiles/<name>.Containerfile."""
        return CONTAINERFILES / f"{self.name}.Containerfile"


POSTGRESQL = Dependency(
    "postgresql", "15", (("postgresql-entrypoint.sh", CONTAINERFILES / "postgresql-entrypoint.sh"),)
)
REDIS = Dependency("redis", "7")
#: `dev`: rebuilt from the working tree; restart its pod after importing a new build.
PROVIDER_SIM = Dependency("provider-sim", "dev", (("provider_sim", SCRIPTS_DIR / "provider_sim"),))
ALL = (POSTGRESQL, REDIS, PROVIDER_SIM)


def _stage_context(dep: Dependency, target: Path) -> None:
    """A build context with the Containerfile and the files it copies (mtimes kept)."""
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    shutil.copy2(dep.containerfile, target / "Containerfile")
    for name, source in dep.files:
        if source.is_dir():
            ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
            shutil.copytree(source, target / name, ignore=ignore)
        else:
            shutil.copy2(source, target / name)


def build(dep: Dependency, *, python: records.Built, cache_dir: Path = CACHE_DIR) -> records.Built:
    """Build one dependency image on the Python base and export it when it changed."""
    started = time.monotonic()
    context = cache_dir / "work" / f"context-{dep.name}"
    log = cache_dir / "logs" / f"{dep.name}.log"
    log.unlink(missing_ok=True)
    _stage_context(dep, context)
    try:
        with stage(f"buildah bud {dep.ref}"):
            run(
                buildah.bud(
                    "--build-arg", f"BASE_IMAGE={python.ref}", "--tag", dep.ref, str(context)
                ),
                heavy=True, log=log, echo=app.is_step,
            )  # fmt: skip
    finally:
        shutil.rmtree(context, ignore_errors=True)
    return export_if_changed(dep.ref, cache_dir / archive_name(dep.ref), started=started, log=log)


def build_all(cache_dir: Path = CACHE_DIR) -> list[records.Built]:
    """Every development dependency image (the Python base first, from its cache)."""
    python = base.ensure_python(cache_dir=cache_dir)
    return [build(dep, python=python, cache_dir=cache_dir) for dep in ALL]
