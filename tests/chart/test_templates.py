"""Template unit tests: the switches that matter render (and only render) what they say."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.conftest import CHART, containers, env_of, find, one, render, template_text

ROOT = CHART.parents[1]
ALL = CHART / "ci" / "all-features-values.yaml"
EXISTING = CHART / "ci" / "existing-secrets-values.yaml"
MINIMAL = CHART / "ci" / "minimal-values.yaml"
MONITORING_KINDS = ("ServiceMonitor", "PodMonitor", "PrometheusRule")
METRICS_SERVICE = "-api-metrics"
#: networkPolicy.metricsFrom / apiFrom of ci/all-features-values.yaml.
MONITORING = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
INGRESS_CONTROLLER = [
    {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}
]


def api_service(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """The api Service (the one the Ingress routes to), not the headless metrics Service."""
    (found,) = [s for s in find(docs, "Service") if s not in find(docs, "Service", METRICS_SERVICE)]
    return found


def port_names(ports: list[dict[str, Any]]) -> list[str]:
    """Names of a container's or a Service's ports."""
    return [p["name"] for p in ports]


# --- ingress ----------------------------------------------------------------------------


def test_ingress_is_off_by_default() -> None:
    assert find(render(), "Ingress") == []


def test_ingress_routes_hosts_to_the_api_service_with_tls() -> None:
    docs = render(values=[ALL])
    ingress = one(docs, "Ingress")
    service = api_service(docs)

    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert ingress["spec"]["tls"] == [
        {"secretName": "api-example-com-tls", "hosts": ["api.example.com"]}
    ]
    rule = ingress["spec"]["rules"][0]
    assert rule["host"] == "api.example.com"
    backend = rule["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": service["metadata"]["name"], "port": {"name": "http"}}


def trusted_proxies(*, values: Sequence[Path] = (), set_values: Sequence[str] = ()) -> str:
    """TRUSTED_PROXIES as the chart renders it into the shared ConfigMap."""
    docs = render(values=values, set_values=set_values)
    data = [c.get("data", {}) for c in find(docs, "ConfigMap")]
    (value,) = [d["TRUSTED_PROXIES"] for d in data if "TRUSTED_PROXIES" in d]
    return str(value)


def test_no_forwarded_hop_is_trusted_without_the_charts_ingress() -> None:
    # A client reaching the Service directly must not choose its IP with X-Forwarded-For.
    assert trusted_proxies() == "0"
    assert trusted_proxies(values=[MINIMAL]) == "0"
    assert trusted_proxies(set_values=["trustedProxies=null"]) == "0"


def test_the_charts_ingress_is_the_one_trusted_hop() -> None:
    assert trusted_proxies(set_values=["ingress.enabled=true"]) == "1"
    assert trusted_proxies(values=[ALL]) == "1"
    assert trusted_proxies(set_values=["ingress.enabled=true", "trustedProxies=auto"]) == "1"


@pytest.mark.parametrize(
    ("set_values", "expected"),
    [
        (["trustedProxies=2"], "2"),
        (["ingress.enabled=true", "trustedProxies=2"], "2"),
        (["ingress.enabled=true", "trustedProxies=0"], "0"),
    ],
)
def test_an_explicit_trusted_proxies_value_wins(set_values: list[str], expected: str) -> None:
    assert trusted_proxies(set_values=set_values) == expected


@pytest.mark.parametrize("value", ["6", "-1", "many"])
def test_schema_refuses_trusted_proxies_outside_auto_null_or_0_to_5(value: str) -> None:
    result = template_text(set_values=[f"trustedProxies={value}"], check=False)

    assert result.returncode != 0
    assert "/trustedProxies" in result.stderr


# --- monitoring ---------------------------------------------------------------------------


def test_monitoring_objects_are_off_by_default() -> None:
    docs = render()
    assert [d["kind"] for d in docs if d["kind"] in MONITORING_KINDS] == []
    assert find(docs, "ConfigMap", "-dashboard") == []


def test_monitoring_objects_carry_the_selector_labels_of_kube_prometheus_stack() -> None:
    docs = render(values=[ALL])
    for kind in MONITORING_KINDS:
        assert one(docs, kind)["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    pod_monitor = one(docs, "PodMonitor")
    assert pod_monitor["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"


def test_service_monitor_scrapes_the_api_metrics_port_through_the_headless_service() -> None:
    docs = render(values=[ALL])
    monitor = one(docs, "ServiceMonitor")
    selector = monitor["spec"]["selector"]["matchLabels"]
    (endpoint,) = monitor["spec"]["endpoints"]
    selected = [
        s for s in find(docs, "Service") if selector.items() <= s["metadata"]["labels"].items()
    ]

    assert {"port": "metrics", "path": "/metrics"}.items() <= endpoint.items()
    # Of the Services it selects, only the headless metrics Service has a `metrics` port,
    # so Prometheus Operator makes targets of that one only.
    assert [
        s["metadata"]["name"] for s in selected if "metrics" in port_names(s["spec"]["ports"])
    ] == [one(docs, "Service", METRICS_SERVICE)["metadata"]["name"]]
    assert one(docs, "Service", METRICS_SERVICE)["spec"]["clusterIP"] == "None"


@pytest.mark.parametrize("values", [[], [ALL]], ids=["default", "all-features"])
def test_api_metrics_port_is_on_the_pods_but_not_on_the_api_service_or_the_ingress(
    values: list[Path],
) -> None:
    docs = render(values=values)
    api = containers(one(docs, "Deployment", "-api"))[0]
    metrics_service = one(docs, "Service", METRICS_SERVICE)

    assert port_names(api["ports"]) == ["http", "metrics"]
    assert api["ports"][1]["containerPort"] == 9808
    assert port_names(api_service(docs)["spec"]["ports"]) == ["http"]
    assert metrics_service["spec"]["ports"] == [
        {"name": "metrics", "port": 9808, "targetPort": "metrics", "protocol": "TCP"}
    ]
    assert metrics_service["spec"]["selector"] == api_service(docs)["spec"]["selector"]
    backends = [
        path["backend"]["service"]
        for ingress in find(docs, "Ingress")
        for rule in ingress["spec"]["rules"]
        for path in rule["http"]["paths"]
    ]
    assert all(
        b == {"name": api_service(docs)["metadata"]["name"], "port": {"name": "http"}}
        for b in backends
    )


@pytest.mark.parametrize(("on_api_port", "expected"), [(None, "false"), ("true", "true")])
def test_metrics_on_the_api_port_is_off_unless_asked(
    on_api_port: str | None, expected: str
) -> None:
    set_values = [f"metrics.onApiPort={on_api_port}"] if on_api_port else []

    config = one(render(set_values=set_values), "ConfigMap")["data"]

    assert config["METRICS_ON_API_PORT"] == expected


def test_metrics_disabled_opens_no_metrics_port_on_the_api() -> None:
    docs = render(set_values=["metrics.enabled=false"])

    assert port_names(containers(one(docs, "Deployment", "-api"))[0]["ports"]) == ["http"]
    assert find(docs, "Service", METRICS_SERVICE) == []


def test_metrics_port_equal_to_the_api_port_fails_the_render() -> None:
    result = template_text(set_values=["metrics.port=8000"], check=False)

    assert result.returncode != 0
    assert "metrics.port (8000) must differ from api.port" in result.stderr


@pytest.mark.parametrize("switch", ["serviceMonitor", "podMonitor", "prometheusRule"])
def test_each_monitoring_object_has_its_own_switch(switch: str) -> None:
    kind = switch[0].upper() + switch[1:]
    docs = render(set_values=[f"monitoring.{switch}.enabled=true"])
    assert [d["kind"] for d in docs if d["kind"] in MONITORING_KINDS] == [kind]


def test_dashboard_configmap_holds_the_dashboard_json() -> None:
    docs = render(set_values=["monitoring.grafanaDashboard.enabled=true"])
    dashboard = one(docs, "ConfigMap", "-dashboard")

    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert dashboard["data"]["structured-api.json"] == (
        (CHART / "dashboards" / "structured-api.json").read_text().rstrip("\n")
    )


def test_alert_descriptions_keep_prometheus_templates_unrendered() -> None:
    rule = one(render(values=[ALL]), "PrometheusRule")
    annotations = [r["annotations"] for g in rule["spec"]["groups"] for r in g["rules"]]

    assert all("{{ $labels.namespace }}" in a["description"] for a in annotations)
    assert all(a["runbook_url"].startswith("https://") for a in annotations)


# --- autoscaling --------------------------------------------------------------------------


def test_hpa_off_keeps_fixed_replicas() -> None:
    docs = render()
    assert find(docs, "HorizontalPodAutoscaler") == []
    assert one(docs, "Deployment", "-api")["spec"]["replicas"] == 2


def test_hpa_on_targets_the_api_and_drops_fixed_replicas() -> None:
    docs = render(values=[ALL])
    hpa = one(docs, "HorizontalPodAutoscaler")
    api = one(docs, "Deployment", "-api")

    assert "replicas" not in api["spec"]
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": api["metadata"]["name"],
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 12)


# --- secrets ------------------------------------------------------------------------------


def secret_refs(doc: dict) -> dict[str, tuple[str, str]]:
    """env name -> (Secret name, key) of a workload's first container."""
    return {
        name: (ref["secretKeyRef"]["name"], ref["secretKeyRef"]["key"])
        for name, ref in env_of(containers(doc)[0]).items()
        if isinstance(ref, dict) and "secretKeyRef" in ref
    }


def test_default_install_generates_keys_and_keeps_them_on_uninstall() -> None:
    docs = render()
    app_secret = one(docs, "Secret", "-app")
    assert app_secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert set(app_secret["data"]) == {"SECRET_KEY", "JWT_SIGNING_KEY"}
    refs = secret_refs(one(docs, "Deployment", "-api"))
    assert refs["SECRET_KEY"] == (app_secret["metadata"]["name"], "SECRET_KEY")


def test_generated_signing_key_is_an_ed25519_pem_private_key() -> None:
    import base64

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    data = one(render(), "Secret", "-app")["data"]
    key = load_pem_private_key(base64.b64decode(data["JWT_SIGNING_KEY"]), password=None)
    assert isinstance(key, Ed25519PrivateKey)
    assert len(base64.b64decode(data["SECRET_KEY"])) >= 32


def test_existing_secrets_are_referenced_and_none_is_created() -> None:
    docs = render(values=[EXISTING])

    assert find(docs, "Secret") == []
    for suffix in ("-api", "-worker", "-beat", "-operator"):
        refs = secret_refs(one(docs, "Deployment", suffix))
        assert refs["DATABASE_URL"] == ("structured-api-db", "uri")
        assert refs["REDIS_URL"] == ("structured-api-redis", "url")
        assert refs["SECRET_KEY"] == ("structured-api-keys", "SECRET_KEY")
        assert refs["JWT_SIGNING_KEY"] == ("structured-api-keys", "JWT_SIGNING_KEY")
    job = one(docs, "Job")
    assert secret_refs(job) == {"DATABASE_URL": ("structured-api-db", "uri")}


def test_no_secret_value_is_ever_a_plain_env_value() -> None:
    for values in ([], [ALL], [EXISTING]):
        for doc in render(values=values):
            if doc["kind"] in ("Deployment", "Job"):
                for container in containers(doc):
                    for name, value in env_of(container).items():
                        if (
                            re.search(r"KEY|URL$|PASSWORD|TOKEN", name)
                            and name != "OTEL_EXPORTER_OTLP_ENDPOINT"
                        ):
                            assert isinstance(value, dict), (doc["metadata"]["name"], name)


def test_url_secrets_and_migration_job_run_before_the_release_in_order() -> None:
    docs = render()
    job = one(docs, "Job")
    hooks = {
        d["metadata"]["name"]: d["metadata"]["annotations"]
        for d in docs
        if "helm.sh/hook" in d["metadata"].get("annotations", {})
    }

    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert containers(job)[0]["command"] == ["alembic", "upgrade", "head"]
    weights = {name: int(a["helm.sh/hook-weight"]) for name, a in hooks.items()}
    for name, weight in weights.items():
        if name != job["metadata"]["name"]:
            assert weight < weights[job["metadata"]["name"]], name
    assert job["spec"]["template"]["spec"]["serviceAccountName"] in weights


def test_every_hook_resource_is_deleted_once_the_hooks_succeeded() -> None:
    # helm uninstall never deletes hook resources (Helm docs, "Chart Hooks"): a hook without
    # hook-succeeded stays in the namespace for good (found on the real cluster, tests/cluster).
    for values in ([], [ALL], [EXISTING]):
        for doc in render(values=values):
            annotations = doc["metadata"].get("annotations") or {}
            if "helm.sh/hook" in annotations:
                policies = annotations["helm.sh/hook-delete-policy"].split(",")
                assert "hook-succeeded" in policies, doc["metadata"]["name"]
                assert "before-hook-creation" in policies, doc["metadata"]["name"]


def test_workloads_read_the_urls_from_a_release_secret_and_migrations_from_a_hook_one() -> None:
    docs = render()
    urls = one(docs, "Secret", "-urls")
    assert "helm.sh/hook" not in (urls["metadata"].get("annotations") or {})
    assert set(urls["stringData"]) == {"DATABASE_URL", "REDIS_URL"}
    for suffix in ("-api", "-worker", "-beat", "-operator"):
        refs = secret_refs(one(docs, "Deployment", suffix))
        assert refs["DATABASE_URL"] == (urls["metadata"]["name"], "DATABASE_URL")
        assert refs["REDIS_URL"] == (urls["metadata"]["name"], "REDIS_URL")
    hook = one(docs, "Secret", "-migrations")
    assert hook["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert set(hook["stringData"]) == {"DATABASE_URL"}
    assert secret_refs(one(docs, "Job")) == {
        "DATABASE_URL": (hook["metadata"]["name"], "DATABASE_URL")
    }
    protected = env_of(containers(one(docs, "Deployment", "-operator"))[0])
    assert {"sapi/" + urls["metadata"]["name"], "sapi/" + hook["metadata"]["name"]} <= set(
        protected["OPERATOR_PROTECTED_SECRETS"].split(",")
    )


def test_one_existing_secret_leaves_the_other_url_in_the_release_secret() -> None:
    docs = render(set_values=["database.existingSecret=db", "database.existingSecretKey=uri"])
    urls = one(docs, "Secret", "-urls")
    assert set(urls["stringData"]) == {"REDIS_URL"}
    assert find(docs, "Secret", "-migrations") == []
    refs = secret_refs(one(docs, "Deployment", "-api"))
    assert refs["DATABASE_URL"] == ("db", "uri")
    assert refs["REDIS_URL"] == (urls["metadata"]["name"], "REDIS_URL")


def test_pods_roll_when_a_url_changes() -> None:
    def checksums(url: str) -> set[str]:
        docs = render(set_values=[f"redis.url={url}"])
        return {
            one(docs, "Deployment", suffix)["spec"]["template"]["metadata"]["annotations"][
                "checksum/urls"
            ]
            for suffix in ("-api", "-worker", "-beat", "-operator")
        }

    before, after = checksums("redis://redis:6379/0"), checksums("redis://redis-2:6379/0")
    assert len(before) == 1 and len(after) == 1 and before != after


def test_devcluster_values_route_the_traefik_ingress_to_two_api_pods() -> None:
    docs = render(values=[CHART / "ci" / "devcluster-values.yaml"])
    ingress = one(docs, "Ingress")
    assert ingress["spec"]["ingressClassName"] == "traefik"
    assert [r["host"] for r in ingress["spec"]["rules"]] == ["structured-api.localhost"]
    assert one(docs, "Deployment", "-api")["spec"]["replicas"] == 2
    assert one(docs, "PodDisruptionBudget", "-api")["spec"]["minAvailable"] == 1
    # One ingress hop: X-Forwarded-For from Traefik is trusted, nothing beyond it.
    assert one(docs, "ConfigMap")["data"]["TRUSTED_PROXIES"] == "1"


# --- operator RBAC --------------------------------------------------------------------------


def test_namespaced_operator_gets_a_role_per_watched_namespace_only() -> None:
    docs = render(values=[EXISTING])

    assert find(docs, "ClusterRole", "-operator") == []
    assert find(docs, "ClusterRoleBinding", "-operator") == []
    roles = find(docs, "Role", "-operator")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    operator = containers(one(docs, "Deployment", "-operator"))[0]
    assert operator["command"] == ["python", "-m", "sapi_operator"]
    assert env_of(operator)["OPERATOR_NAMESPACES"] == "team-a,team-b"


def test_default_operator_watches_only_the_release_namespace() -> None:
    docs = render(namespace="apps")
    assert [r["metadata"]["namespace"] for r in find(docs, "Role", "-operator")] == ["apps"]
    operator = containers(one(docs, "Deployment", "-operator"))[0]
    assert env_of(operator)["OPERATOR_NAMESPACES"] == "apps"


def test_cluster_operator_gets_a_cluster_role_and_no_roles() -> None:
    docs = render(values=[ALL])

    assert find(docs, "Role", "-operator") == []  # only the leader-election Role
    binding = one(docs, "ClusterRoleBinding", "-operator")
    assert binding["subjects"][0]["name"].endswith("-operator")
    # An empty OPERATOR_NAMESPACES makes the operator cluster-wide (app/settings/).
    assert env_of(containers(one(docs, "Deployment", "-operator"))[0])["OPERATOR_NAMESPACES"] == ""


def test_operator_rules_are_least_privilege() -> None:
    rules = one(render(), "Role", "-operator")["rules"]
    verbs = {(tuple(r["apiGroups"]), tuple(r["resources"])): set(r["verbs"]) for r in rules}

    assert all(not ({"*"} & v) for v in verbs.values())
    assert verbs[(("",), ("secrets",))] == {"get", "list", "watch"}
    assert verbs[(("", "events.k8s.io"), ("events",))] == {"create"}
    status = [k for k in verbs if any(r.endswith("/status") for r in k[1])]
    assert verbs[status[0]] == {"get", "patch"}
    assert not any("customresourcedefinitions" in k[1] or "namespaces" in k[1] for k in verbs)


# --- pods: security, probes, shutdown -------------------------------------------------------


def workloads(values: list[Path]) -> list[dict]:
    """Deployments and Jobs rendered from `values`."""
    return [d for d in render(values=values) if d["kind"] in ("Deployment", "Job")]


@pytest.mark.parametrize(
    "values", [[], [ALL], [EXISTING], [MINIMAL]], ids=["default", "all", "existing", "minimal"]
)
def test_every_pod_runs_non_root_read_only_without_capabilities(values: list[Path]) -> None:
    for doc in workloads(values):
        pod = doc["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for container in pod["containers"]:
            sc = container["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"]["drop"] == ["ALL"]
            assert container["resources"]["limits"]["memory"]
        # Only the operator talks to the Kubernetes API.
        expects_token = doc["metadata"]["name"].endswith("-operator")
        assert pod["automountServiceAccountToken"] is expects_token


def test_api_probes_follow_the_design() -> None:
    api = containers(one(render(), "Deployment", "-api"))[0]

    assert api["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert api["startupProbe"]["httpGet"]["path"] == "/livez"


def test_shutdown_budget_matches_gunicorn_conf() -> None:
    api_doc = one(render(), "Deployment", "-api")
    api = containers(api_doc)[0]
    env = env_of(api)
    graceful = int(env["GUNICORN_GRACEFUL_TIMEOUT"])
    pre_stop = api["lifecycle"]["preStop"]["sleep"]["seconds"]

    gunicorn_conf = (ROOT / "app" / "gunicorn_conf.py").read_text()
    assert f'"GUNICORN_GRACEFUL_TIMEOUT", "{graceful}"' in gunicorn_conf
    assert (
        api_doc["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > pre_stop + graceful
    )
    assert api["command"][:3] == ["gunicorn", "-c", "python:app.gunicorn_conf"]


def test_inconsistent_shutdown_timings_fail_the_render() -> None:
    result = template_text(
        set_values=["api.terminationGracePeriodSeconds=20", "api.gunicorn.gracefulTimeout=20"],
        check=False,
    )

    assert result.returncode != 0
    assert "must exceed api.preStopSleepSeconds + api.gunicorn.gracefulTimeout" in result.stderr


def test_config_changes_roll_the_pods() -> None:
    def checksum(*set_values: str) -> str:
        doc = one(render(set_values=list(set_values)), "Deployment", "-api")
        return doc["spec"]["template"]["metadata"]["annotations"]["checksum/config"]

    assert checksum() == checksum()
    assert checksum() != checksum("logLevel=DEBUG")


def test_selectors_use_only_name_instance_and_component() -> None:
    for doc in render(values=[ALL]):
        selector = doc.get("spec", {}).get("selector", {})
        labels = selector.get("matchLabels", {}) if isinstance(selector, dict) else {}
        assert set(labels) <= {
            "app.kubernetes.io/name",
            "app.kubernetes.io/instance",
            "app.kubernetes.io/component",
        }, doc["metadata"]["name"]


def test_beat_never_runs_twice() -> None:
    spec = one(render(), "Deployment", "-beat")["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}


# --- operator replicas and leader election -------------------------------------------------


def test_operator_runs_two_replicas_that_elect_a_leader_on_a_lease() -> None:
    docs = render(namespace="apps")
    deployment = one(docs, "Deployment", "-operator")
    spec, pod = deployment["spec"], deployment["spec"]["template"]["spec"]
    env = {e["name"]: e for e in containers(deployment)[0]["env"]}
    name = deployment["metadata"]["name"]

    assert spec["replicas"] == 2
    # A new pod comes up as a standby before the old leader goes (and releases the Lease).
    assert spec["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    assert env["OPERATOR_LEADER_ELECTION"]["value"] == "true"
    assert env["OPERATOR_LEASE_NAME"]["value"] == name
    assert env["OPERATOR_LEASE_NAMESPACE"]["valueFrom"] == {
        "fieldRef": {"fieldPath": "metadata.namespace"}
    }
    assert env["OPERATOR_IDENTITY"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert [env[f"OPERATOR_LEASE_{k}"]["value"] for k in ("DURATION", "RENEW_DEADLINE")] == [
        "8",
        "6",
    ]
    # Spread over nodes unless the user chose an affinity.
    (term,) = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert (
        term["podAffinityTerm"]["labelSelector"]["matchLabels"] == spec["selector"]["matchLabels"]
    )
    pdb = one(docs, "PodDisruptionBudget", "-operator")["spec"]
    assert pdb == {"minAvailable": 1, "selector": spec["selector"]}


def test_leader_election_rbac_is_one_named_lease_in_the_release_namespace() -> None:
    from sapi_operator.rbac import election_rules

    docs = render(values=[EXISTING], namespace="apps")
    election = one(docs, "Role", "-leader-election")
    binding = one(docs, "RoleBinding", "-leader-election")
    lease = env_of(containers(one(docs, "Deployment", "-operator"))[0])["OPERATOR_LEASE_NAME"]

    assert election["metadata"]["namespace"] == "apps"
    assert election["rules"] == election_rules(lease)
    assert binding["metadata"]["namespace"] == "apps"
    assert binding["roleRef"]["name"] == election["metadata"]["name"]
    assert binding["subjects"][0]["name"].endswith("-operator")
    # The watched namespaces get the operator Role only, never Lease access.
    for role in find(docs, "Role"):
        if role is not election:
            assert all("coordination.k8s.io" not in r["apiGroups"] for r in role["rules"])


def test_operator_may_patch_its_own_three_crds_and_nothing_else() -> None:
    from sapi_operator.rbac import crd_rules

    docs = render(values=[EXISTING], namespace="apps")
    role = one(docs, "ClusterRole", "-crds")
    binding = one(docs, "ClusterRoleBinding", "-crds")
    crds = sorted(d["metadata"]["name"] for d in find(render_crds(), "CustomResourceDefinition"))

    assert role["rules"] == crd_rules()
    assert sorted(role["rules"][0]["resourceNames"]) == crds
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": binding["subjects"][0]["name"], "namespace": "apps"}
    ]
    operator = env_of(containers(one(docs, "Deployment", "-operator"))[0])
    assert operator["OPERATOR_APPLY_CRDS"] == "true"

    off = render(set_values=["operator.applyCRDs=false"])
    assert find(off, "ClusterRole", "-crds") == []
    assert env_of(containers(one(off, "Deployment", "-operator"))[0])["OPERATOR_APPLY_CRDS"] == (
        "false"
    )


def render_crds() -> list[dict[str, Any]]:
    """The chart's CRDs (crds/), as Helm installs them."""
    text = template_text(include_crds=True).stdout
    return [d for d in yaml.safe_load_all(text) if d]


def test_one_operator_without_election_never_runs_twice() -> None:
    docs = render(set_values=["operator.replicas=1", "operator.leaderElection.enabled=false"])
    deployment = one(docs, "Deployment", "-operator")
    env = env_of(containers(deployment)[0])

    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert env["OPERATOR_LEADER_ELECTION"] == "false"
    assert "OPERATOR_LEASE_NAME" not in env
    assert find(docs, "Role", "-leader-election") == []
    assert find(docs, "PodDisruptionBudget", "-operator") == []
    assert "affinity" not in deployment["spec"]["template"]["spec"]


def test_several_operators_without_election_fail_the_render() -> None:
    result = template_text(
        set_values=["operator.replicas=3", "operator.leaderElection.enabled=false"], check=False
    )

    assert result.returncode != 0
    assert "operator.replicas > 1 needs operator.leaderElection.enabled" in result.stderr


def test_a_chosen_operator_affinity_replaces_the_spreading_default() -> None:
    affinity = "operator.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
    docs = render(
        set_values=[
            f"{affinity}.nodeSelectorTerms[0].matchExpressions[0].key=pool",
            f"{affinity}.nodeSelectorTerms[0].matchExpressions[0].operator=Exists",
        ]
    )
    pod = one(docs, "Deployment", "-operator")["spec"]["template"]["spec"]

    assert list(pod["affinity"]) == ["nodeAffinity"]


def test_minimal_install_renders_only_the_api() -> None:
    kinds = sorted({d["kind"] for d in render(values=[MINIMAL])})
    assert kinds == ["ConfigMap", "Deployment", "Secret", "Service", "ServiceAccount"]


def test_network_policy_opens_only_the_api_and_metrics_ports() -> None:
    policies = {
        p["metadata"]["name"]: p["spec"] for p in find(render(values=[ALL]), "NetworkPolicy")
    }
    api = next(v for k, v in policies.items() if k.endswith("-api"))
    background = next(v for k, v in policies.items() if k.endswith("-background"))

    assert all(p["policyTypes"] == ["Ingress"] for p in policies.values())
    # api port from the ingress controller only; the metrics port from monitoring only.
    assert api["ingress"] == [
        {"ports": [{"port": "http", "protocol": "TCP"}], "from": INGRESS_CONTROLLER},
        {"ports": [{"port": "metrics", "protocol": "TCP"}], "from": MONITORING},
    ]
    assert background["ingress"] == [
        {"ports": [{"port": "metrics", "protocol": "TCP"}], "from": MONITORING}
    ]


def test_network_policy_lets_monitoring_reach_the_api_port_only_with_metrics_on_it() -> None:
    docs = render(values=[ALL], set_values=["metrics.onApiPort=true"])
    api = one(docs, "NetworkPolicy", "-api")["spec"]

    assert api["ingress"][2] == {
        "ports": [{"port": "http", "protocol": "TCP"}],
        "from": MONITORING,
    }


def test_network_policy_without_peers_allows_any_source_on_the_open_ports() -> None:
    policies = find(render(), "NetworkPolicy")

    assert [len(p["spec"]["ingress"]) for p in policies] == [2, 1]
    assert all("from" not in rule for p in policies for rule in p["spec"]["ingress"])


def test_operator_role_equals_the_rules_the_operator_declares() -> None:
    from sapi_operator.rbac import rules

    assert one(render(), "Role", "-operator")["rules"] == rules()
    assert one(render(values=[ALL]), "ClusterRole", "-operator")["rules"] == rules()


def test_timeouts_outlast_one_ai_call_so_shutdown_does_not_cut_it() -> None:
    from app.settings import Settings

    deadline = Settings.model_fields["ai_request_deadline"].default
    docs = render()
    api = env_of(containers(one(docs, "Deployment", "-api"))[0])
    worker = one(docs, "Deployment", "-worker")["spec"]["template"]["spec"]

    # A sync generate call must finish before gunicorn kills its worker...
    assert int(api["GUNICORN_TIMEOUT"]) > deadline
    # ...and a running job before Kubernetes ends the worker's warm shutdown.
    assert worker["terminationGracePeriodSeconds"] > deadline
