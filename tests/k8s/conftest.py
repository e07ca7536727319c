"""Fixtures for tests against a real loopback control plane (scripts/kubetools)."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator

import pytest
from kubetools import ControlPlane, User
from kubetools.build import binary_paths

# A user with no RBAC bindings: tests grant it exactly what the operator should have.
RESTRICTED = User("restricted", ("kubetools:restricted",))
# A cold build (etcd + kube-apiserver, empty Go caches) took 8m17s on 2 cores here; a loaded
# machine or a slow proxy can take several times that (notes: "Expect a long cold build").
_BUILD_TIMEOUT = 3600
_STARTUP = pytest.StashKey[dict[str, float]]()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Refuse control_plane users without the k8s mark; allow time for a cold build."""
    unmarked = [
        i.nodeid
        for i in items
        if "control_plane" in getattr(i, "fixturenames", ()) and not i.get_closest_marker("k8s")
    ]
    if unmarked:
        raise pytest.UsageError(f"tests using control_plane need @pytest.mark.k8s: {unmarked}")
    k8s = [i for i in items if i.get_closest_marker("k8s")]
    if k8s and not binary_paths().exist():
        # The build runs inside the first test's fixture set-up, which the default
        # pytest-timeout (pyproject) would cut short; never skip instead of building.
        for item in k8s:
            item.add_marker(pytest.mark.timeout(_BUILD_TIMEOUT))


@pytest.fixture(scope="session")
def control_plane(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ControlPlane]:
    """One etcd + kube-apiserver for the session, built first if the binaries are missing."""
    with ControlPlane(tmp_path_factory.mktemp("control-plane"), users=[RESTRICTED]) as cp:
        request.config.stash[_STARTUP] = {**cp.timings, "total": cp.startup_seconds}
        yield cp


@pytest.fixture
def namespace(control_plane: ControlPlane, request: pytest.FixtureRequest) -> str:
    """A fresh namespace per test, never deleted.

    A bare apiserver runs no namespace controller, so a deleted namespace would only sit in
    Terminating (notes, "kube-apiserver"); the whole etcd is discarded at session end instead.
    """
    slug = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower()).strip("-")[:50].strip("-")
    name = f"{slug}-{secrets.token_hex(3)}"
    control_plane.kubectl("create", "namespace", name)
    return name


@pytest.fixture
def restricted_user(control_plane: ControlPlane) -> str:
    """Name of a static-token user with no RBAC bindings (kubectl/helm user=...)."""
    return RESTRICTED.name


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Report how long the control plane took to start."""
    startup = terminalreporter.config.stash.get(_STARTUP, None)
    if startup:
        parts = ", ".join(f"{k} {v:.1f}s" for k, v in startup.items())
        terminalreporter.write_line(f"k8s control plane start-up: {parts}")
