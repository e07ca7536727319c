"""The chart's `redis.sentinel` values: REDIS_URL and REDIS_SENTINEL_PASSWORD as rendered.

The URL the chart builds is parsed by the same code the pods run (app/settings/redis_url.py),
so a template that renders a URL the app would refuse fails here.
"""

from __future__ import annotations

from typing import Any

import pytest

from app.settings import Settings
from app.settings.redis_url import parse
from tests.chart.conftest import containers, env_of, find, one, render, template_text

HOSTS = "{sentinel-0.sentinel:26379,sentinel-1.sentinel,sentinel-2.sentinel:26380}"
SENTINEL = [
    "redis.sentinel.enabled=true",
    f"redis.sentinel.hosts={HOSTS}",
    "redis.sentinel.masterName=cache-ha",
    "redis.sentinel.database=2",
]
WORKLOADS = ("-api", "-worker", "-beat", "-operator")


def urls_secret(docs: list[dict[str, Any]]) -> dict[str, str]:
    """The chart's <fullname>-urls Secret, stringData."""
    data: dict[str, str] = one(docs, "Secret", "-urls")["stringData"]
    return data


def secret_ref(doc: dict[str, Any], name: str) -> tuple[str, str] | None:
    """(Secret, key) of env `name` in the workload's first container, or None."""
    ref = env_of(containers(doc)[0]).get(name)
    if ref is None:
        return None
    return ref["secretKeyRef"]["name"], ref["secretKeyRef"]["key"]


def test_sentinel_values_build_a_redis_sentinel_url_the_app_accepts() -> None:
    docs = render(set_values=[*SENTINEL, "redis.sentinel.password=p@ss:w/rd"])
    url = urls_secret(docs)["REDIS_URL"]
    assert url.startswith("redis+sentinel://:")
    target = parse(url)
    assert target.sentinels == (
        ("sentinel-0.sentinel", 26379),
        ("sentinel-1.sentinel", 26379),
        ("sentinel-2.sentinel", 26380),
    )
    assert (target.master, target.db, target.password) == ("cache-ha", 2, "p@ss:w/rd")
    assert Settings(app_env="test", redis_url=url).redis_url == url
    # No sentinel password configured: no such variable anywhere.
    for suffix in WORKLOADS:
        assert secret_ref(one(docs, "Deployment", suffix), "REDIS_SENTINEL_PASSWORD") is None


def test_sentinel_password_lives_in_the_urls_secret_and_reaches_every_workload() -> None:
    docs = render(set_values=[*SENTINEL, "redis.sentinel.sentinelPassword=s3ntinel"])
    secret = one(docs, "Secret", "-urls")
    assert secret["stringData"]["REDIS_SENTINEL_PASSWORD"] == "s3ntinel"
    for suffix in WORKLOADS:
        doc = one(docs, "Deployment", suffix)
        assert secret_ref(doc, "REDIS_SENTINEL_PASSWORD") == (
            secret["metadata"]["name"],
            "REDIS_SENTINEL_PASSWORD",
        )
        assert secret_ref(doc, "REDIS_URL") == (secret["metadata"]["name"], "REDIS_URL")
    # The password is a Secret value only: never in a ConfigMap or a plain env value.
    for doc in docs:
        if doc["kind"] == "ConfigMap":
            assert "s3ntinel" not in str(doc)
        if doc["kind"] in ("Deployment", "Job"):
            for container in containers(doc):
                assert "s3ntinel" not in str(container)


def test_an_existing_secret_holds_the_sentinel_password_and_the_operator_may_not_read_it() -> None:
    docs = render(
        set_values=[
            *SENTINEL,
            "redis.sentinel.existingSecret=redis-ha-auth",
            "redis.sentinel.existingSecretKey=sentinel-password",
            "redis.sentinel.sentinelPassword=ignored-when-existing",
        ]
    )
    assert "REDIS_SENTINEL_PASSWORD" not in urls_secret(docs)
    for suffix in WORKLOADS:
        ref = secret_ref(one(docs, "Deployment", suffix), "REDIS_SENTINEL_PASSWORD")
        assert ref == ("redis-ha-auth", "sentinel-password")
    operator = env_of(containers(one(docs, "Deployment", "-operator"))[0])
    assert "sapi/redis-ha-auth" in operator["OPERATOR_PROTECTED_SECRETS"].split(",")


def test_existing_redis_and_sentinel_secrets_leave_only_the_sentinel_password_to_the_chart() -> (
    None
):
    base = ["database.existingSecret=db", "redis.existingSecret=redis-url"]
    assert find(render(set_values=[*base, *SENTINEL]), "Secret", "-urls") == []
    docs = render(set_values=[*base, *SENTINEL, "redis.sentinel.sentinelPassword=s"])
    assert set(urls_secret(docs)) == {"REDIS_SENTINEL_PASSWORD"}
    refs = secret_ref(one(docs, "Deployment", "-api"), "REDIS_URL")
    assert refs == ("redis-url", "REDIS_URL")


def test_sentinel_disabled_keeps_redis_url_as_given() -> None:
    docs = render(set_values=["redis.url=redis://cache:6379/1"])
    assert urls_secret(docs)["REDIS_URL"] == "redis://cache:6379/1"
    assert secret_ref(one(docs, "Deployment", "-api"), "REDIS_SENTINEL_PASSWORD") is None


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (["redis.sentinel.enabled=true"], "redis.sentinel.hosts"),
        ([*SENTINEL, "redis.sentinel.hosts={bad host}"], "hosts"),
        ([*SENTINEL, "redis.sentinel.database=16"], "database"),
        (["redis.url=http://cache:6379"], "url"),
    ],
)
def test_wrong_sentinel_values_fail_the_render(values: list[str], message: str) -> None:
    result = template_text(set_values=values, check=False)
    assert result.returncode != 0
    assert message in result.stderr


def test_a_redis_sentinel_url_given_directly_is_accepted() -> None:
    url = "redis+sentinel://s-0:26379,s-1:26379/mymaster/0"
    escaped = url.replace(",", "\\,")  # --set splits values on unescaped commas
    docs = render(set_values=[f"redis.url={escaped}"])
    assert urls_secret(docs)["REDIS_URL"] == url


def test_the_urls_secret_checksum_rolls_pods_when_the_sentinel_password_changes() -> None:
    def checksum(password: str) -> str:
        docs = render(set_values=[*SENTINEL, f"redis.sentinel.sentinelPassword={password}"])
        pod = one(docs, "Deployment", "-api")["spec"]["template"]["metadata"]
        value: str = pod["annotations"]["checksum/urls"]
        return value

    assert checksum("one") != checksum("two")
