"""Reading bench/wrk.lua's report: statuses outside the expected ones are errors."""

from __future__ import annotations

import pytest

from bench.load import parse

REPORT = (
    "Running 2s test @ http://127.0.0.1:1/x\n"
    'WRK_JSON {"requests": 200, "duration_us": 2000000, "p50_us": 1500, "p90_us": 2500, '
    '"p99_us": 9000, "max_us": 12000, "connect_errors": 0, "read_errors": 0, '
    '"write_errors": 0, "timeouts": %d, "statuses": {%s}}\n'
)


@pytest.mark.parametrize(
    ("statuses", "timeouts", "ok", "errors"),
    [
        ('"200": 200', 0, (200,), 0),
        ('"304": 200', 0, (200,), 200),  # wrk itself counts a 3xx as success
        ('"304": 200', 0, (304,), 0),
        ('"200": 150, "429": 30, "503": 20', 0, (200,), 50),
        ('"201": 198', 2, (201,), 2),
    ],
)
def test_statuses_outside_the_expected_ones_and_timeouts_count_as_errors(
    statuses: str, timeouts: int, ok: tuple[int, ...], errors: int
) -> None:
    m = parse(REPORT % (timeouts, statuses), ok)
    assert m.errors == errors
    assert m.rps == 100.0
    assert (m.p50_ms, m.p99_ms) == (1.5, 9.0)


def test_a_run_where_nothing_answered_is_an_error() -> None:
    m = parse(REPORT.replace('"requests": 200', '"requests": 0') % (0, ""), (200,))
    assert m.errors == 1 and m.rps == 0
