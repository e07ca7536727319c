"""`redis+sentinel://` URLs: parsing, Celery's form, and clients that follow a real failover.

The failover tests run a primary, a replica and three sentinels from the dev stack's
redis-server binary (devstack.sentinel). A graceful `SENTINEL FAILOVER` keeps the old
primary alive as a replica (a connection left on it must move, READONLY or not); a
SIGKILL leaves connection errors until the sentinels promote the replica.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from devstack.sentinel import MASTER, SentinelGroup
from pydantic import ValidationError
from redis.exceptions import ConnectionError as RedisConnectionError

from app.cli_app import without_password
from app.core.redis_client import build_client
from app.core.tasks import init_app as init_celery
from app.hotstore.commands import ThreadCommands
from app.ratelimit.store import LimiterStore, StoreUnavailable
from app.ratelimit.store import build_client as limiter_client
from app.settings import Settings
from app.settings.redis_url import celery_redis, connect, parse

DATA_PASSWORD = "data-pass-0123"
SENTINEL_PASSWORD = "sentinel-pass-0123"


# --- the URL -------------------------------------------------------------------------------


def test_a_sentinel_url_names_every_sentinel_the_master_the_database_and_credentials() -> None:
    target = parse("redis+sentinel://app:p%40ss@s-0:26380,s-1,10.0.0.3:26379/cache-ha/4")
    assert target.sentinels == (("s-0", 26380), ("s-1", 26379), ("10.0.0.3", 26379))
    assert (target.master, target.db) == ("cache-ha", 4)
    assert (target.username, target.password) == ("app", "p@ss")
    assert "p@ss" not in repr(target)


def test_database_defaults_to_zero_and_credentials_to_none() -> None:
    target = parse("redis+sentinel://s-0/mymaster")
    assert (target.db, target.username, target.password) == (0, None, None)


@pytest.mark.parametrize(
    ("url", "part"),
    [
        ("redis+sentinel://:secret-pw@s-0:26379", "master name"),
        ("redis+sentinel://:secret-pw@s-0:26379/m/x", "database"),
        ("redis+sentinel://:secret-pw@s-0:port/m", "port"),
        ("redis+sentinel://:secret-pw@/m", "host"),
        ("redis+sentinel://:secret-pw@s-0/m/0?ssl=1", "query"),
        ("redis+sentinel://:secret-pw@s-0/m/0/extra", "master name"),
    ],
)
def test_a_wrong_url_is_refused_naming_the_part_never_the_password(url: str, part: str) -> None:
    with pytest.raises(ValidationError) as info:
        Settings(app_env="test", redis_url=url)
    assert part in str(info.value)
    assert "secret-pw" not in str(info.value)


def test_celery_gets_one_sentinel_url_per_node_and_the_master_in_transport_options() -> None:
    url = "redis+sentinel://:p%40ss@s-0:26379,s-1:26380/cache-ha/3"
    celery = celery_redis(url, sentinel_password="spw", socket_timeout=5)
    assert celery.url == "sentinel://:p%40ss@s-0:26379/3;sentinel://:p%40ss@s-1:26380/3"
    assert celery.transport_options == {
        "master_name": "cache-ha",
        "sentinel_kwargs": {"socket_timeout": 5, "socket_connect_timeout": 5, "password": "spw"},
    }
    assert "p%40ss" not in repr(celery) and "spw" not in repr(celery)
    plain = celery_redis("redis://r:6379/0")
    assert (plain.url, plain.transport_options, plain.sentinel) == ("redis://r:6379/0", {}, False)


def test_celery_runs_our_sentinel_transport_and_celerys_sentinel_backend() -> None:
    from flask import Flask

    settings = Settings(
        app_env="test",
        redis_url="redis+sentinel://:pw@s-0,s-1/cache-ha/2",
        redis_sentinel_password="spw",  # type: ignore[arg-type]
    )
    conf = init_celery(Flask("t"), settings).conf
    assert conf.broker_transport == "app.core.tasks.broker:SentinelTransport"
    assert conf.broker_url.startswith("sentinel://:pw@s-0:26379/2;")
    assert conf.result_backend.startswith("sentinel://:pw@s-0:26379/2;")
    for options in (conf.broker_transport_options, conf.result_backend_transport_options):
        assert options["master_name"] == "cache-ha"
        assert options["sentinel_kwargs"]["password"] == "spw"
        assert options["visibility_timeout"] == settings.celery_visibility_timeout


def test_messages_show_a_sentinel_url_without_its_password() -> None:
    url = "redis+sentinel://app:pw-123@s-0:26379,s-1:26379/m/0"
    assert without_password(url) == "redis+sentinel://app@s-0:26379,s-1:26379/m/0"
    assert without_password("redis://r:6379/0") == "redis://r:6379/0"


# --- real failovers ------------------------------------------------------------------------


@pytest.fixture
def ha(tmp_path: Path) -> Iterator[SentinelGroup]:
    """A primary, one replica, three sentinels, both kinds of password."""
    with SentinelGroup(
        tmp_path / "ha",
        replicas=1,
        sentinels=3,
        password=DATA_PASSWORD,
        sentinel_password=SENTINEL_PASSWORD,
    ) as group:
        yield group


def settings_for(ha: SentinelGroup) -> Settings:
    """Settings on `ha`."""
    return Settings(
        app_env="test",
        redis_url=ha.url,
        redis_sentinel_password=SENTINEL_PASSWORD,  # type: ignore[arg-type]
    )


def until_it_answers(call: object, timeout: float = 30.0) -> float:
    """Seconds until `call()` stops raising connection errors."""
    start = time.monotonic()
    while True:
        try:
            call()  # type: ignore[operator]
            return time.monotonic() - start
        except (RedisConnectionError, StoreUnavailable):
            if time.monotonic() - start > timeout:
                raise
            time.sleep(0.05)


def test_clients_and_thread_connections_follow_a_killed_primary(ha: SentinelGroup) -> None:
    client = build_client(settings_for(ha))
    command = ThreadCommands(client)
    client.set("k", "before")
    assert command("GET", "k") == b"before"
    old = ha.primary()
    old_address = (old.host, old.port)
    old.kill()
    with pytest.raises(RedisConnectionError):
        command("SET", "k", "during")  # nobody promoted yet: an error, not a hang
    promoted = ha.wait_for_new_master(old_address)
    until_it_answers(lambda: command("SET", "k", "after"))
    until_it_answers(lambda: client.set("k2", "after"))
    assert client.get("k") == b"after" and command("GET", "k2") == b"after"
    new = ha.primary()
    assert (new.host, new.port) != old_address and new.role() == "master"
    assert promoted < 10


def test_a_connection_left_on_a_demoted_primary_moves_to_the_new_one_on_readonly(
    ha: SentinelGroup,
) -> None:
    client = connect(
        ha.url, sentinel_password=SENTINEL_PASSWORD, socket_timeout=1, socket_connect_timeout=1
    )
    command = ThreadCommands(client)
    assert command("SET", "k", "1") == b"OK"
    old = ha.primary()
    old_address = (old.host, old.port)
    ha.sentinels[0].command("SENTINEL", "FAILOVER", MASTER)
    ha.wait_for_new_master(old_address)
    # The old primary is alive and becomes a replica. The thread's connection to it either
    # was closed by the demotion or answers the next write with READONLY, which the
    # Sentinel connection turns into a connection error: either way one retry reaches the
    # new master, and the write is never taken by (nor refused for good by) the replica.
    deadline = time.monotonic() + 30
    while old.role() != "slave":
        assert time.monotonic() < deadline, "the old primary was not demoted"
        time.sleep(0.05)
    until_it_answers(lambda: command("SET", "k", "2"))
    assert client.get("k") == b"2"
    assert old.role() == "slave"


SET_SCRIPT = "return redis.call('SET', KEYS[1], ARGV[1])"


def limiter_write(store: LimiterStore, value: str) -> object:
    """One write through the limiter's own path (its thread connection, its cooldown)."""
    sha = hashlib.sha1(SET_SCRIPT.encode()).hexdigest()
    return store.run_script(SET_SCRIPT, sha, ["limiter-key"], [value])


def test_the_limiter_fails_fast_during_the_switch_and_comes_back_by_itself(
    ha: SentinelGroup,
) -> None:
    store = LimiterStore(
        limiter_client(ha.url, timeout=0.2, sentinel_password=SENTINEL_PASSWORD), cooldown=0.2
    )
    assert limiter_write(store, "before") == b"OK"
    old = ha.primary()
    old.kill()
    start = time.monotonic()
    with pytest.raises(StoreUnavailable):
        limiter_write(store, "during")
    assert time.monotonic() - start < 2.0  # a refused connect and a sentinel lookup, no hang
    ha.wait_for_new_master((old.host, old.port))
    until_it_answers(lambda: limiter_write(store, "after"))
    assert build_client(settings_for(ha)).get("limiter-key") == b"after"


def test_a_wrong_sentinel_password_is_a_connection_error_without_the_password(
    ha: SentinelGroup,
) -> None:
    client = connect(ha.url, sentinel_password="wrong-sentinel-pw", socket_timeout=1)
    with pytest.raises(RedisConnectionError) as info:
        client.ping()
    assert "wrong-sentinel-pw" not in str(info.value) and DATA_PASSWORD not in str(info.value)
