"""Where an AI provider may point: the static rules in the spec, the https allow-list, origins."""

from __future__ import annotations

import ipaddress
import re

import pytest
from pydantic import ValidationError

from app.core import egress
from app.core.specs import AIProviderSpec
from app.core.specs.ai_provider import REFUSED_URL_PATTERN

ALLOWED = ("127.0.0.1", "vllm.internal")


def spec(base_url: str) -> AIProviderSpec:
    """An AIProvider spec with `base_url`."""
    return AIProviderSpec.model_validate(
        {"type": "OpenAICompatible", "baseURL": base_url, "models": [{"name": "m"}]}
    )


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data",
        "http://169.254.169.254.:80/",
        "http://0xa9fea9fe/",  # hexadecimal IPv4: the same address once normalised
        "http://2852039166/v1",  # decimal
        "http://0251.0376.0251.0376/",  # octal
        "https://169.254.0.1/v1",  # any link-local IPv4 (RFC 3927)
        "http://[fe80::1]/v1",  # link-local IPv6
        "http://[::ffff:169.254.169.254]/",  # IPv4-mapped IPv6
        "http://[64:ff9b::a9fe:a9fe]/",  # RFC 6052 NAT64 of 169.254.169.254
        "http://[fd00:ec2::254]/",  # AWS IMDS over IPv6
        "http://[fd00:ec2:0::254]/",
        "http://100.100.100.200/",  # Alibaba Cloud metadata
        "http://metadata.google.internal/computeMetadata/v1",
        "https://METADATA.google.internal./v1",
        "http://metadata.goog/",
    ],
)
def test_spec_refuses_link_local_and_metadata_addresses_however_written(url: str) -> None:
    with pytest.raises(ValidationError) as caught:
        spec(url)
    (error,) = caught.value.errors()
    assert error["loc"] == ("baseURL",)
    assert "never a provider" in error["msg"]


@pytest.mark.parametrize("url", ["ftp://example.com/", "file:///etc/passwd", "gopher://x/"])
def test_spec_refuses_schemes_other_than_http_and_https(url: str) -> None:
    with pytest.raises(ValidationError):
        spec(url)
    assert egress.static_problem(url) == "must be an http or https URL"


@pytest.mark.parametrize(
    "url",
    [
        "https://api.openai.com/v1",
        "http://127.0.0.1:9100/v1",  # static rules allow it; http is the allow-list's call
        "http://10.0.0.8:8000/v1",  # private networks (a vLLM in the cluster) are fine
        "https://[2001:db8::1]/v1",
        "https://169.255.0.1/",  # just outside 169.254.0.0/16
    ],
)
def test_spec_accepts_ordinary_hosts(url: str) -> None:
    assert spec(url).baseURL is not None


@pytest.mark.parametrize(
    ("url", "refused"),
    [
        ("https://api.openai.com/v1", False),
        ("http://127.0.0.1:9100/v1", False),
        ("http://VLLM.internal./v1", False),  # case and trailing dot do not matter
        ("http://vllm.internal.evil.example/v1", True),  # no suffix matching
        ("http://api.openai.com/v1", True),
        ("http://127.0.0.2/v1", True),
        ("http://169.254.169.254/", True),  # never, even if someone allow-listed it
    ],
)
def test_plain_http_only_for_allow_listed_hosts(url: str, refused: bool) -> None:
    allowed = (*ALLOWED, "169.254.169.254")
    assert (egress.policy_problem(url, allowed) is not None) is refused


def test_http_refusal_names_the_setting() -> None:
    problem = egress.policy_problem("http://api.example.com/v1", ())
    assert problem is not None and "AI_ALLOWED_HTTP_HOSTS" in problem and "https" in problem


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("https://api.openai.com/v1", "https://api.openai.com:443/other", True),
        ("https://api.openai.com/v1", "https://API.openai.com/v1", True),
        ("https://api.openai.com/v1", "http://api.openai.com/v1", False),
        ("https://api.openai.com/v1", "https://api.openai.com:8443/v1", False),
        ("https://api.openai.com/v1", "https://evil.example/v1", False),
        ("http://127.0.0.1:9100/v1", "http://127.0.0.1:9101/v1", False),
    ],
)
def test_origin_is_scheme_host_and_port(a: str, b: str, same: bool) -> None:
    assert (egress.origin(a) == egress.origin(b)) is same
    assert (spec(a).origin() == spec(b).origin()) is same


@pytest.mark.parametrize(
    ("address", "refused"),
    [
        ("169.254.169.254", True),
        ("169.254.10.1", True),
        ("fe80::abcd", True),
        ("fd00:ec2::254", True),
        ("::ffff:169.254.169.254", True),
        ("100.100.100.200", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("2606:4700::1111", False),
    ],
)
def test_refused_resolved_addresses(address: str, refused: bool) -> None:
    assert egress.refused_address(ipaddress.ip_address(address)) is refused


@pytest.mark.parametrize(
    ("url", "refused"),
    [
        ("http://169.254.169.254/latest", True),
        ("http://169.254.169.254.:80/", True),
        ("https://169.254.10.20/v1", True),
        ("https://[fe80::1]/v1", True),
        ("https://[FEBF::1]:8443/", True),
        ("https://[fd00:ec2::254]/", True),
        ("http://100.100.100.200", True),
        ("http://metadata.google.internal/computeMetadata/v1", True),
        ("http://Metadata.Goog./", True),
        ("http://user:pw@169.254.1.1/", True),
        ("https://api.openai.com/v1", False),
        ("http://127.0.0.1:9100/v1", False),
        ("https://169.2540.1.1/", False),
        ("https://metadata.google.internal.example.com/", False),
        ("https://[fec0::1]/", False),  # site-local, not link-local
        ("https://[2001:db8::169.254.169.254]/", False),
    ],
)
def test_the_crd_pattern_refuses_what_the_spec_refuses_when_written_literally(
    url: str, refused: bool
) -> None:
    # The CRD's CEL rule matches this pattern with RE2; Python's re agrees on its syntax.
    assert (re.fullmatch(REFUSED_URL_PATTERN, url) is not None) is refused
    assert (egress.static_problem(url) is not None) is refused
