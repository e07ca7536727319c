"""The limiter on a real Redis Cluster (3 primaries, 3 replicas) behind two gunicorn workers.

Same accuracy as on one Redis (test_accuracy.py): a shared budget admits exactly N
across both workers; a request whose limits live in two slots (a `global` rule beside a
per-user rule, app/ratelimit/slots.py) never admits more than either allows. Then the
primary serving the budget is SIGKILLed: its replica is promoted and the limits keep
being enforced, having lost at most the admissions of the last `LOSS_WINDOW_S` before
the kill (asynchronous replication; docs/operations.md, "Redis Cluster primary lost").
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from devstack.redis_cluster import RedisClusterGroup

from app.hotstore.slots import tag
from tests.ratelimit.live import LiveApi, live_api
from tests.ratelimit.test_accuracy import enforce_everywhere, global_policy

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

CLIENTS = 32
#: Admissions a killed primary may take with it: those of its last second (docs).
LOSS_WINDOW_S = 1.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterGroup]:
    """A fresh 3 x 2 Redis Cluster with a 1 s node timeout."""
    with RedisClusterGroup(tmp_path_factory.mktemp("cluster"), node_timeout_ms=1000) as group:
        yield group


@pytest.fixture(scope="module")
def api(
    cluster: RedisClusterGroup,
    database_url: str,
    redis_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[LiveApi]:
    """gunicorn, 2 workers x 4 threads, its hot path on the Cluster."""
    work = tmp_path_factory.mktemp("cluster-api")
    with live_api(database_url, redis_url, work, REDIS_CLUSTER_NODES=cluster.seeds) as server:
        yield server


def burst(
    api: LiveApi, path: str, headers: list[dict[str, str]], per_client: int
) -> list[tuple[int, int]]:
    """`CLIENTS` threads released together, each sending `per_client` requests on new
    connections (so both workers serve them), cycling through `headers`: (which, status)."""
    start = threading.Barrier(CLIENTS)

    def client(i: int) -> list[tuple[int, int]]:
        start.wait()
        out = []
        for j in range(per_client):
            which = (i + j) % len(headers)
            h = {"Connection": "close", **headers[which]}
            out.append((which, httpx.get(api.url + path, headers=h, timeout=30).status_code))
        return out

    with ThreadPoolExecutor(CLIENTS) as pool:
        return [x for batch in pool.map(client, range(CLIENTS)) for x in batch]


def test_a_shared_budget_on_the_cluster_admits_exactly_n_across_two_workers(
    api: LiveApi,
) -> None:
    n, path = 50, "/.well-known/jwks.json"
    enforce_everywhere(api, "cluster-burst", global_policy(path, {"requests": n, "window": "1h"}))
    statuses = Counter(s for _, s in burst(api, path, [{}], per_client=4))
    assert statuses == {200: n, 429: CLIENTS * 4 - n}


def test_limits_in_two_slots_never_admit_more_than_either_allows(api: LiveApi) -> None:
    # A global budget of 30 and 10 per user for 4 users: the keys live in five slots, so
    # each request is consumed per slot and refunded where another slot refused.
    path, users = "/versions", [f"cluster-user-{i}" for i in range(4)]
    spec: dict[str, Any] = {
        "mode": "Enforce",
        "rules": [
            {"name": "all", "key": "global", "match": {"paths": [path]},
             "limits": [{"requests": 30, "window": "1h"}]},
            {"name": "each", "key": "user", "match": {"paths": [path]},
             "limits": [{"requests": 10, "window": "1h"}]},
        ],
    }  # fmt: skip
    enforce_everywhere(api, "cluster-split", spec)
    auth = [api.token(u, ["user"]) for u in users]
    first = burst(api, path, auth, per_client=6)
    assert {s for _, s in first} <= {200, 429}
    per_user = Counter(which for which, s in first if s == 200)
    assert sum(per_user.values()) <= 30
    # A refund lands after the refusal it caused: ask again, user by user, until every
    # user is refused; then exactly the global budget was admitted.
    with httpx.Client(base_url=api.url, timeout=30) as http:
        for _ in range(40):
            statuses = [http.get(path, headers=h).status_code for h in auth]
            per_user.update(i for i, s in enumerate(statuses) if s == 200)
            if set(statuses) == {429}:
                break
    assert sum(per_user.values()) == 30
    assert max(per_user.values()) <= 10


@pytest.mark.chaos
def test_limits_stay_enforced_after_a_primary_dies_losing_at_most_its_last_second(
    api: LiveApi, cluster: RedisClusterGroup
) -> None:
    n, before, path = 60, 30, "/v1/openapi.json"
    policy = global_policy(path, {"requests": n, "window": "1h"})
    policy["failureMode"] = "Closed"  # no admissions uncounted while the slot has no primary
    enforce_everywhere(api, "cluster-failover", policy)
    key = f"sapi:rl:{tag('g')}:cluster-failover:all:x"
    victim = cluster.primary_for(key)
    replica = cluster.replica_of(victim)
    admitted_at: list[float] = []
    with httpx.Client(base_url=api.url, timeout=30) as http:
        while len(admitted_at) < before:
            response = http.get(path, headers={"Connection": "close"})
            assert response.status_code == 200, response.text
            admitted_at.append(time.monotonic())
        victim.kill()
        killed = time.monotonic()
        promoted_after = cluster.wait_promoted(replica)
        statuses: Counter[int] = Counter()
        first_answer: float | None = None
        refused_in_a_row = 0
        while refused_in_a_row < 10 and time.monotonic() - killed < 60:
            status = http.get(path, headers={"Connection": "close"}).status_code
            statuses[status] += 1
            if status != 503 and first_answer is None:
                first_answer = time.monotonic() - killed
            refused_in_a_row = refused_in_a_row + 1 if status == 429 else 0
            if status == 503:
                time.sleep(0.05)
    recent = sum(1 for t in admitted_at if killed - t <= LOSS_WINDOW_S)
    total = before + statuses[200]
    assert set(statuses) <= {200, 429, 503}
    assert refused_in_a_row == 10, statuses  # enforced again after the switch
    assert n <= total <= n + recent, (total, recent, statuses)
    assert first_answer is not None and first_answer <= promoted_after + 5.0
