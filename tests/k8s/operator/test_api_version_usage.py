"""Live usage of a version in its status: requests of the last hour and busiest callers."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest
from flask import Flask

from app.auth.keys import load_keyring
from app.auth.tokens import issue_access_token
from app.settings import Settings
from app.versioning import usage
from tests.k8s.operator.stack import Kubectl, OperatorProcess, eventually, manifest
from tests.support.processes import LiveServer

pytestmark = [pytest.mark.k8s, pytest.mark.slow, pytest.mark.timeout(300)]

PROBE = "/v1/limits/me"


def status_of(api: LiveServer, headers: dict[str, str]) -> int:
    """Status of one GET of the probe."""
    request = urllib.request.Request(api.url + PROBE, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return err.code


def bearer(settings: Settings, subject: str) -> dict[str, str]:
    """An Authorization header for `subject`, signed with the API's key."""
    token, _ = issue_access_token(
        keyring=load_keyring(settings),
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        ttl=900,
        subject=subject,
        roles=["user"],
        session_id=None,
    )
    return {"Authorization": f"Bearer {token}"}


def test_requests_and_top_callers_of_a_version_appear_in_its_status(
    kube: Kubectl,
    operator: OperatorProcess,
    api: LiveServer,
    api_app: Flask,
    stack_settings: Settings,
) -> None:
    name = f"v1-{kube.namespace[-6:]}"
    kube.apply(manifest("ApiVersion", name, {"version": "1.0", "phase": "Supported"}))
    kube.wait_condition("apiv", name, "Ready", "True")
    subject = f"busy-{kube.namespace[-6:]}"
    statuses = [status_of(api, bearer(stack_settings, subject)) for _ in range(7)]
    statuses += [status_of(api, {}) for _ in range(2)]
    assert statuses == [200] * 7 + [401] * 2
    # What the API's flusher thread does every USAGE_FLUSH_SECONDS (10 s by default).
    assert usage.counter_of(api_app).flush()

    def busy_caller_listed() -> bool:
        status = (kube.get("apiv", name) or {}).get("status") or {}
        return {"caller": f"user:{subject}", "requests": 7} in status.get("topCallers", [])

    took = eventually(busy_caller_listed, timeout=15, interval=0.2, what="topCallers in status")
    status = (kube.get("apiv", name) or {})["status"]
    # Other tests of the session call /v1 on the same API and Redis: at least ours.
    assert status["requestsLastHour"] >= 9
    assert 1 <= len(status["topCallers"]) <= 10
    assert all(c["caller"] != usage.OTHER for c in status["topCallers"])
    wide = kube.cp.kubectl("get", "apiv", name, "-n", kube.namespace, "-o", "wide").stdout
    assert "REQUESTS-1H" in wide and str(status["requestsLastHour"]) in wide.splitlines()[1]
    print(f"\nusage in status {took:.2f} s after the flush")  # noqa: T201
