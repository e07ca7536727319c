"""Every rendered manifest is accepted by a real kube-apiserver (server-side dry run), and
the operator's RBAC grants what it calls and nothing it must not do."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from kubetools import ControlPlane

from tests.chart.conftest import CHART, CI_VALUES, template_text

pytestmark = [pytest.mark.k8s, pytest.mark.slow]

VALUE_SETS = [None, *CI_VALUES]
IDS = ["default", *(p.stem for p in CI_VALUES)]


def watched_namespaces(values: Path | None) -> list[str]:
    """Extra namespaces a values file asks the operator to watch (they must exist)."""
    if values is None:
        return []
    data = yaml.safe_load(values.read_text()) or {}
    names: list[str] = data.get("operator", {}).get("watchNamespaces", [])
    return names


@pytest.mark.parametrize("values", VALUE_SETS, ids=IDS)
def test_every_rendered_manifest_passes_server_side_dry_run(
    cluster: ControlPlane, fresh_namespace: str, values: Path | None
) -> None:
    for extra in watched_namespaces(values):
        cluster.kubectl("create", "namespace", extra, check=False)
    rendered = template_text(
        values=[values] if values else [], namespace=fresh_namespace, release="sapi"
    ).stdout
    docs = [d for d in yaml.safe_load_all(rendered) if d]

    # Every object names its namespace (the chart sets metadata.namespace), so no -n here.
    result = cluster.kubectl("apply", "--dry-run=server", "-f", "-", input=rendered, check=False)

    assert result.returncode == 0, result.stderr
    accepted = [line for line in result.stdout.splitlines() if line.endswith("(server dry run)")]
    assert len(accepted) == len(docs), result.stdout


def test_crds_shipped_in_the_chart_are_established(cluster: ControlPlane) -> None:
    shipped = sorted((CHART / "crds").glob("*.yaml"))
    for crd in shipped:
        name = yaml.safe_load(crd.read_text())["metadata"]["name"]
        out = cluster.kubectl("get", "crd", name, "-o", "jsonpath={.status.conditions}").stdout
        assert '"type":"Established"' in out and '"status":"True"' in out


def can_i(cluster: ControlPlane, namespace: str, verb: str, resource: str) -> bool:
    """Ask the real RBAC authorizer on behalf of the operator's ServiceAccount."""
    result = cluster.kubectl(
        "auth", "can-i", verb, resource, "-n", namespace,
        f"--as=system:serviceaccount:{namespace}:sapi-structured-api-operator",
        check=False,
    )  # fmt: skip
    return result.stdout.strip() == "yes"


ALLOWED = [
    ("watch", "aiproviders.structured-api.io"),
    ("watch", "aimodelroutes.structured-api.io"),
    ("patch", "aimodelroutes.structured-api.io/status"),
    ("list", "ratelimitpolicies.structured-api.io"),
    ("patch", "apiversions.structured-api.io"),
    ("patch", "aiproviders.structured-api.io/status"),
    ("get", "secrets"),
    ("watch", "secrets"),
    ("create", "events"),
]
DENIED = [
    ("delete", "aiproviders.structured-api.io"),
    ("create", "secrets"),
    ("update", "secrets"),
    ("delete", "secrets"),
    ("list", "pods"),
    ("get", "configmaps"),
    ("list", "customresourcedefinitions.apiextensions.k8s.io"),
]
#: Leader election: its own Lease only (sapi_operator/election.py).
LEASE = "leases.coordination.k8s.io"
OWN_LEASE = f"{LEASE}/sapi-structured-api-operator"
ALLOWED += [("create", LEASE), ("get", OWN_LEASE), ("update", OWN_LEASE)]
DENIED += [
    ("list", LEASE),
    ("watch", LEASE),
    ("delete", OWN_LEASE),
    ("get", f"{LEASE}/kube-controller-manager"),
    ("update", f"{LEASE}/someone-else"),
]
#: CRD upgrades: patch (server-side apply) of the chart's own CRDs, by name.
CRD = "customresourcedefinitions.apiextensions.k8s.io"
ALLOWED += [("patch", f"{CRD}/ratelimitpolicies.structured-api.io")]
DENIED += [
    ("create", CRD),
    ("delete", f"{CRD}/ratelimitpolicies.structured-api.io"),
    ("patch", f"{CRD}/certificates.cert-manager.io"),
]


def test_operator_rbac_grants_exactly_what_it_calls(
    cluster: ControlPlane, fresh_namespace: str
) -> None:
    rendered = template_text(namespace=fresh_namespace, release="sapi").stdout
    rbac = [
        d
        for d in yaml.safe_load_all(rendered)
        if d
        and d["kind"]
        in ("ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding")
        and d["metadata"]["name"].endswith(("-operator", "-operator-leader-election", "-crds"))
    ]
    assert len(rbac) == 7
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(rbac))

    granted = {(v, r): can_i(cluster, fresh_namespace, v, r) for v, r in ALLOWED + DENIED}

    assert [k for k in ALLOWED if not granted[k]] == []
    assert [k for k in DENIED if granted[k]] == []
    # Namespace scope: nothing in another namespace.
    assert not can_i(cluster, "default", "get", "secrets")


def test_monitoring_crd_fixtures_refuse_a_misspelt_field(
    cluster: ControlPlane, fresh_namespace: str
) -> None:
    rendered = template_text(
        values=[CHART / "ci" / "all-features-values.yaml"], namespace=fresh_namespace
    ).stdout
    monitor = next(d for d in yaml.safe_load_all(rendered) if d and d["kind"] == "ServiceMonitor")
    monitor["spec"]["endpoints"][0]["intervall"] = "30s"

    result = cluster.kubectl(
        "apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump(monitor), check=False
    )

    assert result.returncode != 0
    assert 'unknown field "spec.endpoints[0].intervall"' in result.stderr


def test_install_upgrade_and_uninstall_keep_the_generated_keys(
    cluster: ControlPlane, fresh_namespace: str
) -> None:
    # --no-hooks: a bare apiserver runs no Job controller, so the migration hook would never
    # complete; the release machinery (lookup, resource-policy) is what is tested here.
    ns, secret = fresh_namespace, "sapi-structured-api-app"

    def keys() -> dict[str, str]:
        got = cluster.kubectl("get", "secret", secret, "-n", ns, "-o", "json").stdout
        data: dict[str, str] = json.loads(got)["data"]
        return data

    cluster.helm("install", "sapi", str(CHART), "-n", ns, "--no-hooks")
    installed = keys()
    cluster.helm("upgrade", "sapi", str(CHART), "-n", ns, "--no-hooks", "--set", "logLevel=DEBUG")

    assert keys() == installed  # generated once, looked up on upgrade
    config = cluster.kubectl(
        "get", "configmap", "sapi-structured-api", "-n", ns, "-o", "jsonpath={.data.LOG_LEVEL}"
    )
    assert config.stdout == "DEBUG"
    cluster.helm("uninstall", "sapi", "-n", ns)
    assert keys() == installed  # helm.sh/resource-policy: keep
    gone = cluster.kubectl("get", "deployment", "-n", ns, "-o", "name").stdout
    assert gone.strip() == ""
