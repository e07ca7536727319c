"""The gateway's pure parts: Retry-After, backoff, SSE parsing, the breaker, estimates."""

from __future__ import annotations

import random

import pytest

from app.ai.breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker
from app.ai.history.records import redact
from app.ai.retry import backoff, parse_retry_after
from app.ai.sse import iter_events
from app.ai.tokens import estimate_text, merge_usage, reservation_for
from app.ai.types import ChatRequest, Message


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("3", 3.0),
        (" 0 ", 0.0),
        ("1.5", 1.5),
        ("-4", 0.0),
        ("Thu, 26 Nov 2026 00:00:10 GMT", 10.0),
        ("Thu, 26 Nov 2026 00:00:00 GMT", 0.0),
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_accepts_seconds_and_http_dates(
    header: str | None, expected: float | None
) -> None:
    now = 1795651200.0  # Thu, 26 Nov 2026 00:00:00 GMT
    assert parse_retry_after(header, now=now) == expected


def test_backoff_is_full_jitter_below_a_doubling_capped_ceiling() -> None:
    rng = random.Random(7)
    for attempt, ceiling in [(0, 0.5), (1, 1.0), (2, 2.0), (5, 8.0), (40, 8.0)]:
        waits = [backoff(attempt, base=0.5, cap=8.0, rng=rng) for _ in range(200)]
        assert all(0 <= w <= ceiling for w in waits)
        assert max(waits) > ceiling * 0.8  # spread over the whole range, not a constant


def test_sse_parsing_joins_data_lines_skips_comments_and_drops_an_unfinished_event() -> None:
    lines = [
        ": keep-alive",
        "event: message_start",
        'data: {"a":',
        "data: 1}",
        "",
        "data: [DONE]",
        "",
        'data: {"cut": ',  # the stream ends here, without the blank line
    ]
    assert list(iter_events(lines)) == [("message_start", '{"a":\n1}'), (None, "[DONE]")]


def test_the_breaker_opens_admits_one_probe_and_closes_or_reopens() -> None:
    now = [0.0]
    breaker = CircuitBreaker("p", failure_threshold=2, open_seconds=10, clock=lambda: now[0])
    breaker.failure()
    assert breaker.state == CLOSED and breaker.allow()
    breaker.failure()
    assert breaker.state == OPEN and not breaker.allow()
    assert breaker.retry_after() == 10
    now[0] = 10.0
    assert breaker.allow() and breaker.state == HALF_OPEN
    assert not breaker.allow()  # one probe at a time
    breaker.failure()
    assert breaker.state == OPEN
    now[0] = 20.0
    assert breaker.allow()
    breaker.success()
    assert breaker.state == CLOSED and breaker.allow() and breaker.allow()


def test_a_lost_probe_is_replaced_after_the_open_period() -> None:
    now = [0.0]
    breaker = CircuitBreaker("p", failure_threshold=1, open_seconds=5, clock=lambda: now[0])
    breaker.failure()
    now[0] = 5.0
    assert breaker.allow()  # the probe's caller never reports back
    now[0] = 9.0
    assert not breaker.allow()
    now[0] = 10.5
    assert breaker.allow()


def test_estimates_round_up_and_reserve_the_prompt_plus_max_tokens() -> None:
    request = ChatRequest("m", (Message("system", "be brief"), Message("user", "hello")), 100)
    assert estimate_text("") == 0 and estimate_text("abcde") == 2
    assert reservation_for(request) == (2 + 4) + (2 + 4) + 100
    usage = merge_usage(request, input_tokens=7, output_tokens=None, output_text="abcdefgh")
    assert (usage.input_tokens, usage.output_tokens, usage.estimated) == (7, 2, True)
    exact = merge_usage(request, input_tokens=7, output_tokens=3, output_text="ignored")
    assert not exact.estimated


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("reach me at ann.lee+ai@example.co.uk", "reach me at [email]"),
        ("call +44 20 7946 0958 now", "call [number] now"),
        ("use sk-proj-abcDEF123456 please", "use [secret] please"),
        ("Authorization: Bearer eyJhbGciOi.x.y", "Authorization: [secret]"),
        ("order 42 of 7 items", "order 42 of 7 items"),
    ],
)
def test_redaction_masks_secrets_emails_and_long_numbers_only(text: str, expected: str) -> None:
    assert redact(text) == expected
