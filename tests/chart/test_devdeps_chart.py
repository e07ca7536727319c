"""charts/structured-api-devdeps: lint, render, secure pod defaults, and the contract with the
main chart's devcluster values (Secret name, keys, Service hosts)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from kubetools import ControlPlane

from tests.chart.conftest import CHART, KUBE_VERSION, helm, render

DEVDEPS = CHART.parent / "structured-api-devdeps"
DEVCLUSTER = CHART / "ci" / "devcluster-values.yaml"
RELEASE = "structured-api-devdeps"  # the release name skaffold's devcluster profile uses
NAMESPACE = "sapi-dev"


def template(*set_values: str, check: bool = True, release: str = RELEASE) -> Any:
    """`helm template` of the devdeps chart (a CompletedProcess when check is False)."""
    args = ["template", release, str(DEVDEPS), "--namespace", NAMESPACE]
    args += ["--kube-version", KUBE_VERSION]
    for item in set_values:
        args += ["--set", item]
    result = helm(*args, check=check)
    if not check:
        return result
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def by_kind(docs: Sequence[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    """Manifests of one kind by name."""
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def test_helm_lint_strict_passes() -> None:
    assert "0 chart(s) failed" in helm("lint", "--strict", str(DEVDEPS)).stdout


def test_renders_postgresql_redis_and_the_simulator_with_services() -> None:
    docs = template()

    names = {"postgresql", "redis", "provider-sim"}
    assert set(by_kind(docs, "Deployment")) == {f"{RELEASE}-{n}" for n in names}
    assert set(by_kind(docs, "Service")) == {f"{RELEASE}-{n}" for n in names}
    for doc in docs:
        assert doc["metadata"]["namespace"] == NAMESPACE
        assert doc["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE


def test_every_pod_is_non_root_read_only_without_capabilities() -> None:
    for name, doc in by_kind(template(), "Deployment").items():
        pod = doc["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        assert doc["spec"]["strategy"]["type"] == "Recreate"  # one server per emptyDir
        for container in pod["containers"]:
            sc = container["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"]["drop"] == ["ALL"]
            assert container["resources"]["limits"]["memory"]
            assert container["readinessProbe"] and container["livenessProbe"]
        # Whatever a read-only root needs to write is an emptyDir.
        assert {v["name"] for v in pod["volumes"] if "emptyDir" in v} >= {"tmp"}


def test_the_secret_holds_what_the_devcluster_values_point_at() -> None:
    docs = template()
    values = yaml.safe_load(DEVCLUSTER.read_text())
    secrets = by_kind(docs, "Secret")
    services = by_kind(docs, "Service")

    secret = secrets[values["database"]["existingSecret"]]["stringData"]
    assert values["redis"]["existingSecret"] == values["database"]["existingSecret"]
    database = urlsplit(secret[values["database"]["existingSecretKey"]])
    redis = urlsplit(secret[values["redis"]["existingSecretKey"]])
    assert database.scheme == "postgresql" and redis.scheme == "redis"
    assert database.password == secret["POSTGRES_PASSWORD"]
    assert redis.password == secret["REDIS_PASSWORD"]
    for url in (database, redis):
        service = services[url.hostname.removesuffix(f".{NAMESPACE}.svc")]
        assert url.port == service["spec"]["ports"][0]["port"]
    # The simulator is reachable over plain http only when the app allows its host.
    assert values["extraEnv"]["AI_ALLOWED_HTTP_HOSTS"] == f"{RELEASE}-provider-sim"


def test_passwords_are_generated_and_fed_to_the_servers_from_the_secret() -> None:
    docs = template()
    deployments = by_kind(docs, "Deployment")

    (secret,) = by_kind(docs, "Secret").values()
    assert len(secret["stringData"]["POSTGRES_PASSWORD"]) == 32
    (again,) = by_kind(template(), "Secret").values()
    assert again["stringData"] != secret["stringData"]  # random per render (kept by lookup)
    pg_env = {
        e["name"]: e
        for e in deployments[f"{RELEASE}-postgresql"]["spec"]["template"]["spec"]["containers"][0][
            "env"
        ]
    }
    assert (
        pg_env["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"]
        == secret["metadata"]["name"]
    )
    redis = deployments[f"{RELEASE}-redis"]["spec"]["template"]["spec"]["containers"][0]
    assert redis["args"][-2:] == ["--requirepass", "$(REDIS_PASSWORD)"]


def test_trust_auth_and_no_redis_auth_drop_the_passwords_from_the_urls() -> None:
    docs = template("postgresql.authMethod=trust", "redis.auth=false")
    (secret,) = by_kind(docs, "Secret").values()

    assert urlsplit(secret["stringData"]["DATABASE_URL"]).password is None
    assert urlsplit(secret["stringData"]["REDIS_URL"]).password is None
    redis = by_kind(docs, "Deployment")[f"{RELEASE}-redis"]["spec"]["template"]["spec"]
    assert "--requirepass" not in redis["containers"][0]["args"]


def test_network_policy_is_off_by_default_and_opens_only_enabled_ports() -> None:
    assert by_kind(template(), "NetworkPolicy") == {}

    docs = template("networkPolicy.enabled=true", "postgresql.enabled=false")
    (policy,) = by_kind(docs, "NetworkPolicy").values()

    (rule,) = policy["spec"]["ingress"]
    assert [p["port"] for p in rule["ports"]] == [6379, 9100]
    assert rule["from"] == [{"podSelector": {}}]  # this namespace only


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("unknownKey=1", "additional properties 'unknownKey' not allowed"),
        ("postgresql.authMethod=password", "value must be one of"),
        ("postgresql.password=p@ss", "does not match"),  # it goes into a URL unescaped
        ("postgresql.user=Robert'); DROP", "does not match"),
        ("redis.port=0", "minimum"),
    ],
)
def test_schema_refuses_invalid_values(override: str, message: str) -> None:
    result = template(override, check=False)

    assert result.returncode != 0
    assert message in result.stderr


def test_every_value_is_commented(monkeypatch: pytest.MonkeyPatch) -> None:
    # The main chart's check, pointed at this chart's values.yaml.
    import tests.chart.test_render as main_chart

    monkeypatch.setattr(main_chart, "CHART", DEVDEPS)
    main_chart.test_every_value_is_commented()


def test_schema_and_values_name_the_same_keys() -> None:
    schema = json.loads((DEVDEPS / "values.schema.json").read_text())
    values = yaml.safe_load((DEVDEPS / "values.yaml").read_text())

    def missing(node: dict[str, Any], props: dict[str, Any], path: str) -> list[str]:
        out = []
        for key, value in node.items():
            sub = props.get("properties", {}).get(key)
            if sub is None:
                out.append(path + key)
            elif isinstance(value, dict) and "properties" in sub:
                out += missing(value, sub, f"{path}{key}.")
        return out

    assert missing(values, schema, "") == []


def test_the_main_charts_devcluster_values_keep_production_defaults_untouched() -> None:
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    docs = render(values=[DEVCLUSTER], set_values=["image.tag=abc123"])

    # Production defaults still name managed services and the registry image.
    assert (
        defaults["database"]["existingSecret"] == ""
        and defaults["image"]["repository"] == "structured-api"
    )
    api = next(
        d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"].endswith("-api")
    )
    container = api["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "localhost/structured-api:abc123"
    assert not [
        d
        for d in docs
        if d["kind"] == "Secret" and d["metadata"]["name"].endswith(("-database", "-redis"))
    ]


# --- against a real kube-apiserver (k8s mark) ---------------------------------------------


def template_for(namespace: str) -> str:
    """The rendered chart for `namespace`, as text."""
    args = ["template", RELEASE, str(DEVDEPS), "--namespace", namespace]
    return helm(*args, "--kube-version", KUBE_VERSION).stdout


@pytest.mark.k8s
@pytest.mark.slow
def test_every_rendered_manifest_passes_server_side_dry_run(
    cluster: ControlPlane, fresh_namespace: str
) -> None:
    rendered = template_for(fresh_namespace)
    docs = [d for d in yaml.safe_load_all(rendered) if d]

    result = cluster.kubectl("apply", "--dry-run=server", "-f", "-", input=rendered, check=False)

    assert result.returncode == 0, result.stderr
    accepted = [line for line in result.stdout.splitlines() if line.endswith("(server dry run)")]
    assert len(accepted) == len(docs), result.stdout


@pytest.mark.k8s
@pytest.mark.slow
def test_an_upgrade_keeps_the_generated_passwords(
    cluster: ControlPlane, fresh_namespace: str
) -> None:
    # PostgreSQL reads its password only when it initdb's; a new one would lock the app out.
    ns, secret = fresh_namespace, f"{RELEASE}-urls"

    def data() -> dict[str, str]:
        got = cluster.kubectl("get", "secret", secret, "-n", ns, "-o", "json").stdout
        found: dict[str, str] = json.loads(got)["data"]
        return found

    cluster.helm("install", RELEASE, str(DEVDEPS), "-n", ns)
    installed = data()
    cluster.helm("upgrade", RELEASE, str(DEVDEPS), "-n", ns, "--set", "redis.maxmemory=64mb")

    assert data() == installed
    assert set(installed) == {"POSTGRES_PASSWORD", "DATABASE_URL", "REDIS_PASSWORD", "REDIS_URL"}
    cluster.helm("uninstall", RELEASE, "-n", ns)
