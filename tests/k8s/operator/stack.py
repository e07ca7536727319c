"""The real stack around the operator in e2e tests: a database of its own, the API served
from a thread, and `python -m sapi_operator` as a child process acting as a given user.
"""

from __future__ import annotations

import json
import secrets
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import yaml
from alembic import command
from alembic.config import Config
from kubetools import ControlPlane

from tests.support.processes import ManagedProcess, ProcessError, child_env, free_port, wait_for

ROOT = Path(__file__).resolve().parents[3]
GROUP_VERSION = "structured-api.io/v1alpha1"
#: Name suffix of the chart's leader-election Role.
ELECTION = "-leader-election"


def create_database(database_url: str) -> str:
    """A fresh database on the same server, migrated to head; returns its URL."""
    url = sa.make_url(database_url)
    name = f"operator_e2e_{secrets.token_hex(4)}"
    admin = sa.create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    target = url.set(database=name).render_as_string(hide_password=False)
    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.attributes["database_url"] = target
    cfg.attributes["configure_logger"] = False
    command.upgrade(cfg, "head")
    return target


def drop_database(database_url: str) -> None:
    """Drop a database made by `create_database` (connections forced closed, PG >= 13)."""
    url = sa.make_url(database_url)
    admin = sa.create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)'))
    admin.dispose()


def eventually(
    check: Callable[[], Any], *, timeout: float, interval: float = 0.02, what: str
) -> float:
    """Seconds until `check()` is truthy; AssertionError after `timeout`."""
    began = time.monotonic()
    while True:
        if check():
            return time.monotonic() - began
        if time.monotonic() - began > timeout:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(interval)


def manifest(kind: str, name: str, spec: Mapping[str, Any], **metadata: Any) -> str:
    """YAML of one custom resource."""
    body = {
        "apiVersion": GROUP_VERSION,
        "kind": kind,
        "metadata": {"name": name, **metadata},
        "spec": dict(spec),
    }
    return yaml.safe_dump(body, sort_keys=False)


@dataclass
class Kubectl:
    """kubectl in one namespace, as the admin (the platform team applying resources)."""

    cp: ControlPlane
    namespace: str

    def apply(self, text: str) -> None:
        """`kubectl apply -f -`."""
        self.cp.kubectl("apply", "-n", self.namespace, "-f", "-", input=text)

    def delete(self, kind: str, name: str, *, wait: bool = True) -> None:
        """Delete one object (waits for finalizers unless wait=False)."""
        self.cp.kubectl(
            "delete",
            kind,
            name,
            "-n",
            self.namespace,
            f"--wait={str(wait).lower()}",
            "--timeout=30s",
        )

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        """The object as JSON, or None."""
        result = self.cp.kubectl("get", kind, name, "-n", self.namespace, "-o", "json", check=False)
        if result.returncode != 0:
            return None
        found: dict[str, Any] = json.loads(result.stdout)
        return found

    def condition(self, kind: str, name: str, type_: str) -> dict[str, Any] | None:
        """One status condition of an object."""
        body = self.get(kind, name) or {}
        for cond in (body.get("status") or {}).get("conditions", []):
            if cond.get("type") == type_:
                return dict(cond)
        return None

    def wait_condition(
        self,
        kind: str,
        name: str,
        type_: str,
        status: str,
        *,
        timeout: float = 20.0,
        reason: str | None = None,
    ) -> dict[str, Any]:
        """Wait until the condition has `status` (and `reason`) for the current generation."""
        seen: dict[str, Any] = {}

        def check() -> bool:
            body = self.get(kind, name) or {}
            gen = (body.get("metadata") or {}).get("generation")
            for cond in (body.get("status") or {}).get("conditions", []):
                if cond.get("type") == type_:
                    seen.update(cond)
                    return (
                        cond.get("status") == status
                        and cond.get("observedGeneration") == gen
                        and (reason is None or cond.get("reason") == reason)
                    )
            return False

        try:
            eventually(check, timeout=timeout, interval=0.1, what=f"{kind}/{name} {type_}")
        except AssertionError:
            raise AssertionError(
                f"{kind}/{name}: {type_} never {status}/{reason}; last {seen}"
            ) from None
        return seen


@dataclass
class OperatorProcess:
    """`python -m sapi_operator` as a child process, with its probe and metrics ports."""

    env: dict[str, str]
    log_dir: Path
    liveness_port: int = field(default_factory=free_port)
    metrics_port: int = field(default_factory=free_port)
    process: ManagedProcess | None = None
    starts: int = 0

    def start(self, *, timeout: float = 120.0) -> float:
        """Start and wait for the liveness endpoint; returns seconds to ready."""
        self.starts += 1
        env = {
            **self.env,
            "OPERATOR_LIVENESS_PORT": str(self.liveness_port),
            "METRICS_PORT": str(self.metrics_port),
            "METRICS_ADDRESS": "127.0.0.1",
        }
        self.process = ManagedProcess(
            name="operator",
            args=[sys.executable, "-m", "sapi_operator"],
            env=env,
            log_path=self.log_dir / f"operator-{self.starts}.log",
            cwd=ROOT,
            stop_timeout=20.0,
        ).start()
        return wait_for(self._live, timeout=timeout, interval=0.1, what="operator liveness")

    def _live(self) -> bool:
        assert self.process is not None
        self.process.check_alive()
        try:
            with urllib.request.urlopen(self.liveness_url, timeout=1) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    @property
    def liveness_url(self) -> str:
        """Kopf's health endpoint."""
        return f"http://127.0.0.1:{self.liveness_port}/healthz"

    def metrics(self) -> str:
        """The operator's Prometheus text."""
        with urllib.request.urlopen(
            f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=2
        ) as r:
            return str(r.read().decode())

    def output(self) -> str:
        """Everything every run of the process logged."""
        return "\n".join(
            p.read_text(errors="replace") for p in sorted(self.log_dir.glob("operator-*.log"))
        )

    def kill(self) -> None:
        """SIGKILL: no cleanup, no finalizer work, like an OOM kill."""
        assert self.process is not None and self.process.proc is not None
        self.process.proc.kill()
        self.process.proc.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM and wait (raises if it does not exit cleanly)."""
        if self.process is not None and self.process.running:
            self.process.stop()


def chart_operator_role(
    cp: ControlPlane, namespace: str, *, cluster: bool = False
) -> dict[str, Any]:
    """The operator Role (or ClusterRole) exactly as the Helm chart renders it."""
    args = [
        "template",
        "t",
        str(ROOT / "charts" / "structured-api"),
        "-n",
        namespace,
        "--show-only",
        "templates/operator-rbac.yaml",
    ]
    if cluster:
        args += ["--set", "operator.scope=cluster"]
    kind = "ClusterRole" if cluster else "Role"
    docs = [d for d in yaml.safe_load_all(cp.helm(*args).stdout) if d]
    role: dict[str, Any] = next(
        d for d in docs if d["kind"] == kind and not d["metadata"]["name"].endswith(ELECTION)
    )
    return role


def chart_election_role(cp: ControlPlane, namespace: str) -> dict[str, Any]:
    """The leader-election Role exactly as the Helm chart renders it (release `namespace`)."""
    rendered = cp.helm(
        "template",
        "t",
        str(ROOT / "charts" / "structured-api"),
        "-n",
        namespace,
        "--show-only",
        "templates/operator-rbac.yaml",
    ).stdout
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    role: dict[str, Any] = next(
        d for d in docs if d["kind"] == "Role" and d["metadata"]["name"].endswith(ELECTION)
    )
    return role


def operator_env(
    cp: ControlPlane,
    *,
    user: str,
    database_url: str,
    redis_url: str,
    secret_key: str,
    namespaces: str,
    **extra: str,
) -> dict[str, str]:
    """Environment of an operator process acting as `user`."""
    return child_env(
        APP_ENV="test",
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        SECRET_KEY=secret_key,
        KUBECONFIG=str(cp.env(user)["KUBECONFIG"]),
        OPERATOR_NAMESPACES=namespaces,
        OPERATOR_DRIFT_INTERVAL="2",
        PYTHONPATH=f"{ROOT / 'operator'}:{ROOT}",
        LOG_LEVEL="INFO",
        **extra,
    )


__all__ = ["OperatorProcess", "ProcessError"]
