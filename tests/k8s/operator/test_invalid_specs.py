"""Invalid specs are refused by the apiserver itself (schema + CEL) with a readable message,
and the admin API's models refuse the same specs: one source of truth, two front doors."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from app.core.specs import KINDS
from tests.k8s.operator.stack import Kubectl, manifest

pytestmark = [pytest.mark.k8s, pytest.mark.timeout(300)]

LIMIT = {"requests": 10, "window": "1m"}


def rules(*limits: dict[str, Any], names: tuple[str, ...] = ("r",)) -> dict[str, Any]:
    """A RateLimitPolicy spec."""
    return {"rules": [{"name": n, "limits": list(limits)} for n in names]}


CASES = [
    pytest.param(
        "ApiVersion",
        {"version": "1.0", "deprecatedAt": "next tuesday"},
        'spec.deprecatedAt in body must be of type date-time: "next tuesday"',
        id="bad-date",
    ),
    pytest.param(
        "ApiVersion",
        {
            "version": "1.0",
            "deprecatedAt": "2027-01-01T00:00:00Z",
            "sunsetAt": "2026-06-01T00:00:00Z",
        },
        "sunsetAt must not be before deprecatedAt",
        id="sunset-before-deprecation",
    ),
    pytest.param(
        "ApiVersion",
        {"version": "1.0", "phase": "Sunsetting"},
        'spec.phase: Unsupported value: "Sunsetting": supported values: "Current", "Supported", '
        '"Deprecated", "Retired"',
        id="unknown-phase",
    ),
    pytest.param(
        "ApiVersion",
        {"version": "v1"},
        "spec.version in body should match",
        id="bad-version",
    ),
    pytest.param(
        "ApiVersion",
        {"version": "1.0", "brownouts": [{"start": "2027-01-01T00:00:00Z", "duration": "1 hour"}]},
        "spec.brownouts[0].duration in body should match",
        id="bad-duration",
    ),
    pytest.param(
        "RateLimitPolicy",
        rules({"requests": -5, "window": "1m"}),
        "spec.rules[0].limits[0].requests in body should be greater than or equal to 1",
        id="negative-limit",
    ),
    pytest.param(
        "RateLimitPolicy",
        rules({"requests": 5, "tokens": 100, "window": "1m"}),
        "set exactly one of requests, tokens or usd",
        id="requests-and-tokens",
    ),
    pytest.param(
        "RateLimitPolicy",
        rules({"tokens": 5, "usd": "1.00", "window": "1d"}),
        "set exactly one of requests, tokens or usd",
        id="tokens-and-usd",
    ),
    pytest.param(
        "RateLimitPolicy",
        rules({"usd": "-1", "window": "1d"}),
        "spec.rules[0].limits[0].usd in body should match",
        id="negative-usd",
    ),
    pytest.param(
        "RateLimitPolicy",
        rules({"usd": "1.00", "burst": 2, "window": "1d"}),
        "burst applies to request limits only",
        id="usd-burst",
    ),
    pytest.param(
        "RateLimitPolicy",
        rules({"tokens": 100, "burst": 5, "window": "1d"}),
        "burst applies to request limits only",
        id="token-burst",
    ),
    pytest.param(
        "RateLimitPolicy",
        rules(LIMIT, names=("same", "same")),
        "rule names must be unique within a policy",
        id="duplicate-rules",
    ),
    pytest.param(
        "RateLimitPolicy",
        {**rules(LIMIT), "mode": "Sometimes"},
        'spec.mode: Unsupported value: "Sometimes"',
        id="unknown-mode",
    ),
    pytest.param(
        "RateLimitPolicy",
        {**rules(LIMIT), "burstiness": 3},
        'unknown field "spec.burstiness"',
        id="unknown-field",
    ),
    pytest.param(
        "AIProvider",
        {"type": "OpenAI", "models": [{"name": "m"}]},
        "baseURL is required unless type is Echo",
        id="missing-base-url",
    ),
    pytest.param(
        "AIProvider",
        {"type": "OpenAI", "baseURL": "http://169.254.169.254/latest", "models": [{"name": "m"}]},
        "baseURL must not be a link-local or cloud metadata address",
        id="metadata-address",
    ),
    pytest.param(
        "AIProvider",
        {"type": "OpenAI", "baseURL": "https://[fe80::1]/v1", "models": [{"name": "m"}]},
        "baseURL must not be a link-local or cloud metadata address",
        id="link-local-ipv6",
    ),
    pytest.param(
        "AIProvider",
        {"type": "OpenAI", "baseURL": "https://[fd00:ec2::254]/", "models": [{"name": "m"}]},
        "baseURL must not be a link-local or cloud metadata address",
        id="aws-metadata-ipv6",
    ),
    pytest.param(
        "AIProvider",
        {
            "type": "OpenAI",
            "baseURL": "http://Metadata.Google.Internal/computeMetadata/v1",
            "models": [{"name": "m"}],
        },
        "baseURL must not be a link-local or cloud metadata address",
        id="metadata-host-name",
    ),
    pytest.param(
        "AIProvider",
        {"type": "OpenAI", "baseURL": "ftp://files.example.com/", "models": [{"name": "m"}]},
        "baseURL must be an http or https URL",
        id="not-http",
    ),
    pytest.param(
        "AIProvider",
        {"type": "Echo", "models": [{"name": "a"}], "defaultModel": "b"},
        "defaultModel must be one of models",
        id="unknown-default-model",
    ),
    pytest.param(
        "AIProvider",
        {"type": "Echo", "models": [{"name": "a"}], "timeoutSeconds": 0},
        "spec.timeoutSeconds in body should be greater than 0",
        id="zero-timeout",
    ),
    pytest.param(
        "AIProvider",
        {"type": "Gemini", "models": [{"name": "a"}]},
        'spec.type: Unsupported value: "Gemini"',
        id="unknown-provider-type",
    ),
    pytest.param(
        "AIModelRoute",
        {
            "model": "chat",
            "targets": [{"provider": "a", "model": "m"}, {"provider": "a", "model": "m"}],
        },
        "each provider and model may appear once among targets",
        id="route-duplicate-target",
    ),
    pytest.param(
        "AIModelRoute",
        {"model": "chat", "targets": []},
        "spec.targets in body should have at least 1 items",
        id="route-no-targets",
    ),
    pytest.param(
        "AIModelRoute",
        {"model": "chat", "targets": [{"provider": "a", "model": "m", "weight": -1}]},
        "spec.targets[0].weight in body should be greater than or equal to 0",
        id="route-negative-weight",
    ),
]


@pytest.mark.parametrize(("kind", "spec", "message"), CASES)
def test_apiserver_and_admin_api_refuse_the_same_invalid_spec(
    kube: Kubectl, kind: str, spec: dict[str, Any], message: str
) -> None:
    result = kube.cp.kubectl(
        "apply",
        "-n",
        kube.namespace,
        "-f",
        "-",
        input=manifest(kind, "invalid", spec),
        check=False,
    )
    assert result.returncode != 0
    assert message in result.stderr, result.stderr
    assert kube.cp.kubectl("get", kind, "-n", kube.namespace, "-o", "name").stdout == ""
    with pytest.raises(ValidationError):
        KINDS[kind].model_validate(spec)
