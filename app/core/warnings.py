"""Structured warnings collected during one request and returned in the envelope."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from flask import has_request_context

from app.core.request_context import request_globals


class WarningLevel(StrEnum):
    """How much a client should care."""

    INFO = "INFO"
    WARN = "WARN"
    ERROR = "ERROR"


@dataclass(frozen=True, slots=True)
class ApiWarning:
    """One warning: a stable code, a human message, a level and optional context."""

    code: str
    message: str
    level: WarningLevel = WarningLevel.WARN
    context: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form used in the envelope."""
        out: dict[str, Any] = {"code": self.code, "message": self.message, "level": self.level}
        if self.context:
            out["context"] = self.context
        return out


class WarningCollector:
    """Per-request list of warnings; duplicates (same code and message) are kept once."""

    __slots__ = ("_items",)

    def __init__(self) -> None:
        self._items: list[ApiWarning] = []

    def add(
        self,
        code: str,
        message: str,
        level: WarningLevel = WarningLevel.WARN,
        **context: Any,
    ) -> None:
        """Record a warning for the current response."""
        warning = ApiWarning(code, message, level, context)
        if all((w.code, w.message) != (code, message) for w in self._items):
            self._items.append(warning)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def to_list(self) -> list[dict[str, Any]]:
        """All warnings in JSON form."""
        return [w.to_dict() for w in self._items]


def current_warnings() -> WarningCollector:
    """The collector of the request being served (a throwaway one outside requests)."""
    if not has_request_context():
        return WarningCollector()
    state = request_globals()
    collector: WarningCollector | None = state.get("warnings")
    if collector is None:
        collector = state.warnings = WarningCollector()
    return collector


def warn(code: str, message: str, level: WarningLevel = WarningLevel.WARN, **context: Any) -> None:
    """Add a warning to the current request's envelope."""
    current_warnings().add(code, message, level, **context)
