"""What an `ApiVersion` spec means for one request at one instant (pure, no Flask).

* `Deprecation: @<epoch>` (RFC 9745 section 2, a Structured Field Date) whenever
  `deprecatedAt` is set, also before that date: the RFC allows announcing a future one.
* `Sunset: <HTTP-date>` (RFC 8594 section 3, IMF-fixdate of RFC 9110 section 5.6.7).
* `Link`: `rel="deprecation"` (RFC 9745 section 3), `rel="sunset"` (RFC 8594 section 6)
  and `rel="successor-version"` (RFC 5829).
* 410 `VERSION_RETIRED` when the phase is Retired, or after `sunsetAt` with
  `afterSunset: Gone`; 410 `VERSION_BROWNOUT` inside a brownout window, with
  `Retry-After` at the window's end.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

from app.core.errors import ErrorCode
from app.core.specs import ApiVersionSpec, Phase, duration_seconds
from app.core.specs.api_version import AfterSunset


@dataclass(frozen=True, slots=True)
class Window:
    """One brownout window, resolved to instants."""

    start: datetime
    end: datetime


@dataclass(frozen=True, slots=True)
class Lifecycle:
    """The outcome for one version at one instant."""

    version: str
    phase: Phase  # effective phase (what clients experience now)
    declared: Phase
    gone: ErrorCode | None = None
    retry_after: int | None = None
    deprecated: bool = False
    deprecated_at: datetime | None = None
    sunset_at: datetime | None = None
    successor: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    links: tuple[str, ...] = ()


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def http_date(value: datetime) -> str:
    """IMF-fixdate, e.g. `Thu, 01 Apr 2027 00:00:00 GMT` (RFC 9110 section 5.6.7)."""
    return format_datetime(_utc(value), usegmt=True)


def structured_date(value: datetime) -> str:
    """RFC 9651 Date (`@` + integer epoch seconds), as RFC 9745 requires."""
    return f"@{math.floor(_utc(value).timestamp())}"


def windows(spec: ApiVersionSpec) -> list[Window]:
    """The spec's brownout windows as start/end instants, in start order."""
    out = [
        Window(_utc(b.start), _utc(b.start) + timedelta(seconds=duration_seconds(b.duration)))
        for b in spec.brownouts
    ]
    return sorted(out, key=lambda w: w.start)


def effective_phase(spec: ApiVersionSpec, now: datetime) -> Phase:
    """The phase clients experience now: dates move a version along on their own."""
    if spec.phase is Phase.RETIRED:
        return Phase.RETIRED
    if spec.sunsetAt and now >= _utc(spec.sunsetAt) and spec.afterSunset is AfterSunset.GONE:
        return Phase.RETIRED
    if spec.phase is Phase.DEPRECATED or (spec.deprecatedAt and now >= _utc(spec.deprecatedAt)):
        return Phase.DEPRECATED
    return spec.phase


def evaluate(
    spec: ApiVersionSpec | None,
    *,
    version: str,
    default_phase: Phase,
    now: datetime,
    successor_link: str | None = None,
) -> Lifecycle:
    """Headers, warning flag and 410 decision for `version` (spec None = undeclared)."""
    if spec is None:
        return Lifecycle(version, default_phase, default_phase, headers={"API-Version": version})
    phase = effective_phase(spec, now)
    headers = {"API-Version": version}
    links: list[str] = []
    if spec.deprecatedAt:
        headers["Deprecation"] = structured_date(spec.deprecatedAt)
    if spec.sunsetAt:
        headers["Sunset"] = http_date(spec.sunsetAt)
    if spec.links.deprecation:
        links.append(f'<{spec.links.deprecation}>; rel="deprecation"; type="text/html"')
    if spec.links.sunset:
        links.append(f'<{spec.links.sunset}>; rel="sunset"; type="text/html"')
    if spec.successor and successor_link:
        links.append(f'<{successor_link}>; rel="successor-version"')
    gone: ErrorCode | None = None
    retry_after: int | None = None
    if phase is Phase.RETIRED:
        gone = ErrorCode.VERSION_RETIRED
    else:
        for window in windows(spec):
            if window.start <= now < window.end:
                gone = ErrorCode.VERSION_BROWNOUT
                retry_after = max(1, math.ceil((window.end - now).total_seconds()))
                break
    return Lifecycle(
        version=version,
        phase=phase,
        declared=spec.phase,
        gone=gone,
        retry_after=retry_after,
        deprecated=phase is Phase.DEPRECATED,
        deprecated_at=_utc(spec.deprecatedAt) if spec.deprecatedAt else None,
        sunset_at=_utc(spec.sunsetAt) if spec.sunsetAt else None,
        successor=spec.successor,
        headers=headers,
        links=tuple(links),
    )


def default_phases(served: dict[int, str]) -> dict[int, Phase]:
    """Versions the store does not mention: the newest is Current, older ones Supported."""
    newest = max(served) if served else None
    return {m: Phase.CURRENT if m == newest else Phase.SUPPORTED for m in served}
