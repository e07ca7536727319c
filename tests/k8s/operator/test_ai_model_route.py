"""`kubectl apply` an AIModelRoute: the API serves the routed name (OpenAI surface and
`/v1/ai/generate`), the status says Ready, and a delete removes the name."""

from __future__ import annotations

import json
import secrets
import urllib.error
import urllib.request
from typing import Any

import pytest
import sqlalchemy as sa

from tests.k8s.operator.stack import Kubectl, OperatorProcess, eventually, manifest
from tests.support.processes import LiveServer

pytestmark = [pytest.mark.k8s, pytest.mark.slow, pytest.mark.timeout(300)]

DEADLINE = 2.0


def http(
    method: str, url: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    """Status and JSON body of one request."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url, data=data, method=method,
        headers={"Content-Type": "application/json", **(headers or {})},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            raw = resp.read()
            return resp.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as err:
        raw = err.read()
        return err.code, json.loads(raw) if raw else None


@pytest.fixture
def bearer(api: LiveServer) -> dict[str, str]:
    """An Authorization header of a freshly registered user."""
    email = f"route-{secrets.token_hex(4)}@example.com"
    password = secrets.token_urlsafe(16)
    status, _ = http("POST", f"{api.url}/v1/auth/register", {"email": email, "password": password})
    assert status in (200, 201, 202), status
    status, body = http("POST", f"{api.url}/v1/auth/login", {"email": email, "password": password})
    assert status == 200, body
    return {"Authorization": f"Bearer {body['data']['access_token']}"}


def test_route_is_served_ready_and_removed(
    kube: Kubectl,
    operator: OperatorProcess,
    api: LiveServer,
    stack_engine: sa.Engine,
    bearer: dict[str, str],
) -> None:
    suffix = kube.namespace[-6:]
    provider, route, public = f"echo-{suffix}", f"route-{suffix}", f"chat-{suffix}"
    kube.apply(manifest("AIProvider", provider, {"type": "Echo", "models": [{"name": "echo-m"}]}))
    kube.wait_condition("aip", provider, "Ready", "True")
    spec = {"model": public, "targets": [{"provider": provider, "model": "echo-m"}]}
    kube.apply(manifest("AIModelRoute", route, spec))

    def listed() -> bool:
        status, body = http("GET", f"{api.url}/openai/v1/models", headers=bearer)
        return status == 200 and any(m["id"] == public for m in body["data"])

    eventually(listed, timeout=DEADLINE + 5, what="route listed")
    ready = kube.wait_condition("aimr", route, "Ready", "True")
    assert ready["reason"] == "Reconciled"
    status, body = http(
        "POST", f"{api.url}/v1/ai/generate", {"prompt": "routed", "model": public}, bearer
    )
    assert status == 200, body
    assert body["data"]["model"] == public and body["data"]["provider"] == provider
    status, answer = http(
        "POST",
        f"{api.url}/openai/v1/chat/completions",
        {"model": public, "messages": [{"role": "user", "content": "hi"}]},
        bearer,
    )
    assert status == 200, answer
    assert answer["choices"][0]["message"]["content"] == "echo: hi"

    kube.delete("aimr", route, wait=False)
    eventually(lambda: not listed(), timeout=DEADLINE + 5, what="route gone")
    eventually(lambda: kube.get("aimr", route) is None, timeout=10, what="finalizer removed")
    with stack_engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT count(*) FROM config_object WHERE kind = 'AIModelRoute' AND name = :n"),
            {"n": route},
        ).scalar_one()
    assert rows == 0
    kube.delete("aip", provider)


def unresolved_of(kube: Kubectl, route: str) -> list[tuple[str, str, str]] | None:
    """(provider, model, reason) of each unresolved target in the route's status."""
    body = kube.get("aimr", route) or {}
    found = (body.get("status") or {}).get("unresolvedTargets")
    if found is None:
        return None
    return [(t["provider"], t["model"], t["reason"]) for t in found]


def test_status_names_unresolved_targets_and_follows_provider_changes(
    kube: Kubectl, operator: OperatorProcess
) -> None:
    suffix = kube.namespace[-6:]
    echo, ghost, keyless = f"echo-{suffix}", f"ghost-{suffix}", f"nokey-{suffix}"
    route = f"degraded-{suffix}"
    kube.apply(manifest("AIProvider", echo, {"type": "Echo", "models": [{"name": "m1"}]}))
    kube.wait_condition("aip", echo, "Ready", "True", timeout=30)
    # Stored, but its Secret does not exist: Ready=False (CredentialInvalid).
    kube.apply(manifest("AIProvider", keyless, {
        "type": "OpenAICompatible", "baseURL": "https://provider.invalid/v1",
        "credentialsSecretRef": {"name": f"absent-{suffix}"}, "models": [{"name": "ym"}],
    }))  # fmt: skip
    kube.wait_condition("aip", keyless, "Ready", "False", reason="CredentialInvalid", timeout=30)
    targets = [
        {"provider": echo, "model": "m1"},
        {"provider": echo, "model": "m2"},
        {"provider": ghost, "model": "xm"},
        {"provider": keyless, "model": "ym"},
    ]
    kube.apply(manifest("AIModelRoute", route, {"model": f"pub-{suffix}", "targets": targets}))

    degraded = kube.wait_condition(
        "aimr", route, "Degraded", "True", reason="UnresolvedTargets", timeout=30
    )
    assert unresolved_of(kube, route) == [
        (echo, "m2", "ModelNotOffered"),
        (ghost, "xm", "ProviderNotFound"),
        (keyless, "ym", "ProviderNotReady"),
    ]
    assert (
        "3 of 4 targets" in degraded["message"]
        and f"{ghost}/xm (ProviderNotFound)" in (degraded["message"])
    )
    # One target resolves: the name is served, so the route is Ready.
    assert kube.condition("aimr", route, "Ready")["status"] == "True"  # type: ignore[index]

    # A provider appears: the route is re-evaluated without being touched.
    kube.apply(manifest("AIProvider", ghost, {"type": "Echo", "models": [{"name": "xm"}]}))
    eventually(
        lambda: unresolved_of(kube, route)
        == [(echo, "m2", "ModelNotOffered"), (keyless, "ym", "ProviderNotReady")],
        timeout=30, what="ghost resolved",
    )  # fmt: skip
    # A provider changes: it now lists the model; the other one goes away.
    kube.apply(
        manifest("AIProvider", echo, {"type": "Echo", "models": [{"name": "m1"}, {"name": "m2"}]})
    )
    kube.delete("aip", keyless)
    eventually(
        lambda: unresolved_of(kube, route) == [(keyless, "ym", "ProviderNotFound")],
        timeout=30, what="echo lists m2, keyless gone",
    )  # fmt: skip
    # The last one goes too: everything resolves.
    kube.apply(manifest("AIModelRoute", route, {"model": f"pub-{suffix}", "targets": targets[:3]}))
    resolved = kube.wait_condition(
        "aimr", route, "Degraded", "False", reason="TargetsResolved", timeout=30
    )
    assert unresolved_of(kube, route) == [] and resolved["observedGeneration"] == 2

    # Every provider gone: nothing can answer for the name, so the route is not Ready.
    kube.delete("aip", echo)
    kube.delete("aip", ghost)
    ready = kube.wait_condition(
        "aimr", route, "Ready", "False", reason="UnresolvedTargets", timeout=30
    )
    assert unresolved_of(kube, route) == [
        (echo, "m1", "ProviderNotFound"), (echo, "m2", "ProviderNotFound"),
        (ghost, "xm", "ProviderNotFound"),
    ]  # fmt: skip
    assert "404" in ready["message"]
    kube.delete("aimr", route)
