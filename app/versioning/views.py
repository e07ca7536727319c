"""`GET /versions` and `GET /versions/{a}/changes-to/{b}` (public, docs/architecture.md)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response
from pydantic import BaseModel, Field

from app.config_store.extension import current_snapshot
from app.core.errors import ApiError, ErrorCode
from app.core.openapi import openapi_document, operation
from app.core.responses import ok
from app.core.specs import ApiVersionSpec, Phase
from app.versioning.changelog import changelog
from app.versioning.extension import changelog_path, served_versions
from app.versioning.lifecycle import default_phases, effective_phase, windows

bp = Blueprint("versions", __name__, url_prefix="/versions")
TAGS = ["versions"]


class BrownoutPublic(BaseModel):
    """A scheduled brownout window (410 `VERSION_BROWNOUT` while it lasts)."""

    start: datetime
    end: datetime


class VersionPublic(BaseModel):
    """One API version as clients see it now."""

    version: str
    path: str
    served: bool = Field(description="False for versions only the lifecycle store knows")
    phase: str = Field(description="Effective phase now: Current, Supported, Deprecated, Retired")
    declaredPhase: str
    deprecatedAt: datetime | None = None
    sunsetAt: datetime | None = None
    afterSunset: str | None = None
    successor: str | None = None
    brownouts: list[BrownoutPublic] = Field(description="Windows not yet over")
    links: dict[str, str]


class VersionsPublic(BaseModel):
    """Every version, newest first, and the generation of the config they come from."""

    data: list[VersionPublic]
    current: str | None
    generation: int


class Changelog(BaseModel):
    """Operations added, removed and changed between two versions (see docs/versioning.md)."""

    from_: str = Field(alias="from")
    to: str
    summary: dict[str, int]
    added: list[dict[str, Any]]
    removed: list[dict[str, Any]]
    changed: list[dict[str, Any]]


def _describe(version: str, spec: ApiVersionSpec | None, default: str, now: datetime) -> Any:
    major = int(version.split(".")[0])
    served = major in served_versions()
    links: dict[str, str] = {}
    if served:
        links["openapi"] = f"/v{major}/openapi.json"
    if spec is None:
        return VersionPublic(
            version=version,
            path=f"/v{major}",
            served=served,
            phase=default,
            declaredPhase=default,
            brownouts=[],
            links=links,
        )
    for rel in ("deprecation", "sunset", "docs"):
        if getattr(spec.links, rel):
            links[rel] = str(getattr(spec.links, rel))
    if spec.successor:
        links["changelog"] = changelog_path(version, spec.successor)
    return VersionPublic(
        version=version,
        path=f"/v{major}",
        served=served,
        phase=effective_phase(spec, now).value,
        declaredPhase=spec.phase.value,
        deprecatedAt=spec.deprecatedAt,
        sunsetAt=spec.sunsetAt,
        afterSunset=spec.afterSunset.value,
        successor=spec.successor,
        brownouts=[BrownoutPublic(start=w.start, end=w.end) for w in windows(spec) if w.end > now],
        links=links,
    )


@bp.get("")
@operation("Every API version: phase, dates, successor, links", tags=TAGS, response=VersionsPublic)
def list_versions() -> Response:
    """Served versions plus those only the store declares (e.g. a retired 0.9)."""
    snap = current_snapshot()
    served = served_versions()
    defaults = default_phases(served)
    now = datetime.now(UTC)
    majors = set(served) | {spec.major for spec in snap.api_versions.values()}
    rows = []
    for major in sorted(majors, reverse=True):
        spec = snap.api_version(major)
        version = served.get(major) or (spec.version if spec else f"{major}.0")
        default = defaults.get(major, Phase.SUPPORTED).value
        rows.append(_describe(version, spec, default, now))
    current = next((r.version for r in rows if r.served and r.phase == "Current"), None)
    return ok(VersionsPublic(data=rows, current=current, generation=snap.generation))


def _served(label: str) -> str:
    """`1.0`, `1` or `v1` -> the served `MAJOR.MINOR`; 404 `VERSION_UNKNOWN` otherwise."""
    text = label.lower().removeprefix("v")
    major = text.split(".")[0]
    served = served_versions()
    version = served.get(int(major)) if major.isdigit() and len(major) <= 3 else None
    if version is None or (text != major and text != version):
        raise ApiError(
            f"API version {label!r} is not served here.",
            code=ErrorCode.VERSION_UNKNOWN,
            details={"served": [served[m] for m in sorted(served)]},
        )
    return version


@bp.get("/<old>/changes-to/<new>")
@operation(
    "Migration help: operations added, changed and removed between two versions",
    tags=TAGS,
    response=Changelog,
    errors=[404],
)
def changes_to(old: str, new: str) -> Response:
    """Derived by diffing the two OpenAPI documents this code serves."""
    a, b = _served(old), _served(new)
    result = changelog(
        openapi_document(int(a.split(".")[0])),
        openapi_document(int(b.split(".")[0])),
        old_version=a,
        new_version=b,
    )
    return ok(result)
