"""`ApiVersion`: the lifecycle of one `MAJOR.MINOR` API version."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Self

from pydantic import AnyHttpUrl, Field, model_validator

from app.core.specs.common import Duration, SpecModel, VersionString


class Phase(StrEnum):
    """Where a version is in its life."""

    CURRENT = "Current"
    SUPPORTED = "Supported"
    DEPRECATED = "Deprecated"
    RETIRED = "Retired"


class AfterSunset(StrEnum):
    """What happens to requests after `sunsetAt`."""

    GONE = "Gone"
    SERVE = "Serve"


class Links(SpecModel):
    """Human-readable pages about the version's lifecycle."""

    deprecation: AnyHttpUrl | None = Field(default=None, description="Deprecation notice page")
    sunset: AnyHttpUrl | None = Field(default=None, description="Sunset / migration page")
    docs: AnyHttpUrl | None = Field(default=None, description="Documentation of this version")


class Brownout(SpecModel):
    """A scheduled window in which the version answers 410 before its sunset."""

    start: datetime = Field(description="When the window opens (RFC 3339)")
    duration: Duration = Field(description="How long it lasts, e.g. 1h")


class ApiVersionSpec(SpecModel):
    """Spec of an `ApiVersion` resource."""

    version: VersionString = Field(description='MAJOR.MINOR, e.g. "1.0"; served under /v1')
    phase: Phase = Field(default=Phase.SUPPORTED, description="Lifecycle phase")
    deprecatedAt: datetime | None = Field(
        default=None, description="Sent as `Deprecation: @<epoch>` (RFC 9745)"
    )
    sunsetAt: datetime | None = Field(
        default=None, description="Sent as `Sunset: <HTTP-date>` (RFC 8594)"
    )
    successor: VersionString | None = Field(
        default=None,
        description='Version clients should move to; sent as `Link: rel="successor-version"`',
    )
    links: Links = Field(default_factory=Links, description="Lifecycle pages")
    afterSunset: AfterSunset = Field(
        default=AfterSunset.GONE, description="Gone: 410 after sunset; Serve: keep serving"
    )
    brownouts: list[Brownout] = Field(
        default_factory=list, max_length=50, description="Scheduled 410 windows"
    )

    @model_validator(mode="after")
    def _check_dates(self) -> Self:
        if self.deprecatedAt and self.sunsetAt and self.sunsetAt < self.deprecatedAt:
            raise ValueError("sunsetAt must not be before deprecatedAt")
        if self.successor is not None and self.successor == self.version:
            raise ValueError("successor must differ from version")
        return self

    @property
    def major(self) -> int:
        """The URL prefix number (`/v{major}`)."""
        return int(self.version.split(".")[0])


CEL_RULES = [
    {
        "rule": "!has(self.deprecatedAt) || !has(self.sunsetAt) || "
        "timestamp(self.sunsetAt) >= timestamp(self.deprecatedAt)",
        "message": "sunsetAt must not be before deprecatedAt",
    },
    {
        "rule": "!has(self.successor) || self.successor != self.version",
        "message": "successor must differ from version",
    },
]
