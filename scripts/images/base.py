"""The two base images the Dockerfile's ARGs name, made here instead of pulled.

* `localhost/python:3.11-slim-bookworm`: a stand-in for `python:3.11-slim-bookworm` from
  Debian's own packages: `debootstrap --variant=minbase` of the suite, `python3.11` and
  `ca-certificates`, the suite's security updates, slimmed like Debian's slim images, and
  `/usr/local/bin/python3.11` (the official image's interpreter path, which the
  Dockerfile's venv points at) as a link to Debian's `/usr/bin/python3.11`.
* `localhost/uv:<version>`: like `ghcr.io/astral-sh/uv:<version>`, FROM scratch with the
  static `/uv` and `/uvx` of the PyPI wheel `uv==<version>` (musllinux, the build the
  official image ships).

Each is built once and kept as an oci-archive under .cache/images/ named by its cache key,
a digest of its inputs (suite, package list, uv version, RECIPE); it is rebuilt only when
one of them changes. The archive is the cache: when buildah's storage lost the image it is
loaded back from the archive in seconds.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from images import buildah, debian, records
from images.paths import (
    CACHE_DIR,
    PYTHON_IMAGE,
    SHARED_CACHE_DIR,
    UV_IMAGE,
    archive_name,
    uv_version,
)
from images.progress import run, say, stage

#: Bump when the build steps below change what ends up in a base image.
RECIPE: Final = 1
BASE_KEY_LABEL: Final = "io.structured-api.images.base-key"


@dataclass(frozen=True)
class PythonBase:
    """Inputs of the Python base image; its cache key is their digest."""

    suite: str = "bookworm"
    python: str = "3.11"
    packages: tuple[str, ...] = ("python3.11", "ca-certificates")

    @property
    def ref(self) -> str:
        """`localhost/python:3.11-slim-bookworm`."""
        return f"{PYTHON_IMAGE}:{self.python}-slim-{self.suite}"

    @property
    def interpreter(self) -> str:
        """Where the official image has the interpreter, and the Dockerfile expects it."""
        return f"/usr/local/bin/python{self.python}"

    def key(self) -> str:
        """Digest of the inputs (the mirror is left out: it serves the same packages)."""
        return _digest({"recipe": RECIPE, "suite": self.suite, "packages": self.packages})


@dataclass(frozen=True)
class UvImage:
    """Inputs of the uv image."""

    version: str = field(default_factory=uv_version)

    @property
    def ref(self) -> str:
        """`localhost/uv:0.13.8`."""
        return f"{UV_IMAGE}:{self.version}"

    def key(self) -> str:
        """Digest of the inputs."""
        return _digest({"recipe": RECIPE, "uv": self.version, "arch": platform.machine()})


def _digest(inputs: dict[str, object]) -> str:
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]


@contextlib.contextmanager
def cache_lock(cache_dir: Path) -> Iterator[None]:
    """One build at a time per cache (a test and `make cluster` may race)."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    with open(cache_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _cached(ref: str, key: str, archive: Path) -> records.Built | None:
    """The archive's record when it holds `key`, loaded into buildah's storage if missing."""
    record = records.load(archive)
    if record is None or record.key != key:
        return None
    present = buildah.inspect(ref)
    if present is None or present.labels.get(BASE_KEY_LABEL) != key:
        with stage(f"load {ref} from {archive.name}"):
            buildah.pull_archive(archive)
    return record


def _shared(archive: Path, cache_dir: Path) -> Path | None:
    """The shared cache's copy of `archive`, when `cache_dir` is the default one."""
    if SHARED_CACHE_DIR is None or cache_dir.resolve() != CACHE_DIR.resolve():
        return None
    return SHARED_CACHE_DIR / archive.name


def _copy_archive(source: Path, target: Path) -> None:
    """Copy an archive and its record (archive first, record last: a record names a
    complete archive)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    for name in (source.name, source.name + ".json"):
        partial = target.parent / f".{name}.{os.getpid()}"
        shutil.copyfile(source.parent / name, partial)
        os.replace(partial, target.parent / name)


def _from_shared(archive: Path, cache_dir: Path) -> None:
    """Bring the shared cache's copy of a missing archive into `cache_dir`."""
    shared = _shared(archive, cache_dir)
    if shared is not None and records.load(archive) is None and records.load(shared):
        with stage(f"copy {archive.name} from {shared.parent}"):
            _copy_archive(shared, archive)


def _to_shared(built: records.Built, cache_dir: Path) -> records.Built:
    """Leave a copy of a current archive in the shared cache (when it is not there yet)."""
    shared = _shared(built.archive, cache_dir)
    if shared is not None and records.load(shared) is None:
        with contextlib.suppress(OSError):  # a full or read-only home only costs speed
            _copy_archive(built.archive, shared)
    return built


def _export(ref: str, key: str, archive: Path, started: float, cache_dir: Path) -> records.Built:
    with stage(f"export {ref} to {archive.name}"):
        buildah.push_archive(ref, archive)
    info = buildah.inspect(ref)
    assert info is not None
    built = records.Built(
        ref=ref,
        archive=archive,
        image_id=info.id,
        key=key,
        size=buildah.size(ref),
        rebuilt=True,
        seconds=round(time.monotonic() - started, 1),
    )
    built.save()
    records.prune(ref.rsplit(":", 1)[0], keep=archive, cache_dir=cache_dir)
    return built


def _ensure(
    ref: str, key: str, cache_dir: Path, build: Callable[[str, Path], records.Built]
) -> records.Built:
    """`ref` at `key`: from the cache (or the shared cache) when there, else `build`."""
    archive = cache_dir / archive_name(f"{ref}-{key}")
    with cache_lock(cache_dir):
        _from_shared(archive, cache_dir)
        cached = _cached(ref, key, archive)
        if cached is not None:
            say(f"{ref}: cached ({archive.name})")
            return _to_shared(cached, cache_dir)
        return _to_shared(build(key, archive), cache_dir)


def ensure_python(spec: PythonBase | None = None, cache_dir: Path = CACHE_DIR) -> records.Built:
    """The Python base image: from the cache when its inputs are unchanged, else built."""
    spec = spec or PythonBase()
    return _ensure(
        spec.ref,
        spec.key(),
        cache_dir,
        lambda key, archive: _build_python(spec, key, archive, cache_dir),
    )


def _build_python(spec: PythonBase, key: str, archive: Path, cache_dir: Path) -> records.Built:
    started = time.monotonic()
    mirror = debian.host_mirror(spec.suite)
    work = cache_dir / "work" / f"rootfs-{key}"
    log = cache_dir / "logs" / f"python-{key}.log"
    _remove_tree(work)
    (cache_dir / "debootstrap-debs").mkdir(parents=True, exist_ok=True)
    container = None
    try:
        with stage(f"debootstrap {spec.suite} minbase + {', '.join(spec.packages)}"):
            run(
                [
                    "debootstrap", "--variant=minbase", f"--include={','.join(spec.packages)}",
                    f"--cache-dir={(cache_dir / 'debootstrap-debs').resolve()}",
                    spec.suite, work, mirror.debian,
                ],
                heavy=True, log=log,
            )  # fmt: skip
        debian.prepare_rootfs(work, suite=spec.suite, mirror=mirror)
        container = buildah.WorkingContainer("scratch")
        with stage("import the root file system into buildah"):
            _copy_tree(work, container)
        _remove_tree(work)
        with stage(f"apt-get upgrade from {spec.suite}-security, then trim"):
            container.run("sh", "-c", debian.UPGRADE_AND_TRIM, network="host", log=log)
        # The official image's names: python3.11 (what the Dockerfile's venv points at),
        # python3 and python, all in /usr/local/bin, first on PATH.
        name = f"python{spec.python}"
        links = [f"ln -s /usr/bin/{name} {spec.interpreter}"]
        links += [f"ln -s {name} /usr/local/bin/{alias}" for alias in ("python3", "python")]
        container.run("sh", "-c", " && ".join(links))
        version = container.run(
            spec.interpreter, "-c", "import platform; print(platform.python_version())"
        ).strip()
        container.config(
            "--env", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "--env", "LANG=C.UTF-8",
            "--cmd", "python3",
            "--label", f"{BASE_KEY_LABEL}={key}",
            "--label", f"org.opencontainers.image.title={spec.ref}",
            "--label", f"org.opencontainers.image.version={version}",
            "--label", "org.opencontainers.image.description=Stand-in for python:"
            f"{spec.python}-slim-{spec.suite} from Debian's python{spec.python} "
            f"(debootstrap {spec.suite} minbase, {mirror.debian})",
        )  # fmt: skip
        with stage(f"commit {spec.ref} (one squashed layer)"):
            container.commit(spec.ref, squash=True)
            container = None
    finally:
        if container is not None:
            container.remove()
        _remove_tree(work)
    return _export(spec.ref, key, archive, started, cache_dir)


def _copy_tree(rootfs: Path, container: buildah.WorkingContainer) -> None:
    """Copy a root file system into a container, owners and modes kept, /dev etc. empty."""
    target = container.mount()
    try:
        pack = subprocess.Popen(
            ["tar", "-C", str(rootfs), "--numeric-owner", "--exclude=./dev/*",
             "--exclude=./proc/*", "--exclude=./sys/*", "--exclude=./run/*", "-cf", "-", "."],
            stdout=subprocess.PIPE,
        )  # fmt: skip
        unpack = subprocess.run(
            ["tar", "-C", str(target), "--numeric-owner", "-xpf", "-"], stdin=pack.stdout
        )
        assert pack.stdout is not None
        pack.stdout.close()
        if pack.wait() != 0 or unpack.returncode != 0:
            raise RuntimeError(f"copying {rootfs} into {container.name} failed")
    finally:
        container.umount()


def _remove_tree(path: Path) -> None:
    """Delete a debootstrap tree, unmounting whatever an interrupted run left mounted in it."""
    if not path.exists():
        return
    prefix = str(path.resolve()) + "/"
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for mount in sorted((m for m in mounts if m.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "-l", mount], check=False)
    shutil.rmtree(path)


def ensure_uv(spec: UvImage | None = None, cache_dir: Path = CACHE_DIR) -> records.Built:
    """The uv image: from the cache when the version is unchanged, else built."""
    spec = spec or UvImage()
    return _ensure(
        spec.ref,
        spec.key(),
        cache_dir,
        lambda key, archive: _build_uv(spec, key, archive, cache_dir),
    )


def _build_uv(spec: UvImage, key: str, archive: Path, cache_dir: Path) -> records.Built:
    started = time.monotonic()
    work = cache_dir / "work" / f"uv-{key}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    container = None
    try:
        wheel = download_uv_wheel(spec.version, cache_dir / "downloads")
        binaries = extract_verified(wheel, ("uv", "uvx"), work)
        container = buildah.WorkingContainer("scratch")
        for binary in binaries:
            container.copy(binary, f"/{binary.name}", mode="0755")
        container.config(
            "--entrypoint", '["/uv"]',
            "--label", f"{BASE_KEY_LABEL}={key}",
            "--label", f"org.opencontainers.image.title={spec.ref}",
            "--label", f"org.opencontainers.image.version={spec.version}",
            "--label", f"org.opencontainers.image.description=uv {spec.version} from the "
            f"PyPI wheel {wheel.name}",
        )  # fmt: skip
        container.commit(spec.ref)
        container = None
    finally:
        if container is not None:
            container.remove()
        shutil.rmtree(work, ignore_errors=True)
    return _export(spec.ref, key, archive, started, cache_dir)


def _pip() -> list[str]:
    """A pip to download with: this interpreter's, python3's, or one uv runs for us."""
    if importlib.util.find_spec("pip") is not None:
        return [sys.executable, "-m", "pip"]
    probe = subprocess.run(["python3", "-m", "pip", "--version"], capture_output=True)
    if probe.returncode == 0:
        return ["python3", "-m", "pip"]
    if shutil.which("uvx"):
        return ["uvx", "pip"]
    raise FileNotFoundError("no pip to download the uv wheel with (python3 -m pip, uvx pip)")


def download_uv_wheel(version: str, downloads: Path) -> Path:
    """The musllinux wheel of `uv==version` for this machine, downloaded once."""
    platform_tag = f"musllinux_1_1_{platform.machine()}"
    found = sorted(downloads.glob(f"uv-{version}-*{platform_tag}*.whl"))
    if found:
        return found[0]
    with stage(f"download the PyPI wheel uv=={version} ({platform_tag})"):
        run(
            [*_pip(), "download", "--quiet", "--disable-pip-version-check", "--no-deps",
             "--only-binary=:all:", f"--platform={platform_tag}", "--python-version=3.11",
             f"--dest={downloads}", f"uv=={version}"],
        )  # fmt: skip
    found = sorted(downloads.glob(f"uv-{version}-*{platform_tag}*.whl"))
    if not found:
        raise FileNotFoundError(f"pip downloaded no uv {version} wheel for {platform_tag}")
    return found[0]


def extract_verified(wheel: Path, names: tuple[str, ...], target: Path) -> list[Path]:
    """Extract the wheel's `*.data/scripts/<name>` files, checked against its RECORD."""
    out: list[Path] = []
    with zipfile.ZipFile(wheel) as archive:
        record_name = next(n for n in archive.namelist() if n.endswith(".dist-info/RECORD"))
        hashes = {}
        for line in archive.read(record_name).decode().splitlines():
            path, digest, _size = line.rsplit(",", 2)
            hashes[path] = digest
        for name in names:
            member = next(n for n in archive.namelist() if n.endswith(f".data/scripts/{name}"))
            data = archive.read(member)
            actual = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            if hashes.get(member) != f"sha256={actual.decode()}":
                raise ValueError(f"{member} in {wheel.name} does not match its RECORD")
            (target / name).write_bytes(data)
            out.append(target / name)
    return out


def ensure_all(cache_dir: Path = CACHE_DIR) -> list[records.Built]:
    """Both base images."""
    return [ensure_python(cache_dir=cache_dir), ensure_uv(cache_dir=cache_dir)]
