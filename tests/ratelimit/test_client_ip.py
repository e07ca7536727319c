"""Whose bucket an anonymous request fills: spoofed X-Forwarded-For, IPv6 networks, IPv4-mapped.

The default limit (no policy matches the probe routes) keys anonymous callers by client
IP; it is lowered to 3 per hour here so the fourth request from one client is refused.
"""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from pydantic import ValidationError

from app.core.client_ip import bucket
from app.settings import Settings

THINGS = "/v1/rl-probe/things"
LIMIT = 3


@pytest.fixture
def settings(settings: Settings, request: pytest.FixtureRequest) -> Settings:
    """A small anonymous default limit, plus whatever the test parametrizes."""
    update = {"rate_limit_default_requests": LIMIT, "rate_limit_default_window": "1h"}
    return settings.model_copy(update={**update, **getattr(request, "param", {})})


def get(app: Flask, *, addr: str, forwarded: str | None = None) -> int:
    """Status of one anonymous GET from TCP peer `addr`, with an X-Forwarded-For if given."""
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    kwargs: dict[str, Any] = {"environ_base": {"REMOTE_ADDR": addr}, "headers": headers}
    response = app.test_client().get(THINGS, **kwargs)
    assert response.status_code < 500, response.get_json()
    return response.status_code


def test_without_trusted_proxies_a_spoofed_forwarded_for_gets_no_fresh_bucket(
    rl_app: Flask,
) -> None:
    statuses = [get(rl_app, addr="198.51.100.7", forwarded=f"10.9.0.{n}") for n in range(LIMIT)]
    assert statuses == [200] * LIMIT

    refused = rl_app.test_client().get(
        THINGS,
        headers={"X-Forwarded-For": "10.9.0.250"},
        environ_base={"REMOTE_ADDR": "198.51.100.7"},
    )
    assert refused.status_code == 429
    assert refused.get_json()["error"]["code"] == "RATE_LIMIT_EXCEEDED"
    assert refused.get_json()["error"]["details"]["policy"] == "default"


@pytest.mark.parametrize("settings", [{"trusted_proxies": 1}], indirect=True)
def test_behind_one_trusted_proxy_the_forwarded_address_is_the_client(rl_app: Flask) -> None:
    # The other side of the test above: with a proxy we run, its hop names the client.
    assert [get(rl_app, addr="10.0.0.2", forwarded="203.0.113.5") for _ in range(LIMIT + 1)] == [
        200
    ] * LIMIT + [429]
    assert get(rl_app, addr="10.0.0.2", forwarded="203.0.113.6") == 200


def test_ipv6_addresses_in_one_64_share_a_bucket_and_other_64s_do_not(rl_app: Flask) -> None:
    same_64 = ["2001:db8:a:b::1", "2001:db8:a:b:1::2", "2001:db8:a:b:ffff:ffff:ffff:fffe"]
    assert [get(rl_app, addr=a) for a in same_64] == [200] * LIMIT

    assert get(rl_app, addr="2001:db8:a:b:dead:beef:0:1") == 429
    assert get(rl_app, addr="2001:db8:a:c::1") == 200  # the neighbouring /64
    assert get(rl_app, addr="2001:db8:a:c:ffff::9") == 200


@pytest.mark.parametrize("settings", [{"trusted_proxies": 1}], indirect=True)
def test_a_forwarded_ipv6_client_is_keyed_by_its_64_too(rl_app: Flask) -> None:
    statuses = [get(rl_app, addr="10.0.0.2", forwarded=f"2001:db8:5::{n}") for n in range(1, 5)]
    assert statuses == [200] * LIMIT + [429]


@pytest.mark.parametrize("settings", [{"ratelimit_ipv6_prefix": 128}], indirect=True)
def test_the_ipv6_prefix_is_configurable(rl_app: Flask) -> None:
    for addr in ("2001:db8:a:b::1", "2001:db8:a:b::2"):
        assert [get(rl_app, addr=addr) for _ in range(LIMIT + 1)] == [200] * LIMIT + [429]


def test_an_ipv4_mapped_ipv6_address_is_its_ipv4_address(rl_app: Flask) -> None:
    assert [get(rl_app, addr="::ffff:192.0.2.7") for _ in range(LIMIT)] == [200] * LIMIT
    assert get(rl_app, addr="192.0.2.7") == 429
    assert get(rl_app, addr="192.0.2.8") == 200  # IPv4 stays per address (/32)


@pytest.mark.parametrize(
    ("address", "prefix", "expected"),
    [
        ("192.0.2.1", 64, "192.0.2.1"),
        ("::ffff:192.0.2.1", 64, "192.0.2.1"),
        ("2001:db8:1:2:3:4:5:6", 64, "2001:db8:1:2::/64"),
        ("2001:db8:1:2:3:4:5:6", 48, "2001:db8:1::/48"),
        ("2001:db8:1:2:3:4:5:6", 128, "2001:db8:1:2:3:4:5:6"),
        ("fe80::1%eth0", 64, "fe80::/64"),
        (None, 64, "unknown"),
        ("", 64, "unknown"),
        ("not-an-ip", 64, "not-an-ip"),
    ],
)
def test_bucket_of_an_address(address: str | None, prefix: int, expected: str) -> None:
    assert bucket(address, prefix) == expected


@pytest.mark.parametrize("prefix", [31, 129])
def test_the_ipv6_prefix_setting_is_bounded(prefix: int) -> None:
    with pytest.raises(ValidationError, match="ratelimit_ipv6_prefix"):
        Settings(app_env="test", ratelimit_ipv6_prefix=prefix)
