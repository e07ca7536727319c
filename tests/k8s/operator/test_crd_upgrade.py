"""A chart upgrade that changes a CRD takes effect: the operator server-side applies its own
CRDs when it starts leading (`OPERATOR_APPLY_CRDS`, sapi_operator/handlers.py), as the
restricted user with exactly the chart's CRD ClusterRole (patch on three names).

The cluster starts with an *older* RateLimitPolicy CRD (as a first `helm install` of an
earlier chart left it: no `spec.failureMode`), which refuses a resource using the field;
after the operator starts, the apiserver serves this version's schema and accepts it.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from kubetools import ControlPlane

from sapi_operator import crd, rbac
from sapi_operator.resources import RATE_LIMIT_POLICY_RESOURCE
from tests.k8s.operator.stack import ROOT, Kubectl, eventually, manifest

pytestmark = [pytest.mark.k8s, pytest.mark.slow, pytest.mark.timeout(300)]

NAME = f"{RATE_LIMIT_POLICY_RESOURCE.plural}.structured-api.io"
CHART = ROOT / "charts" / "structured-api"


def served_schema(cp: ControlPlane) -> dict[str, Any]:
    """The openAPIV3Schema the apiserver serves for RateLimitPolicy."""
    found = json.loads(cp.kubectl("get", "crd", NAME, "-o", "json").stdout)
    schema: dict[str, Any] = found["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def older_crd() -> dict[str, Any]:
    """This version's RateLimitPolicy CRD without `spec.failureMode` (an older release)."""
    old = copy.deepcopy(crd.crd_manifest(RATE_LIMIT_POLICY_RESOURCE))
    spec = old["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    del spec["properties"]["failureMode"]
    return old


@pytest.fixture
def crd_role(control_plane: ControlPlane, namespace: str, restricted_user: str) -> Iterator[None]:
    """The chart's CRD ClusterRole bound to the operators' user (removed afterwards)."""
    rendered = control_plane.helm(
        "template", "t", str(CHART), "-n", namespace,
        "--show-only", "templates/operator-rbac.yaml",
    ).stdout  # fmt: skip
    role = next(
        d
        for d in yaml.safe_load_all(rendered)
        if d and d["kind"] == "ClusterRole" and d["metadata"]["name"].endswith("-crds")
    )
    assert role["rules"] == rbac.crd_rules(), "chart and sapi_operator.rbac disagree"
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": f"crds-under-test-{namespace}"},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": role["metadata"]["name"],
        },
        "subjects": [
            {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": restricted_user}
        ],
    }
    docs = yaml.safe_dump_all([role, binding])
    control_plane.kubectl("apply", "-f", "-", input=docs)
    yield
    control_plane.kubectl("delete", "-f", "-", "--wait=false", input=docs, check=False)


@pytest.fixture
def older_crd_installed(control_plane: ControlPlane, crds: list[str]) -> Iterator[None]:
    """The older CRD in place of the session's; this version's CRDs restored afterwards."""
    control_plane.kubectl("apply", "-f", "-", input=yaml.safe_dump(older_crd()))
    eventually(
        lambda: (
            "failureMode" not in served_schema(control_plane)["properties"]["spec"]["properties"]
        ),
        timeout=30,
        what="the older schema served",
    )
    yield
    control_plane.kubectl(
        "apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "operator" / "crds")
    )


def test_the_operator_upgrades_a_changed_crd_when_it_starts(
    control_plane: ControlPlane,
    kube: Kubectl,
    crd_role: None,
    older_crd_installed: None,
    operator_factory: Any,
) -> None:
    body = manifest(
        "RateLimitPolicy",
        "closed-without-redis",
        {
            "failureMode": "Closed",
            "rules": [{"name": "r", "key": "ip", "limits": [{"requests": 5, "window": "1m"}]}],
        },
    )
    dry_run = ("apply", "--dry-run=server", "-n", kube.namespace, "-f", "-")
    refused = control_plane.kubectl(*dry_run, input=body, check=False)
    assert refused.returncode != 0 and "failureMode" in refused.stderr, refused

    operator = operator_factory(OPERATOR_APPLY_CRDS="true")
    operator.start()
    eventually(
        lambda: (
            served_schema(control_plane)
            == crd.crd_manifest(RATE_LIMIT_POLICY_RESOURCE)["spec"]["versions"][0]["schema"][
                "openAPIV3Schema"
            ]
        ),
        timeout=30,
        what="this version's schema served",
    )
    # The resource the older schema refused is accepted and reconciled.
    kube.apply(body)
    kube.wait_condition("rlp", "closed-without-redis", "Ready", "True", timeout=30)
    shown = control_plane.kubectl("get", "crd", NAME, "-o", "json", "--show-managed-fields")
    found = json.loads(shown.stdout)
    managers = {m["manager"] for m in found["metadata"].get("managedFields", [])}
    assert "structured-api-operator" in managers, managers
    assert "not applied" not in operator.output()
