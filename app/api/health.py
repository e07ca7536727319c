"""Kubernetes probes: `/livez` (the process) and `/readyz` (its dependencies)."""

from __future__ import annotations

from flask import Blueprint, Response
from pydantic import BaseModel

from app.core.errors import ErrorCode
from app.core.errors.handlers import error_response
from app.core.health import readiness
from app.core.openapi import operation
from app.core.responses import ok

bp = Blueprint("health", __name__)


class LiveStatus(BaseModel):
    """The process answers."""

    status: str


class DependencyStatus(BaseModel):
    """One dependency's readiness."""

    name: str
    ok: bool
    latency_ms: float
    error: str | None = None


class ReadyStatus(BaseModel):
    """All dependencies' readiness."""

    status: str
    checks: list[DependencyStatus]


@bp.get("/livez")
@operation("Liveness: the process is serving", tags=["probes"], response=LiveStatus)
def livez() -> Response:
    """Never touches a dependency: restarting the pod would not fix one."""
    return ok(LiveStatus(status="ok"))


@bp.get("/readyz")
@operation(
    "Readiness: PostgreSQL, Redis and the config snapshot",
    tags=["probes"],
    response=ReadyStatus,
    errors=[503],
)
def readyz() -> Response:
    """200 when every dependency answers; 503 naming the ones that do not."""
    results = readiness().run()
    checks = [DependencyStatus(**r.__dict__) for r in results]
    failing = [c.name for c in checks if not c.ok]
    if not failing:
        return ok(ReadyStatus(status="ok", checks=checks))
    return error_response(
        ErrorCode.SYS_DEPENDENCY_UNAVAILABLE,
        "Not ready: " + ", ".join(failing) + " unavailable",
        details={"failing": failing, "checks": [c.model_dump() for c in checks]},
        headers={"Retry-After": "1"},
    )
