"""Fixtures for the operator's e2e tests: real kube-apiserver, PostgreSQL, Redis, API.

Each test gets its own namespace and an operator watching only it, run as the restricted
user with exactly the operator Role the Helm chart renders (which must equal
`sapi_operator.rbac.rules()`) bound there: every e2e test is also a test that the chart's
RBAC is sufficient. Teardown deletes the test's resources while
the operator still runs, so finalizers remove their rows; nothing is left for the next
test (a shared config row such as the ApiVersion of /v1 would leak otherwise).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import sqlalchemy as sa
import yaml
from flask import Flask
from kubetools import ControlPlane

from app.core import db
from app.factory import create_app
from app.settings import Settings
from sapi_operator import rbac
from tests.k8s.operator.stack import (
    ROOT,
    Kubectl,
    OperatorProcess,
    chart_election_role,
    chart_operator_role,
    create_database,
    drop_database,
    operator_env,
)
from tests.support.processes import LiveServer, serve_in_thread

CATEGORY = "structured-api"


@pytest.fixture(scope="session")
def crds(control_plane: ControlPlane) -> list[str]:
    """The generated CRDs, installed and established."""
    control_plane.kubectl("apply", "-f", str(ROOT / "operator" / "crds"))
    control_plane.kubectl(
        "wait",
        "--for=condition=Established",
        "crd",
        "-l",
        "app.kubernetes.io/component=crd",
        "--timeout=60s",
    )
    # kubectl's first applies of a new group are slow (discovery and OpenAPI caches refill,
    # ~2 s each here); warm them so the tests time the operator, not kubectl.
    for _ in range(2):
        control_plane.kubectl(
            "apply", "--dry-run=server", "-n", "default", "-f", str(ROOT / "operator" / "examples")
        )
    return [p.name for p in (ROOT / "operator" / "crds").glob("*.yaml")]


@pytest.fixture(scope="session")
def stack_database_url(database_url: str) -> Iterator[str]:
    """A database for the operator and the API, committed to for real (no rollback)."""
    url = create_database(database_url)
    yield url
    drop_database(url)


@pytest.fixture(scope="session")
def stack_redis_url(redis_url: str) -> str:
    """Database 7 of the session Redis: the per-test flush of database 0 leaves it alone."""
    return redis_url.rsplit("/", 1)[0] + "/7"


@pytest.fixture(scope="session")
def stack_secret() -> str:
    """SECRET_KEY shared by API and operator: both derive the credential key from it."""
    return secrets.token_urlsafe(48)


@pytest.fixture(scope="session")
def stack_settings(stack_database_url: str, stack_redis_url: str, stack_secret: str) -> Settings:
    """Settings of the API process."""
    return Settings(
        app_env="test",
        database_url=stack_database_url,
        redis_url=stack_redis_url,
        secret_key=stack_secret,
        log_json=True,
    )


@pytest.fixture(scope="session")
def api_app(stack_settings: Settings) -> Iterator[Flask]:
    """The API app (its config store reloads on the operator's Redis announcements)."""
    app = create_app(stack_settings)
    yield app
    app.extensions["config_store"].stop()
    app.extensions[db.EXTENSION].dispose()


@pytest.fixture(scope="session")
def api(api_app: Flask) -> Iterator[LiveServer]:
    """The API on a loopback port."""
    with serve_in_thread(api_app) as live:
        yield live


@pytest.fixture
def stack_engine(stack_database_url: str) -> Iterator[sa.Engine]:
    """An engine on the stack database, for asserting on rows."""
    engine = sa.create_engine(stack_database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def stack_redis(stack_redis_url: str) -> Iterator[redis.Redis]:
    """A client on the stack's Redis database."""
    client = redis.Redis.from_url(stack_redis_url)
    yield client
    client.close()


def grant_operator_role(cp: ControlPlane, namespace: str, user: str) -> None:
    """Bind the chart's operator Role, exactly as Helm renders it, to `user` in `namespace`."""
    role = chart_operator_role(cp, namespace)
    assert role["rules"] == rbac.rules(), "chart Role and sapi_operator.rbac disagree"
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "operator-under-test", "namespace": namespace},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": role["metadata"]["name"],
        },
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
    }
    cp.kubectl("apply", "-f", "-", input=yaml.safe_dump_all([role, binding]))


def grant_election_role(cp: ControlPlane, namespace: str, user: str) -> str:
    """Bind the chart's leader-election Role to `user`; returns the Lease name it allows."""
    role = chart_election_role(cp, namespace)
    lease = role["rules"][1]["resourceNames"][0]
    assert role["rules"] == rbac.election_rules(lease), "chart and sapi_operator.rbac disagree"
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "operator-election-under-test", "namespace": namespace},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": role["metadata"]["name"],
        },
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
    }
    cp.kubectl("apply", "-f", "-", input=yaml.safe_dump_all([role, binding]))
    return str(lease)


@pytest.fixture
def kube(control_plane: ControlPlane, namespace: str, crds: list[str]) -> Kubectl:
    """kubectl as the admin in the test's namespace."""
    return Kubectl(control_plane, namespace)


def cleanup_namespace(cp: ControlPlane, namespace: str, engine: sa.Engine) -> None:
    """Delete the namespace's resources; strip finalizers left behind; drop its rows."""
    cp.kubectl(
        "delete", CATEGORY, "--all", "-n", namespace, "--wait=true", "--timeout=20s", check=False
    )
    left = cp.kubectl("get", CATEGORY, "-n", namespace, "-o", "name", check=False).stdout.split()
    for name in left:
        cp.kubectl(
            "patch",
            name,
            "-n",
            namespace,
            "--type=merge",
            "-p",
            '{"metadata":{"finalizers":null}}',
            check=False,
        )
    with engine.begin() as conn:
        conn.execute(
            sa.text("DELETE FROM config_object WHERE source_namespace = :ns"), {"ns": namespace}
        )


@pytest.fixture
def operator_factory(
    control_plane: ControlPlane,
    namespace: str,
    crds: list[str],
    restricted_user: str,
    stack_database_url: str,
    stack_redis_url: str,
    stack_secret: str,
    stack_engine: sa.Engine,
    tmp_path: Path,
) -> Iterator[type[OperatorProcess]]:
    """Builds operators for the test namespace (as the restricted user with the Role)."""
    grant_operator_role(control_plane, namespace, restricted_user)
    made: list[OperatorProcess] = []

    def make(*, namespaces: str | None = None, **extra: str) -> OperatorProcess:
        env = operator_env(
            control_plane,
            user=restricted_user,
            database_url=stack_database_url,
            redis_url=stack_redis_url,
            secret_key=stack_secret,
            namespaces=namespace if namespaces is None else namespaces,
            **extra,
        )
        op = OperatorProcess(env=env, log_dir=tmp_path / f"operator-{len(made)}")
        made.append(op)
        return op

    yield make  # type: ignore[misc]
    try:
        cleanup_namespace(control_plane, namespace, stack_engine)
    finally:
        for op in made:
            op.stop()


@pytest.fixture
def operator(operator_factory: type[OperatorProcess]) -> OperatorProcess:
    """A running operator for the test namespace."""
    op = operator_factory()
    op.start()
    return op
