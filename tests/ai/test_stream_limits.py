"""Streams cannot pin a worker's threads (docs/ai.md "Limits on a generation"): an overall
deadline, a per-caller concurrency cap, and a breaker that blames only the provider.

Real gunicorn (one gthread worker, so one breaker per provider) and the provider
simulator; each test uses providers and models of its own, so breakers do not mix.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final

import httpx
import pytest

from tests.ai.live import Events, LiveAI, live_ai, stream
from tests.ai.support import Sim, provider_spec
from tests.support.processes import wait_for

pytestmark = pytest.mark.slow

DEADLINE: Final = 3.0  # AI_STREAM_MAX_SECONDS of this module's gunicorn
CAP: Final = 2  # AI_MAX_CONCURRENT_PER_CALLER
BREAKER_FAILURES: Final = 2
MODELS: Final = ("m-deadline", "m-caller", "m-stall-first", "m-stall-mid", "m-slots")
LONG: Final = 1000  # max_tokens: 100 s of simulator output at 0.1 s a token


@pytest.fixture(scope="module")
def live(
    database_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory, _sim_a: Sim
) -> Iterator[LiveAI]:
    """gunicorn with a 3 s stream deadline, 2 generations per caller, and one provider
    (timeoutSeconds 1, no retries) per model of `MODELS`."""
    with live_ai(
        database_url,
        redis_url,
        tmp_path_factory.mktemp("stream-limits"),
        threads=8,
        AI_STREAM_MAX_SECONDS=str(DEADLINE),
        AI_MAX_CONCURRENT_PER_CALLER=str(CAP),
        AI_BREAKER_FAILURES=str(BREAKER_FAILURES),
        AI_BREAKER_OPEN_SECONDS="60",
        AI_REQUEST_DEADLINE="10",
        AI_RETRY_BASE_SECONDS="0.05",
        AI_ALLOWED_HTTP_HOSTS="127.0.0.1",  # the simulator is plain http
    ) as api:
        for model in MODELS:
            spec = provider_spec(
                _sim_a, models=(model,), secret=False, maxRetries=0, timeoutSeconds=1
            )
            api.put_provider(f"p-{model[2:]}", spec)
        yield api


def user() -> str:
    """A fresh caller (each has its own concurrency slots)."""
    return f"u-{uuid.uuid4().hex[:12]}"


def calls_for(sim: Sim, model: str) -> int:
    """Requests the simulator received for `model` since its last reset."""
    return sum(1 for r in sim.requests() if r["model"] == model)


def long_stream(live: LiveAI, who: str, model: str, **kwargs: Any) -> Events:
    """A stream asking for `LONG` tokens (the simulator must be told to pace them)."""
    body = {"prompt": "write a lot", "model": model, "max_tokens": LONG}
    return stream(live.url, live.token(who), body, **kwargs)


def test_a_stream_past_its_deadline_ends_with_a_timeout_event_and_a_history_row(
    live: LiveAI, sim: Sim
) -> None:
    sim.fault("slow_stream", seconds=0.1, model="m-deadline")
    who = user()

    got = long_stream(live, who, "m-deadline", read_for=15)

    assert got.status == 200
    assert got.events[0][0] == "start"
    assert got.last == "error", got.events[-3:]
    error = got.named("error")[0]
    assert (error["code"], error["reason"]) == ("AI_PROVIDER_TIMEOUT", "deadline")
    # Cut at the deadline, not 100 s later when the provider would have finished.
    assert DEADLINE - 0.3 <= got.seconds < DEADLINE + 2.5, got.seconds
    deltas = got.named("delta")
    assert len(deltas) >= 5
    wait_for(lambda: len(live.rows(who)) == 1, timeout=10, what="the stream's history row")
    row = live.rows(who)[0]
    assert str(row.id) == got.named("start")[0]["id"]
    assert (row.outcome, row.error_code, row.stream) == ("error", "AI_PROVIDER_TIMEOUT", True)
    assert row.attempts[-1] == {"provider": "p-deadline", "reason": "deadline"}
    # Nothing lost: the row has what the client got, and charges it.
    assert row.response_chars == len("".join(d["text"] for d in deltas))
    assert row.output_tokens >= len(deltas) and row.tokens_estimated
    assert live.running(who) == 0


def test_streams_cut_by_the_deadline_or_left_by_the_client_do_not_open_the_breaker(
    live: LiveAI, sim: Sim
) -> None:
    sim.fault("slow_stream", count=4, seconds=0.1, model="m-caller")
    callers = [user() for _ in range(4)]
    with ThreadPoolExecutor(4) as pool:
        cut = [pool.submit(long_stream, live, who, "m-caller") for who in callers[:2]]
        # start and one delta, then the client goes away
        left = [pool.submit(long_stream, live, w, "m-caller", stop_after=2) for w in callers[2:]]
        cut_events, left_events = [f.result() for f in cut], [f.result() for f in left]

    for got in cut_events:
        assert got.last == "error" and got.named("error")[0]["reason"] == "deadline", got.events
    for got in left_events:
        assert [name for name, _ in got.events] == ["start", "delta"]

    def ended() -> bool:
        rows = [r for who in callers[2:] for r in live.rows(who)]
        return len(rows) == 2 and {r.outcome for r in rows} == {"cancelled"}

    wait_for(ended, timeout=10, what="the server to notice both clients left")
    # Four endings that were not the provider's doing, twice AI_BREAKER_FAILURES: had
    # they counted, the breaker would be open and this call refused without a request.
    before = calls_for(sim, "m-caller")
    after_all = stream(live.url, live.token(user()), {"prompt": "a b c", "model": "m-caller"})
    assert after_all.last == "done", after_all.body or after_all.events
    assert after_all.named("start")[0]["attempts"] == []
    assert calls_for(sim, "m-caller") == before + 1


@pytest.mark.parametrize(
    ("model", "fault"),
    [
        ("m-stall-first", {"kind": "hang"}),  # nothing at all, not even headers
        ("m-stall-mid", {"kind": "stall", "after": 2}),  # two chunks, then silence
    ],
    ids=["before-the-first-byte", "mid-stream"],
)
def test_a_provider_that_stalls_opens_its_breaker(
    live: LiveAI, sim: Sim, model: str, fault: dict[str, Any]
) -> None:
    sim.fault(count=BREAKER_FAILURES, seconds=30, model=model, **fault)
    body = {"prompt": "a b c d e f", "model": model}

    for _ in range(BREAKER_FAILURES):
        got = stream(live.url, live.token(user()), body, read_for=10)
        if fault["kind"] == "hang":
            assert got.status == 504 and got.body is not None
            assert got.body["error"]["code"] == "AI_PROVIDER_TIMEOUT"
        else:
            assert got.last == "error", got.events
            assert got.named("error")[0]["reason"] == "timeout"  # its own timeoutSeconds
            assert len(got.named("delta")) == 2

    before = calls_for(sim, model)
    refused = stream(live.url, live.token(user()), body)
    assert refused.status == 503 and refused.body is not None
    assert refused.body["error"]["code"] == "AI_PROVIDER_UNAVAILABLE"
    assert refused.body["error"]["details"]["attempts"] == [
        {"provider": f"p-{model[2:]}", "reason": "breaker_open"}
    ]
    assert calls_for(sim, model) == before  # the breaker answered, not the provider


def generate(live: LiveAI, who: str, body: dict[str, Any]) -> httpx.Response:
    """A JSON generate."""
    return httpx.post(f"{live.url}/v1/ai/generate", json=body, headers=live.token(who), timeout=15)


def test_one_caller_past_its_cap_gets_429_with_retry_after_while_another_gets_through(
    live: LiveAI, sim: Sim
) -> None:
    sim.fault("slow_stream", count=CAP + 1, seconds=0.1, model="m-slots")
    greedy, other = user(), user()
    with ThreadPoolExecutor(CAP) as pool:
        held = [pool.submit(long_stream, live, greedy, "m-slots") for _ in range(CAP)]
        wait_for(lambda: live.running(greedy) == CAP, timeout=5, what="both streams running")

        one_more = long_stream(live, greedy, "m-slots")
        json_call = generate(live, greedy, {"prompt": "x", "model": "m-slots"})
        elsewhere = long_stream(live, other, "m-slots", stop_after=2)
        assert live.running(greedy) == CAP  # the refusals took nothing
        for future in held:
            future.result()

    for refused in (one_more.status, one_more.headers), (json_call.status_code, json_call.headers):
        status, headers = refused
        assert status == 429 and headers is not None and headers["Retry-After"] == "1"
    for envelope in (one_more.body, json_call.json()):
        assert envelope is not None and envelope["success"] is False
        assert envelope["error"]["code"] == "RATE_CONCURRENCY_LIMIT"
        assert envelope["error"]["details"] == {"limit": CAP, "running": CAP, "scope": "caller"}
        assert envelope["meta"]["request_id"]
    assert [name for name, _ in elsewhere.events] == ["start", "delta"]


def test_slots_come_back_when_streams_finish_and_when_clients_leave(live: LiveAI, sim: Sim) -> None:
    who = user()
    body = {"prompt": "short answer", "model": "m-slots"}
    with ThreadPoolExecutor(CAP) as pool:
        finished = list(pool.map(lambda _: stream(live.url, live.token(who), body), range(CAP)))
    assert [got.last for got in finished] == ["done"] * CAP
    wait_for(lambda: live.running(who) == 0, timeout=2, what="slots of finished streams")

    def hold_all(_: int) -> Events:
        return long_stream(live, who, "m-slots", stop_after=2)

    sim.fault("slow_stream", count=CAP, seconds=0.1, model="m-slots")
    with ThreadPoolExecutor(CAP) as pool:
        left = list(pool.map(hold_all, range(CAP)))
    assert [[name for name, _ in got.events] for got in left] == [["start", "delta"]] * CAP
    took = wait_for(lambda: live.running(who) == 0, timeout=5, what="slots of clients gone")
    assert took < 2  # noticed at the next chunk (0.1 s apart), not at the deadline (3 s)

    # Leaked slots would refuse these: the caller has its whole allowance again.
    sim.fault("slow_stream", count=CAP, seconds=0.1, model="m-slots")
    with ThreadPoolExecutor(CAP) as pool:
        again = [pool.submit(long_stream, live, who, "m-slots") for _ in range(CAP)]
        wait_for(lambda: live.running(who) == CAP, timeout=5, what="all slots held again")
    assert [f.result().status for f in again] == [200] * CAP
