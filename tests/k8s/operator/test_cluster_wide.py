"""Cluster-wide mode (empty OPERATOR_NAMESPACES) works with exactly the generated
ClusterRole: no CRD, namespace or peering permissions needed."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from kubetools import ControlPlane

from sapi_operator import rbac
from tests.k8s.operator.stack import Kubectl, manifest

pytestmark = [pytest.mark.k8s, pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture
def cluster_role(control_plane: ControlPlane, restricted_user: str) -> Iterator[None]:
    """The operator ClusterRole bound to the restricted user for this test only."""
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": f"{rbac.NAME}-test"},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": rbac.NAME,
        },
        "subjects": [
            {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": restricted_user}
        ],
    }
    control_plane.kubectl(
        "apply", "-f", "-", input=yaml.safe_dump_all([rbac.cluster_role(), binding])
    )
    yield
    control_plane.kubectl("delete", "clusterrolebinding", f"{rbac.NAME}-test", check=False)


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
