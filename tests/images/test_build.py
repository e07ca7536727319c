"""The container images, built for real with buildah (scripts/images), run the way the charts
run them: read-only root file system, the image's non-root user, no capabilities
(images.sandbox starts them with runc, the cluster's runtime, in a network namespace of
their own). Needs root, buildah, runc and debootstrap (scripts/install-test-tools.sh); the
first run builds the base images (minutes), later runs reuse .cache/images/.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from images import app, base, buildah, deps, records, sandbox

from tests.chart.test_container_build import copies, instructions

ROOT = Path(__file__).resolve().parents[2]
DEVDEPS_VALUES = yaml.safe_load((ROOT / "charts/structured-api-devdeps/values.yaml").read_text())
#: The app image these tests build from a snapshot of the build context.
TEST_REF = "localhost/structured-api:images-test"
#: What .dockerignore keeps out of the build context; the snapshot holds decoys of each.
DECOYS = {
    "tests/test_decoy.py": "DECOY = 1\n",
    "bench/decoy.py": "DECOY = 1\n",
    ".git/HEAD": "ref: refs/heads/decoy\n",
    ".dev/env": "SECRET_KEY=decoy\n",
    ".env": "SECRET_KEY=decoy\n",
}

pytestmark = [pytest.mark.images, pytest.mark.timeout(3600)]


@pytest.fixture(scope="session", autouse=True)
def machinery() -> None:
    """Fail loudly (never skip) when this machine cannot build images."""
    if os.geteuid() != 0:
        raise AssertionError("the images tests need root (buildah's storage, runc)")
    missing = [tool for tool in ("buildah", "runc", "debootstrap") if shutil.which(tool) is None]
    if missing:
        raise AssertionError(f"missing {missing}: run scripts/install-test-tools.sh as root")


@pytest.fixture(scope="session")
def bases() -> tuple[records.Built, records.Built]:
    """The local Python and uv base images (from .cache/images when unchanged)."""
    return base.ensure_python(), base.ensure_uv()


def run_in(image: str, *argv: str) -> str:
    """`buildah run` in a throwaway container of image; its output."""
    container = buildah.WorkingContainer(image)
    try:
        return container.run(*argv)
    finally:
        container.remove()


# --- base images -----------------------------------------------------------------------------


def test_python_base_has_python_3_11_where_the_official_image_has_it(
    bases: tuple[records.Built, records.Built],
) -> None:
    python, _ = bases
    spec = base.PythonBase()

    out = run_in(
        python.ref, "sh", "-c",
        f"readlink -f {spec.interpreter}; command -v python3; {spec.interpreter} -c "
        "'import sys, ssl, sqlite3, zoneinfo; print(sys.version_info[:2])'",
    ).split()  # fmt: skip

    assert spec.interpreter == "/usr/local/bin/python3.11"
    assert out == ["/usr/bin/python3.11", "/usr/local/bin/python3", "(3,", "11)"]


def test_python_base_is_slim_and_carries_no_host_files(
    bases: tuple[records.Built, records.Built],
) -> None:
    python, _ = bases
    container = buildah.WorkingContainer(python.ref)
    try:
        root = container.mount()
        docs = [p.name for p in (root / "usr/share/doc").rglob("*") if p.is_file()]
        manuals = [p for p in (root / "usr/share/man").rglob("*") if p.is_file()]
        apt_lists = list((root / "var/lib/apt/lists").glob("*_Packages*"))
        sources = (root / "etc/apt/sources.list.d/debian.sources").read_text()
        bundle = root / "etc/ssl/certs/ca-certificates.crt"
        resolver = root / "etc/resolv.conf"
        hostname = root / "etc/hostname"
        # buildah leaves empty files where it mounts its own during RUN steps.
        leaked_sizes = [p.stat().st_size for p in (resolver, hostname) if p.exists()]
        bundle_exists = bundle.is_file()
    finally:
        container.umount()
        container.remove()

    assert set(docs) == {"copyright"}
    assert manuals == [] and apt_lists == []
    assert "bookworm-security" in sources
    assert bundle_exists
    # debootstrap copies the host's resolver and name; the image must not keep them.
    assert leaked_sizes in ([], [0], [0, 0])
    assert python.archive.stat().st_size < 70 * 2**20


def test_uv_image_holds_the_uv_the_makefile_pins(
    bases: tuple[records.Built, records.Built],
) -> None:
    _, uv = bases

    assert run_in(uv.ref, "/uv", "--version").split()[:2] == ["uv", base.UvImage().version]


def test_unchanged_base_inputs_reuse_the_cached_archives(
    bases: tuple[records.Built, records.Built],
) -> None:
    started = time.monotonic()
    again = [base.ensure_python(), base.ensure_uv()]
    seconds = time.monotonic() - started

    assert [b.rebuilt for b in again] == [False, False]
    assert [b.image_id for b in again] == [b.image_id for b in bases]
    assert seconds < 30


def test_a_uv_pin_change_rebuilds_the_uv_base(tmp_path: Path) -> None:
    pinned = base.UvImage()
    other = base.UvImage("0.13.7")
    try:
        first = base.ensure_uv(other, cache_dir=tmp_path)
        second = base.ensure_uv(other, cache_dir=tmp_path)
        version = run_in(other.ref, "/uv", "--version").split()[1]
    finally:
        buildah.remove_image(other.ref)

    assert other.key() != pinned.key()
    assert first.rebuilt and not second.rebuilt
    assert first.archive == second.archive and first.archive.is_file()
    assert version == "0.13.7"


# --- the app image ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def context(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A snapshot of the build context (what the Dockerfile copies, .dockerignore, decoys).

    A snapshot, so edits others make in the working tree cannot change the second build.
    """
    target = tmp_path_factory.mktemp("context")
    names = {"Dockerfile", ".dockerignore", *(s for group in copies() for s in group)}
    for name in names:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, target / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, target / name)
    for name, text in DECOYS.items():
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        (target / name).write_text(text)
    return target


@pytest.fixture(scope="session")
def app_builds(
    bases: tuple[records.Built, records.Built],
    context: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[records.Built, records.Built]]:
    """The Dockerfile built twice on the local bases, nothing changed in between."""
    cache = tmp_path_factory.mktemp("app-cache")
    before = buildah.containers()
    try:
        first = app.build(TEST_REF, context=context, cache_dir=cache, bases=bases)
        second = app.build(TEST_REF, context=context, cache_dir=cache, bases=bases)
        LEFT_BEHIND.extend(sorted(buildah.containers() - before))
        yield first, second
    finally:
        buildah.remove_image(TEST_REF)


#: Working containers the two builds added (buildah 1.28 keeps the uv stage's container
#: after every build unless `bud --force-rm`).
LEFT_BEHIND: list[str] = []


def test_app_image_is_built_from_the_dockerfile_on_the_local_bases(
    app_builds: tuple[records.Built, records.Built],
) -> None:
    first, _ = app_builds
    info = buildah.inspect(TEST_REF)
    assert info is not None
    (cmd,) = [rest for i, rest in instructions() if i == "CMD"]

    assert info.labels[base.BASE_KEY_LABEL] == base.PythonBase().key()
    assert info.config["User"] == "10001:10001"
    assert info.config["Cmd"] == json.loads(cmd)
    assert "APP_ENV=production" in info.config["Env"]
    assert first.archive.is_file()


def test_a_second_build_with_no_change_reuses_every_layer(
    app_builds: tuple[records.Built, records.Built],
) -> None:
    first, second = app_builds

    assert second.image_id == first.image_id
    assert not second.rebuilt  # same image: the archive is not exported again
    assert second.seconds < 120


def test_builds_leave_no_working_container_behind(
    app_builds: tuple[records.Built, records.Built],
) -> None:
    # Others may build at the same time; only the containers bud makes for stages count.
    assert [
        n for n in LEFT_BEHIND if re.match(r"(uv|python|[0-9a-f]{12})-working-container", n)
    ] == []


def in_app(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run argv in the app image as the chart does (uid 10001, read-only root, /tmp)."""
    return sandbox.run(TEST_REF, argv, env=env)


WRITE_PROBE = """
import errno, json, os, app, sapi_operator
result = {"uid": os.getuid(), "gid": os.getgid(), "denied": {}}
for path in ("/probe", "/srv/probe", "/opt/venv/probe", "/usr/local/probe", "/var/tmp/probe"):
    try:
        open(path, "w").close()
        result["denied"][path] = None
    except OSError as error:
        result["denied"][path] = errno.errorcode[error.errno]
with open("/tmp/probe", "w") as fh:
    fh.write("ok")
print(json.dumps(result))
"""


def test_app_imports_as_uid_10001_with_only_tmp_writable(
    app_builds: tuple[records.Built, records.Built],
) -> None:
    result = in_app("python", "-c", WRITE_PROBE)

    assert result.returncode == 0, result.stdout
    probe = json.loads(result.stdout.strip().splitlines()[-1])
    assert (probe["uid"], probe["gid"]) == (10001, 10001)
    assert set(probe["denied"].values()) == {"EROFS"}, probe


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (("alembic", "--help"), "usage: alembic"),
        (("gunicorn", "--version"), "gunicorn (version "),
        # Reads alembic.ini and migrations/ from the working directory, no database.
        (("alembic", "heads"), "(head)"),
    ],
)
def test_entry_commands_run_in_the_image(
    app_builds: tuple[records.Built, records.Built], argv: tuple[str, ...], expected: str
) -> None:
    result = in_app(*argv)

    assert result.returncode == 0, result.stdout
    assert expected in result.stdout


SERVE_LIVEZ = """
gunicorn -c python:app.gunicorn_conf app.wsgi:application & pid=$!
i=0
until python -c "from urllib.request import urlopen as get
print('livez', get('http://127.0.0.1:8000/livez').status)" 2>/dev/null; do
  i=$((i + 1)); [ $i -lt 150 ] || break; sleep 0.2
done
kill -TERM $pid; wait $pid; echo "exit=$?"
"""


def test_the_api_serves_livez_on_a_read_only_root(
    app_builds: tuple[records.Built, records.Built],
) -> None:
    # gunicorn's heartbeat files and the Prometheus multiprocess directory live in /tmp.
    result = in_app(
        "sh", "-c", SERVE_LIVEZ, env={"APP_ENV": "development", "GUNICORN_WORKERS": "1"}
    )

    assert result.returncode == 0, result.stdout
    assert "livez 200" in result.stdout.splitlines(), result.stdout
    assert result.stdout.strip().endswith("exit=0")  # a graceful stop on SIGTERM


def test_the_image_holds_nothing_dockerignore_leaves_out(
    app_builds: tuple[records.Built, records.Built],
) -> None:
    container = buildah.WorkingContainer(TEST_REF)
    try:
        root = container.mount()
        srv = sorted(p.name for p in (root / "srv").iterdir())
        site = root / "opt/venv/lib/python3.11/site-packages"
        top_level = {p.name for p in site.iterdir()}
        leaked = [
            str(p.relative_to(root))
            for tree in (root / "srv", root / "opt", root / "src")
            if tree.exists()
            for p in tree.rglob("*")
            if p.name in {".git", ".dev", ".env"}
        ]
        build_stage = (root / "src").exists()
    finally:
        container.umount()
        container.remove()

    assert srv == ["alembic.ini", "migrations"]
    assert {"app", "sapi_operator"} <= top_level
    assert not {"tests", "bench"} & top_level
    assert leaked == [] and not build_stage


# --- development dependency images ------------------------------------------------------------


@pytest.fixture(scope="session")
def devdeps(bases: tuple[records.Built, records.Built]) -> dict[str, records.Built]:
    """The PostgreSQL, Redis and simulator images, by name."""
    return {dep.name: built for dep, built in zip(deps.ALL, deps.build_all(), strict=True)}


@pytest.mark.parametrize(
    ("name", "values"),
    [("postgresql", "postgresql"), ("redis", "redis"), ("provider-sim", "providerSim")],
)
def test_devdeps_images_run_as_the_uid_their_chart_sets(
    devdeps: dict[str, records.Built], name: str, values: str
) -> None:
    info = buildah.inspect(devdeps[name].ref)
    uid = DEVDEPS_VALUES[values]["runAsUser"]
    chart = DEVDEPS_VALUES[values]["image"]

    assert info is not None and info.config["User"] == f"{uid}:{uid}"
    assert devdeps[name].ref == f"{chart['repository']}:{chart['tag']}"


POSTGRES_SESSION = """
postgresql-entrypoint & pid=$!
i=0
until pg_isready -h 127.0.0.1 -q; do i=$((i + 1)); [ $i -lt 300 ] || exit 9; sleep 0.2; done
postgres --version
PGPASSWORD=s3cret psql -h 127.0.0.1 -U structured_api -d structured_api -tAc \
  "select 'session ' || current_user || ' ' || current_database()"
PGPASSWORD=wrong psql -h 127.0.0.1 -U structured_api -d structured_api -tAc "select 'wrong-ok'"
kill -INT $pid; wait $pid; echo "exit=$?"
"""
PG_DIRS = ("/tmp", "/var/lib/postgresql/data", "/var/run/postgresql")


@pytest.mark.parametrize("method", ["scram-sha-256", "md5", "trust"])
def test_postgresql_initdbs_an_empty_volume_and_accepts_connections(
    devdeps: dict[str, records.Built], method: str
) -> None:
    env = {
        "POSTGRES_USER": "structured_api",
        "POSTGRES_DB": "structured_api",
        "POSTGRES_PASSWORD": "s3cret",
        "POSTGRES_HOST_AUTH_METHOD": method,
    }

    result = sandbox.run(
        devdeps["postgresql"].ref, ["sh", "-c", POSTGRES_SESSION], env=env, empty_dirs=PG_DIRS
    )

    assert result.returncode == 0, result.stdout
    assert "postgres (PostgreSQL) 15." in result.stdout
    assert "session structured_api structured_api" in result.stdout
    # Over TCP a wrong password is refused, unless the method is trust.
    assert ("wrong-ok" in result.stdout) is (method == "trust")
    assert result.stdout.strip().endswith("exit=0")


def test_postgresql_refuses_to_start_without_a_password(devdeps: dict[str, records.Built]) -> None:
    result = sandbox.run(
        devdeps["postgresql"].ref, [], entrypoint=True, empty_dirs=PG_DIRS, timeout=60
    )

    assert result.returncode == 64
    assert "POSTGRES_PASSWORD is required" in result.stdout


REDIS_SESSION = """
redis-server --version
redis-server --bind 127.0.0.1 --save '' --appendonly no --dir /data --requirepass s3cret \
  --maxmemory-policy noeviction >/tmp/redis.log & pid=$!
i=0
until REDISCLI_AUTH=s3cret redis-cli ping 2>/dev/null | grep -q PONG; do
  i=$((i + 1)); [ $i -lt 150 ] || exit 9; sleep 0.2
done
REDISCLI_AUTH=s3cret redis-cli set k v >/dev/null && REDISCLI_AUTH=s3cret redis-cli get k
redis-cli ping
kill -TERM $pid; wait $pid; echo "exit=$?"
"""


def test_redis_serves_with_a_password_on_a_read_only_root(
    devdeps: dict[str, records.Built],
) -> None:
    result = sandbox.run(
        devdeps["redis"].ref, ["sh", "-c", REDIS_SESSION], empty_dirs=("/tmp", "/data")
    )

    assert result.returncode == 0, result.stdout
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert lines[0].startswith("Redis server v=7.")
    assert lines[-3:] == ["v", "NOAUTH Authentication required.", "exit=0"]


SIM_SESSION = """
"$@" & pid=$!
python3 - <<'PY'
import json, time, urllib.request
body = json.dumps({"model": "sim-small", "messages": [{"role": "user", "content": "hi there"}]})
for _ in range(100):
    try:
        request = urllib.request.Request(
            "http://127.0.0.1:9100/v1/chat/completions", data=body.encode(),
            headers={"Content-Type": "application/json", "Authorization": "Bearer k"},
        )
        answer = json.load(urllib.request.urlopen(request))
        print("reply", answer["choices"][0]["message"]["content"])
        break
    except OSError:
        time.sleep(0.1)
PY
kill -TERM $pid; wait $pid; echo "exit=$?"
"""


def test_provider_simulator_answers_and_stops_on_sigterm(
    devdeps: dict[str, records.Built],
) -> None:
    info = buildah.inspect(devdeps["provider-sim"].ref)
    assert info is not None
    command = [*info.config["Entrypoint"], "--host", "127.0.0.1", "--port", "9100"]

    result = sandbox.run(devdeps["provider-sim"].ref, ["sh", "-c", SIM_SESSION, "sh", *command])

    assert result.returncode == 0, result.stdout
    assert "reply echo: hi there" in result.stdout
    # PID 1 would ignore SIGTERM; the entrypoint turns it into a clean stop.
    assert result.stdout.strip().endswith("exit=0")
