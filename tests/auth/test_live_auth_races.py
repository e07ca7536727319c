"""Auth races against a real gunicorn (2 workers x 8 threads): truly parallel requests.

* an API-key revoke served by one worker wins over a cache fill paused on the other
  between its PostgreSQL read and its Redis write (`tests/auth/pause_fill.py`);
* concurrent refreshes of one refresh token all get the same successor: one session,
  one live chain; a replay after the grace window still revokes the family;
* parallel wrong passwords for one account admit exactly the (account, IP) limit of
  password checks, and the owner still logs in from another IP.
"""

from __future__ import annotations

import http.client
import json
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
import redis
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from tests.auth.conftest import new_password, unique_email
from tests.auth.pause_fill import ARMED, PAUSED, RELEASE
from tests.ratelimit.live import LiveApi, get, live_api
from tests.support.processes import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

ME = "/v1/auth/me"
REFRESH = "/v1/auth/refresh"
LOGIN = "/v1/auth/login"
PAIR_LIMIT = 5  # LOGIN_MAX_FAILURES_PER_ACCOUNT_IP of the server below
ACCOUNT_LIMIT = 8  # LOGIN_MAX_FAILURES_PER_ACCOUNT
ATTACKER_IP, OWNER_IP = "203.0.113.7", "198.51.100.9"  # RFC 5737 documentation addresses


@pytest.fixture(scope="module")
def api(
    database_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveApi]:
    """gunicorn, 2 workers x 8 threads, behind one trusted proxy (X-Forwarded-For)."""
    with live_api(
        database_url,
        redis_url,
        tmp_path_factory.mktemp("auth-races"),
        threads=8,
        wsgi="tests.auth.race_wsgi:application",
        TRUSTED_PROXIES="1",
        LOGIN_MAX_FAILURES_PER_ACCOUNT_IP=str(PAIR_LIMIT),
        LOGIN_MAX_FAILURES_PER_ACCOUNT=str(ACCOUNT_LIMIT),
        LOGIN_MAX_FAILURES_PER_IP="1000",
    ) as server:
        yield server


def bearer(token: str) -> dict[str, str]:
    """An Authorization header."""
    return {"Authorization": f"Bearer {token}"}


def _code(body: Any) -> str | None:
    return body["error"]["code"] if body and body.get("error") else None


def _account(api: LiveApi) -> tuple[str, str, dict[str, Any]]:
    """A registered account: email, password and a first login's tokens."""
    email, password = unique_email("race"), new_password()
    credentials = {"email": email, "password": password}
    assert httpx.post(api.url + "/v1/auth/register", json=credentials).status_code == 202
    login = httpx.post(api.url + LOGIN, json=credentials, headers={"X-Forwarded-For": OWNER_IP})
    assert login.status_code == 200, login.text
    return email, password, login.json()["data"]


def _delete(conn: http.client.HTTPConnection, path: str, headers: dict[str, str]) -> int:
    conn.request("DELETE", path, headers=headers)
    response = conn.getresponse()
    response.read()
    return response.status


def _in_parallel(n: int, call: Callable[[], httpx.Response]) -> list[httpx.Response]:
    """`n` calls released together from `n` threads, each on a new connection."""
    start = threading.Barrier(n)

    def one(_: int) -> httpx.Response:
        start.wait()
        return call()

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


def test_a_revoke_on_one_worker_wins_over_a_fill_paused_on_the_other(api: LiveApi) -> None:
    _, _, tokens = _account(api)
    owner = bearer(tokens["access_token"])
    created = httpx.post(
        api.url + "/v1/auth/api-keys",
        json={"name": "race", "scopes": ["profile:read"]},
        headers=owner,
    )
    assert created.status_code == 201, created.text
    key, key_id = created.json()["data"]["key"], created.json()["data"]["id"]
    (filler, conn_a), (_, conn_b) = sorted(api.pinned_connections().items())
    control = redis.Redis.from_url(api.settings.redis_url)
    control.delete(PAUSED, RELEASE)
    control.set(ARMED, b"1")

    with ThreadPoolExecutor(1) as pool:
        in_flight = pool.submit(get, conn_a, ME, {"X-API-Key": key})
        wait_for(lambda: control.get(PAUSED) is not None, timeout=15, what="the fill to pause")
        assert int(control.get(PAUSED) or 0) == filler  # paused after its read, on worker A
        revoked = _delete(conn_b, f"/v1/auth/api-keys/{key_id}", owner)
        control.rpush(RELEASE, b"1")
        status, _, body = in_flight.result(timeout=30)

    assert revoked == 200
    assert (status, _code(body)) == (401, "AUTH_TOKEN_REVOKED")
    for conn in (conn_a, conn_b):  # refused at once by both workers
        status, headers, body = get(conn, ME, {"X-API-Key": key})
        assert (status, _code(body)) == (401, "AUTH_TOKEN_REVOKED")
        assert 'error="invalid_token"' in headers["WWW-Authenticate"]
    conn_a.close()
    conn_b.close()


def _family(api: LiveApi, session_id: str) -> list[Any]:
    engine = create_engine(api.settings.database_url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return list(
                conn.execute(
                    text("SELECT used_at FROM auth_refresh_tokens WHERE session_id = :s"),
                    {"s": session_id},
                ).scalars()
            )
    finally:
        engine.dispose()


def _age_family(api: LiveApi, session_id: str, seconds: int) -> None:
    engine = create_engine(api.settings.database_url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "UPDATE auth_refresh_tokens SET used_at = used_at - make_interval(secs => :n) "
                    "WHERE session_id = :s"
                ),
                {"n": seconds, "s": session_id},
            )
    finally:
        engine.dispose()


def _refresh(api: LiveApi, token: str) -> httpx.Response:
    return httpx.post(
        api.url + REFRESH,
        json={"refresh_token": token},
        headers={"Connection": "close"},
        timeout=30,
    )


def test_concurrent_refreshes_of_one_token_share_one_successor(api: LiveApi) -> None:
    _, _, first = _account(api)

    results = _in_parallel(8, lambda: _refresh(api, first["refresh_token"]))

    assert [r.status_code for r in results] == [200] * 8, [r.text for r in results]
    pairs = [r.json()["data"] for r in results]
    assert len({p["refresh_token"] for p in pairs}) == 1  # the same successor for all
    assert {p["session_id"] for p in pairs} == {first["session_id"]}
    successor = pairs[0]["refresh_token"]
    for pair in pairs:  # every access token handed out belongs to the one session
        assert httpx.get(api.url + ME, headers=bearer(pair["access_token"])).status_code == 200
    listed = httpx.get(api.url + "/v1/auth/sessions", headers=bearer(pairs[0]["access_token"]))
    assert listed.json()["data"]["count"] == 1
    used = _family(api, first["session_id"])
    assert len(used) == 2 and sum(u is None for u in used) == 1  # one live chain

    third = _refresh(api, successor)
    assert third.status_code == 200
    newest = third.json()["data"]
    assert newest["refresh_token"] != successor
    assert _refresh(api, successor).json()["data"]["refresh_token"] == newest["refresh_token"]

    _age_family(api, first["session_id"], 3600)  # the grace window is long past
    reused = _refresh(api, first["refresh_token"])
    assert (reused.status_code, _code(reused.json())) == (401, "AUTH_TOKEN_REUSED")
    ended = _refresh(api, newest["refresh_token"])
    assert (ended.status_code, _code(ended.json())) == (401, "AUTH_TOKEN_REVOKED")
    me = httpx.get(api.url + ME, headers=bearer(newest["access_token"]))
    assert (me.status_code, _code(me.json())) == (401, "AUTH_TOKEN_REVOKED")


def test_parallel_wrong_passwords_get_at_most_the_limit_of_password_checks(
    api: LiveApi,
) -> None:
    email, password, _ = _account(api)
    attacker = {"X-Forwarded-For": ATTACKER_IP, "Connection": "close"}

    def guess() -> httpx.Response:
        body = {"email": email, "password": new_password()}
        return httpx.post(api.url + LOGIN, json=body, headers=attacker, timeout=60)

    results = _in_parallel(24, guess)

    statuses = Counter(r.status_code for r in results)
    # 401: a password was checked and was wrong; 429: refused before any check.
    assert statuses == {401: PAIR_LIMIT, 429: 24 - PAIR_LIMIT}, statuses
    refused = next(r for r in results if r.status_code == 429)
    assert 0 < int(refused.headers["Retry-After"]) <= 900
    assert _code(json.loads(refused.text)) == "RATE_LIMIT_EXCEEDED"
    owner = httpx.post(
        api.url + LOGIN,
        json={"email": email, "password": password},
        headers={"X-Forwarded-For": OWNER_IP},
    )
    assert owner.status_code == 200, owner.text
