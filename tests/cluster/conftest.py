"""Fixtures for tests on a real one-node Kubernetes cluster (scripts/kubetools/cluster.py).

`cluster` (session) is the entry point: a running kubetools.cluster.Cluster with
`.kubectl(...)`, `.helm(...)`, `.apply(...)`, `.import_image(archive)`, `.create_namespace`,
`.kubeconfig`, `.env()`, `.network` (node_ip, dns_ip, pod/service ranges). Tests using it
need `@pytest.mark.cluster`. One cluster per machine: a cluster started by
`python scripts/cluster.py up` must be stopped (`down`) before the tests run.

`cluster_namespace` gives each test a namespace of its own (deleted afterwards, without
waiting); `busybox_image` is a FROM-scratch busybox-static image already on the node.
"""

from __future__ import annotations

import re
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubetools.build import binary_paths, cluster_binary_paths
from kubetools.cluster import IMAGE_PREFIX, Cluster
from kubetools.images import File, build_scratch_image
from kubetools.paths import CACHE_DIR
from kubetools.prometheus import prometheus_path
from kubetools.traefik import traefik_path

# A fixed state dir (not a pytest tmp dir that pytest itself deletes later): what a killed
# session leaves is found and removed by the next session's up() (docs/cluster.md).
STATE_DIR = CACHE_DIR / "cluster-tests"
# A cold build of every binary took about 25 min here on 2 shared cores (Traefik and
# Prometheus for test_release add more); the cluster's start-up about a minute.
# pytest-timeout counts fixture set-up against the first test.
_BUILD_TIMEOUT = 3600
_UP_TIMEOUT = 600
_RELEASE_SETUP = 1200
_STARTUP = pytest.StashKey[dict[str, float]]()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Require the cluster mark, allow for a cold build, run teardown tests last."""
    # Only this directory's `cluster` fixture: tests/chart and tests/k8s have their own
    # fixture of that name (the bare control plane), which needs no mark.
    here = Path(__file__).parent
    unmarked = [
        i.nodeid
        for i in items
        if i.path.is_relative_to(here)
        and "cluster" in getattr(i, "fixturenames", ())
        and not i.get_closest_marker("cluster")
    ]
    if unmarked:
        raise pytest.UsageError(
            f"tests using the cluster fixture need @pytest.mark.cluster: {unmarked}"
        )
    marked = [i for i in items if i.get_closest_marker("cluster")]
    if not marked:
        return
    built = (
        binary_paths().exist()
        and cluster_binary_paths().exist()
        and traefik_path().is_file()
        and prometheus_path().is_file()
    )
    for item in marked:
        timeout = _UP_TIMEOUT if built else _BUILD_TIMEOUT
        if "stack" in getattr(item, "fixturenames", ()):
            # test_release's module fixture also builds the app and dev dependency images
            # (minutes when the buildah layer cache is cold) and installs two charts.
            timeout += _RELEASE_SETUP
        item.add_marker(pytest.mark.timeout(timeout))
    # Tests that take the session cluster down (cluster_teardown) go after every other test.
    last = [i for i in items if "cluster_teardown" in getattr(i, "fixturenames", ())]
    items[:] = [i for i in items if i not in last] + last


@pytest.fixture(scope="session")
def cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """The one-node cluster of this session, built first when binaries are missing."""
    lines: list[str] = []
    c = Cluster(STATE_DIR, say=lines.append)
    try:
        c.up()
    except Exception as err:
        raise RuntimeError("cluster start-up failed:\n" + "\n".join(lines)) from err
    request.config.stash[_STARTUP] = {"up": c.timings["up"]}
    yield c
    if c.running:
        c.down()  # raises ClusterError naming whatever it left behind


@pytest.fixture
def cluster_teardown(cluster: Cluster) -> Cluster:
    """The session cluster, for a test that takes it down: such tests run last."""
    return cluster


@pytest.fixture
def cluster_namespace(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace (its default ServiceAccount exists); deleted after the test."""
    slug = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = cluster.create_namespace(f"{slug}-{secrets.token_hex(3)}")
    yield name
    if cluster.running:
        cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="session")
def busybox_image(cluster: Cluster) -> str:
    """`localhost/structured-api/busybox:static`: FROM scratch + Debian's busybox-static."""
    busybox = Path("/bin/busybox")
    ldd = subprocess.run(["ldd", str(busybox)], capture_output=True, text=True)
    if not busybox.is_file() or "not a dynamic executable" not in ldd.stdout + ldd.stderr:
        pytest.fail("needs a static /bin/busybox: apt-get install -y busybox-static")
    ref = f"{IMAGE_PREFIX}/busybox:static"
    archive = build_scratch_image(
        ref, {"/bin/busybox": File(busybox, 0o755)}, entrypoint=["/bin/busybox"]
    )
    cluster.import_image(archive)
    return ref


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Report how long the cluster took to start."""
    startup = terminalreporter.config.stash.get(_STARTUP, None)
    if startup:
        terminalreporter.write_line(f"one-node cluster start-up: {startup['up']:.1f}s")
