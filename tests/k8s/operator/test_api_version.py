"""An ApiVersion marked Deprecated, then Retired: headers and warnings, then 410."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest

from tests.k8s.operator.stack import Kubectl, OperatorProcess, eventually, manifest
from tests.support.processes import LiveServer

pytestmark = [pytest.mark.k8s, pytest.mark.slow, pytest.mark.timeout(300)]

#: Seconds from `kubectl apply` returning (the change is stored in etcd) to the API
#: behaving accordingly.
DEADLINE = 2.0
PROBE = "/v1/limits/me"


def call(api: LiveServer, path: str) -> tuple[int, Any, dict[str, str]]:
    """Status, JSON body and headers of a GET."""
    try:
        with urllib.request.urlopen(api.url + path, timeout=5) as resp:
            return resp.status, json.load(resp), dict(resp.headers)
    except urllib.error.HTTPError as err:
        return err.code, json.load(err), dict(err.headers)


def lifecycle(phase: str) -> dict[str, Any]:
    """Version 1.0, deprecated since 2026-01-01, sunset far ahead, successor 2.0."""
    return {
        "version": "1.0",
        "phase": phase,
        "deprecatedAt": "2026-01-01T00:00:00Z",
        "sunsetAt": "2099-01-01T00:00:00Z",
        "successor": "2.0",
    }


def test_deprecated_then_retired_version_gets_headers_and_warning_then_410(
    kube: Kubectl, operator: OperatorProcess, api: LiveServer
) -> None:
    name = f"v1-{kube.namespace[-6:]}"
    status, _, headers = call(api, PROBE)
    assert status != 410 and "Deprecation" not in headers

    kube.apply(manifest("ApiVersion", name, lifecycle("Deprecated")))
    deprecated = eventually(
        lambda: "Deprecation" in call(api, PROBE)[2], timeout=DEADLINE, what="Deprecation header"
    )
    status, body, headers = call(api, PROBE)
    assert status < 500
    assert headers["Deprecation"] == "@1767225600"  # RFC 9745: 2026-01-01T00:00:00Z
    assert headers["Sunset"] == "Thu, 01 Jan 2099 00:00:00 GMT"  # RFC 8594
    assert 'rel="successor-version"' in headers.get("Link", "")
    assert "VERSION_DEPRECATED" in [w["code"] for w in body["warnings"]]
    kube.wait_condition("apiv", name, "Ready", "True")

    kube.apply(manifest("ApiVersion", name, lifecycle("Retired")))
    retired = eventually(
        lambda: call(api, PROBE)[0] == 410, timeout=DEADLINE, what="410 after retirement"
    )
    status, body, headers = call(api, PROBE)
    assert body["error"]["code"] == "VERSION_RETIRED"
    assert body["error"]["details"]["successor"] == "2.0"
    versions = call(api, "/versions")[1]
    assert "Retired" in json.dumps(versions["data"])
    retired_status = kube.wait_condition("apiv", name, "Ready", "True")
    assert retired_status["observedGeneration"] == 2

    kube.delete("apiv", name)
    eventually(lambda: call(api, PROBE)[0] != 410, timeout=DEADLINE, what="version restored")
    assert max(deprecated, retired) < DEADLINE
    print(f"\ndeprecated {deprecated:.3f}s, retired {retired:.3f}s")  # noqa: T201
