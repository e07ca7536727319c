"""Lifecycle rules of one `ApiVersion` at one instant, without HTTP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from app.core.errors import ErrorCode
from app.core.specs import ApiVersionSpec, Phase
from app.versioning.lifecycle import (
    default_phases,
    effective_phase,
    evaluate,
    http_date,
    structured_date,
)

NOW = datetime(2027, 1, 15, 12, 0, tzinfo=UTC)
PAST = NOW - timedelta(days=30)
FUTURE = NOW + timedelta(days=30)


def spec(**fields: Any) -> ApiVersionSpec:
    """An ApiVersion spec for /v1 with `fields`."""
    return ApiVersionSpec.model_validate({"version": "1.0", **fields})


def test_deprecation_is_an_rfc_9745_structured_date_and_sunset_an_http_date() -> None:
    assert structured_date(datetime(2026, 10, 1, tzinfo=UTC)) == "@1790812800"
    assert http_date(datetime(2027, 4, 1, tzinfo=UTC)) == "Thu, 01 Apr 2027 00:00:00 GMT"


@pytest.mark.parametrize(
    ("fields", "phase"),
    [
        ({}, Phase.SUPPORTED),
        ({"phase": "Current"}, Phase.CURRENT),
        ({"phase": "Deprecated"}, Phase.DEPRECATED),
        ({"phase": "Retired"}, Phase.RETIRED),
        ({"deprecatedAt": PAST}, Phase.DEPRECATED),
        ({"deprecatedAt": FUTURE}, Phase.SUPPORTED),
        ({"deprecatedAt": PAST, "sunsetAt": PAST + timedelta(days=1)}, Phase.RETIRED),
        (
            {"deprecatedAt": PAST, "sunsetAt": PAST + timedelta(days=1), "afterSunset": "Serve"},
            Phase.DEPRECATED,
        ),
        ({"sunsetAt": FUTURE}, Phase.SUPPORTED),
    ],
)
def test_dates_move_a_version_along_its_lifecycle(fields: dict[str, Any], phase: Phase) -> None:
    assert effective_phase(spec(**fields), NOW) is phase


def test_a_deprecated_version_carries_every_lifecycle_header() -> None:
    life = evaluate(
        spec(
            phase="Deprecated",
            deprecatedAt=PAST,
            sunsetAt=FUTURE,
            successor="2.0",
            links={"deprecation": "https://example.com/dep", "sunset": "https://example.com/sun"},
        ),
        version="1.0",
        default_phase=Phase.SUPPORTED,
        now=NOW,
        successor_link="/v2/notes",
    )
    assert life.deprecated and life.gone is None
    assert life.headers == {
        "API-Version": "1.0",
        "Deprecation": structured_date(PAST),
        "Sunset": http_date(FUTURE),
    }
    assert life.links == (
        '<https://example.com/dep>; rel="deprecation"; type="text/html"',
        '<https://example.com/sun>; rel="sunset"; type="text/html"',
        '</v2/notes>; rel="successor-version"',
    )


def test_a_future_deprecation_date_is_announced_before_it_applies() -> None:
    life = evaluate(
        spec(deprecatedAt=FUTURE), version="1.0", default_phase=Phase.SUPPORTED, now=NOW
    )
    assert life.headers["Deprecation"] == structured_date(FUTURE) and not life.deprecated


@pytest.mark.parametrize(
    ("fields", "gone"),
    [
        ({"phase": "Retired"}, ErrorCode.VERSION_RETIRED),
        ({"sunsetAt": PAST}, ErrorCode.VERSION_RETIRED),
        ({"sunsetAt": PAST, "afterSunset": "Serve"}, None),
        (
            {"brownouts": [{"start": NOW - timedelta(minutes=10), "duration": "1h"}]},
            ErrorCode.VERSION_BROWNOUT,
        ),
        ({"brownouts": [{"start": NOW - timedelta(hours=2), "duration": "1h"}]}, None),
        ({"brownouts": [{"start": NOW + timedelta(minutes=1), "duration": "1h"}]}, None),
    ],
)
def test_retirement_and_brownouts_answer_410(
    fields: dict[str, Any], gone: ErrorCode | None
) -> None:
    life = evaluate(spec(**fields), version="1.0", default_phase=Phase.SUPPORTED, now=NOW)
    assert life.gone is gone


def test_a_brownout_says_when_to_retry() -> None:
    window = {"start": NOW - timedelta(minutes=10), "duration": "1h"}
    life = evaluate(spec(brownouts=[window]), version="1.0", default_phase=Phase.CURRENT, now=NOW)
    assert life.retry_after == 50 * 60


def test_versions_the_store_does_not_mention_are_current_if_newest_else_supported() -> None:
    assert default_phases({1: "1.0", 2: "2.0"}) == {1: Phase.SUPPORTED, 2: Phase.CURRENT}
    life = evaluate(None, version="2.0", default_phase=Phase.CURRENT, now=NOW)
    assert life.headers == {"API-Version": "2.0"} and life.gone is None and not life.links
