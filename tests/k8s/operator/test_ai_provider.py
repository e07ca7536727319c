"""AIProvider with a Secret: generation through it, rotation without restart, and a
deleted Secret turning CredentialValid false and the provider unavailable (AI_*); Secrets
that did not opt in, and the release's own, are never read (their values never leave)."""

from __future__ import annotations

import base64
import json
import secrets
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from flask import Flask

from app.core.crypto import keyring
from app.factory import settings_of
from sapi_operator.credentials import OPT_IN_LABEL
from tests.k8s.operator.stack import ROOT, Kubectl, OperatorProcess, eventually, manifest
from tests.support.listener import recording_listener
from tests.support.processes import LiveServer, ManagedProcess, child_env, free_port, wait_for

pytestmark = [pytest.mark.k8s, pytest.mark.slow, pytest.mark.timeout(300)]

DEADLINE = 2.0
OPTED_IN = {OPT_IN_LABEL: "true"}


def http(
    method: str, url: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    """Status and JSON body of one request."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url,
        data=data,
        method=method,
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            raw = resp.read()
            return resp.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as err:
        raw = err.read()
        return err.code, json.loads(raw) if raw else None


@pytest.fixture
def provider_sim(tmp_path: Path) -> Iterator[str]:
    """The local OpenAI-compatible provider simulator as its own process; yields its URL."""
    port = free_port()
    process = ManagedProcess(
        name="provider_sim",
        args=[sys.executable, "-m", "provider_sim", "--port", str(port)],
        env=child_env(PYTHONPATH=str(ROOT / "scripts")),
        log_path=tmp_path / "provider_sim.log",
    ).start()
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        process.check_alive()
        try:
            return http("GET", f"{url}/_control/health")[0] == 200
        except OSError:
            return False

    wait_for(up, timeout=30, what="provider simulator")
    try:
        yield url
    finally:
        process.stop()


@pytest.fixture
def bearer(api: LiveServer) -> dict[str, str]:
    """An Authorization header of a freshly registered user."""
    email = f"ai-{secrets.token_hex(4)}@example.com"
    password = secrets.token_urlsafe(16)
    status, _ = http("POST", f"{api.url}/v1/auth/register", {"email": email, "password": password})
    assert status in (200, 201, 202), status
    status, body = http("POST", f"{api.url}/v1/auth/login", {"email": email, "password": password})
    assert status == 200, body
    return {"Authorization": f"Bearer {body['data']['access_token']}"}


def secret_yaml(
    name: str, value: str, *, key: str = "apiKey", labels: dict[str, str] | None = None
) -> str:
    """A Secret with `key` (`apiKey`), opted in as provider keys unless `labels` says else."""
    body = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "labels": OPTED_IN if labels is None else labels},
        "data": {key: base64.b64encode(value.encode()).decode()},
    }
    return yaml.safe_dump(body)


def test_provider_key_from_secret_generates_rotates_and_goes_unavailable_when_deleted(
    kube: Kubectl,
    operator: OperatorProcess,
    api: LiveServer,
    api_app: Flask,
    provider_sim: str,
    bearer: dict[str, str],
    stack_engine: sa.Engine,
) -> None:
    first, second = f"sk-first-{secrets.token_hex(8)}", f"sk-second-{secrets.token_hex(8)}"
    name, secret = f"sim-{kube.namespace[-6:]}", f"llm-key-{kube.namespace[-6:]}"
    model = f"sim-model-{kube.namespace[-6:]}"
    http("PUT", f"{provider_sim}/_control/keys", {"keys": [first]})
    kube.apply(secret_yaml(secret, first))
    kube.apply(
        manifest(
            "AIProvider",
            name,
            {
                "type": "OpenAICompatible",
                "baseURL": f"{provider_sim}/v1",
                "credentialsSecretRef": {"name": secret, "key": "apiKey"},
                "models": [{"name": model}],
                "defaultModel": model,
                "maxRetries": 0,
            },
        )
    )
    valid = kube.wait_condition("aip", name, "CredentialValid", "True", reason="SecretResolved")
    kube.wait_condition("aip", name, "Ready", "True")
    generate = f"{api.url}/v1/ai/generate"
    ask = {"prompt": "hello", "model": model}
    eventually(
        lambda: http("POST", generate, ask, bearer)[0] == 200, timeout=DEADLINE, what="generate"
    )
    version_one = (kube.get("aip", name) or {})["status"]["credentialVersion"]

    # Rotate: the simulator now only accepts the new key; nothing restarts.
    http("PUT", f"{provider_sim}/_control/keys", {"keys": [second]})
    assert http("POST", generate, ask, bearer)[0] != 200
    kube.apply(secret_yaml(secret, second))
    rotated = eventually(
        lambda: http("POST", generate, ask, bearer)[0] == 200, timeout=DEADLINE, what="rotation"
    )
    eventually(
        lambda: (
            (kube.get("aip", name) or {})["status"].get("credentialVersion")
            not in (None, version_one)
        ),
        timeout=10,
        interval=0.1,
        what="credentialVersion updated",
    )

    # The key exists only as ciphertext in the row that the API decrypts.
    with stack_engine.connect() as conn:
        row = conn.execute(
            sa.text(
                "SELECT credential_ciphertext, credential_version, spec::text, status::text "
                "FROM config_object WHERE kind = 'AIProvider' AND name = :n"
            ),
            {"n": name},
        ).one()
        audit = conn.execute(
            sa.text(
                "SELECT string_agg(coalesce(before::text, '') || coalesce(after::text, ''), '') "
                "FROM config_audit WHERE name = :n"
            ),
            {"n": name},
        ).scalar_one()
    ring = keyring(settings_of(api_app))
    assert ring.decrypt(row.credential_ciphertext) == second
    for text in (row.credential_ciphertext, row.spec, row.status, audit):
        assert first not in text and second not in text

    # Take the label away: the Secret leaves the operator's watch, which drops the key;
    # put it back and the key is stored again. Nothing restarts either time.
    kube.cp.kubectl("label", "secret", secret, f"{OPT_IN_LABEL}-", "-n", kube.namespace)
    kube.wait_condition("aip", name, "CredentialValid", "False", reason="SecretNotOptedIn")
    assert "credentialVersion" not in (kube.get("aip", name) or {})["status"]
    kube.cp.kubectl("label", "secret", secret, f"{OPT_IN_LABEL}=true", "-n", kube.namespace)
    kube.wait_condition("aip", name, "CredentialValid", "True", reason="SecretResolved")
    eventually(
        lambda: http("POST", generate, ask, bearer)[0] == 200, timeout=DEADLINE, what="relabel"
    )

    # Delete the Secret: the condition turns false and the API says why, with an AI_* code.
    began = time.monotonic()
    kube.delete("secret", secret)
    lost = kube.wait_condition("aip", name, "CredentialValid", "False", reason="SecretNotFound")
    status, body = http("POST", generate, ask, bearer)
    gone = time.monotonic() - began
    assert status == 503 and body["error"]["code"] == "AI_PROVIDER_UNAVAILABLE", body
    assert secret in lost["message"]
    assert kube.condition("aip", name, "Ready")["reason"] == "CredentialInvalid"  # type: ignore[index]
    assert "credentialVersion" not in (kube.get("aip", name) or {})["status"]

    # Never in the operator's logs or the resource's status.
    cr_text = json.dumps(kube.get("aip", name))
    for key in (first, second):
        assert key not in operator.output() and key not in cr_text
    print(f"\nrotation picked up {rotated:.3f}s after kubectl; secret deletion {gone:.3f}s")  # noqa: T201
    assert valid["reason"] == "SecretResolved"


def chart_protected_secrets(kube: Kubectl) -> str:
    """OPERATOR_PROTECTED_SECRETS as the chart renders it for release `t` in the namespace."""
    rendered = kube.cp.helm(
        "template",
        "t",
        str(ROOT / "charts" / "structured-api"),
        "-n",
        kube.namespace,
        "--show-only",
        "templates/operator-deployment.yaml",
    ).stdout
    container = yaml.safe_load(rendered)["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    return str(env["OPERATOR_PROTECTED_SECRETS"])


def test_a_provider_cannot_read_a_secret_that_did_not_opt_in_nor_the_release_own(
    kube: Kubectl,
    operator_factory: type[OperatorProcess],
    api: LiveServer,
    bearer: dict[str, str],
    stack_engine: sa.Engine,
) -> None:
    # The operator gets the protected names exactly as the chart renders them for release `t`.
    protected = chart_protected_secrets(kube)
    release_db = "t-structured-api-urls"
    assert f"{kube.namespace}/{release_db}" in protected.split(",")
    operator = operator_factory(OPERATOR_PROTECTED_SECRETS=protected)
    operator.start()
    db_url = f"postgresql://app:hunter2-{secrets.token_hex(6)}@db.internal:5432/app"
    component = {"app.kubernetes.io/component": "database"}
    # A copy of the database URL in an ordinary Secret of the namespace, not opted in...
    kube.apply(secret_yaml("app-database", db_url, key="DATABASE_URL", labels=component))
    # ...and the release's own database Secret, labelled anyway (a stray commonLabels).
    kube.apply(
        secret_yaml(release_db, db_url, key="DATABASE_URL", labels={**component, **OPTED_IN})
    )
    model = f"steal-{kube.namespace[-6:]}"
    generate = f"{api.url}/v1/ai/generate"

    with recording_listener() as thief:
        for name, secret in (("unlabelled", "app-database"), ("protected", release_db)):
            spec = {
                "type": "OpenAICompatible",
                "baseURL": f"{thief.url}/v1",  # a host the author of the resource controls
                "credentialsSecretRef": {"name": secret, "key": "DATABASE_URL"},
                "models": [{"name": model}],
                "maxRetries": 0,
                "priority": 1,
            }
            kube.apply(manifest("AIProvider", name, spec))
        # A keyless provider of the same model behind them: a generate still answers 200.
        backstop = {"type": "Echo", "models": [{"name": model}], "priority": 50}
        kube.apply(manifest("AIProvider", "backstop", backstop))
        unlabelled = kube.wait_condition(
            "aip", "unlabelled", "CredentialValid", "False", reason="SecretNotOptedIn"
        )
        refused = kube.wait_condition(
            "aip", "protected", "CredentialValid", "False", reason="SecretProtected"
        )
        kube.wait_condition("aip", "backstop", "Ready", "True")
        answers: list[Any] = []

        def answered() -> bool:
            answers.append(http("POST", generate, {"prompt": "hi", "model": model}, bearer))
            return bool(answers[-1][0] == 200)

        eventually(answered, timeout=10, interval=0.1, what="generate through the backstop")
        body = answers[-1][1]

        assert body["data"]["provider"] == "backstop", body
        assert body["data"]["attempts"] == [
            {"provider": "protected", "reason": "no_credential"},
            {"provider": "unlabelled", "reason": "no_credential"},
        ]
        # The host behind baseURL never heard from the gateway: no request, so no key.
        assert thief.received == []

    assert f"kubectl label secret app-database -n {kube.namespace}" in unlabelled["message"]
    assert "OPERATOR_PROTECTED_SECRETS" in refused["message"]
    for name in ("unlabelled", "protected"):
        assert kube.condition("aip", name, "Ready")["reason"] == "CredentialInvalid"  # type: ignore[index]
        assert "credentialVersion" not in (kube.get("aip", name) or {})["status"]
    with stack_engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT name, credential_ciphertext, credential_version FROM config_object "
                "WHERE kind = 'AIProvider' AND source_namespace = :ns ORDER BY name"
            ),
            {"ns": kube.namespace},
        ).all()
        audit = conn.execute(
            sa.text(
                "SELECT coalesce(string_agg(coalesce(after::text, ''), ''), '') "
                "FROM config_audit WHERE source_namespace = :ns"
            ),
            {"ns": kube.namespace},
        ).scalar_one()
    assert [tuple(r) for r in rows] == [
        ("backstop", None, None),
        ("protected", None, None),
        ("unlabelled", None, None),
    ]
    # The database URL is nowhere: not in a status, the audit trail or the operator's log.
    statuses = json.dumps([kube.get("aip", n) for n in ("unlabelled", "protected")])
    for text in (statuses, audit, operator.output()):
        assert "hunter2" not in text
