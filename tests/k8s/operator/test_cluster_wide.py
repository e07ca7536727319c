"""Cluster-wide mode (empty OPERATOR_NAMESPACES) works with exactly the chart's
ClusterRole: no CRD, namespace or peering permissions needed."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from kubetools import ControlPlane

from sapi_operator import rbac
from tests.k8s.operator.stack import Kubectl, chart_operator_role, manifest

pytestmark = [pytest.mark.k8s, pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture
def cluster_role(
    control_plane: ControlPlane, namespace: str, restricted_user: str
) -> Iterator[None]:
    """The chart's operator ClusterRole bound to the restricted user for this test only."""
    role = chart_operator_role(control_plane, namespace, cluster=True)
    assert role["rules"] == rbac.rules()
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "operator-under-test"},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": role["metadata"]["name"],
        },
        "subjects": [
            {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": restricted_user}
        ],
    }
    control_plane.kubectl("apply", "-f", "-", input=yaml.safe_dump_all([role, binding]))
    yield
    control_plane.kubectl("delete", "clusterrolebinding", "operator-under-test", check=False)
    control_plane.kubectl("delete", "clusterrole", role["metadata"]["name"], check=False)


def test_cluster_wide_operator_reconciles_any_namespace(
    cluster_role: None, kube: Kubectl, operator_factory: Any
) -> None:
    operator = operator_factory(namespaces="")
    operator.start()
    name = f"cw-{kube.namespace[-6:]}"
    kube.apply(
        manifest(
            "RateLimitPolicy",
            name,
            {"rules": [{"name": "r", "limits": [{"requests": 5, "window": "1m"}]}]},
        )
    )
    kube.wait_condition("rlp", name, "Ready", "True")
    kube.wait_condition("rlp", name, "Enforced", "True", reason="Enforcing")
    assert "cluster-wide" in operator.output()
    assert "403" not in operator.output() and "Forbidden" not in operator.output()
