"""JSON logs: one object per line, carrying request id (and trace id when tracing)."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any, Final

from opentelemetry import trace

from app.core.encoding import fast_json
from app.core.ids import REQUEST_ID
from app.settings import Settings

_RESERVED: Final = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}


def current_ids() -> tuple[str, str] | None:
    """Hex trace and span id of the active span, or None outside a recorded span."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


class RequestContextFilter(logging.Filter):
    """Copies the request id, and the trace and span ids of the active span, onto a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = REQUEST_ID.get()
        if not hasattr(record, "trace_id"):
            # W3C trace-context hex ids, as Grafana/Tempo expect to link logs to traces.
            ids = current_ids()
            record.trace_id, record.span_id = ids if ids else (None, None)
        return True


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object; extra fields are kept, never secrets."""

    # orjson (`fast_json`) and the timestamp's seconds part reused within the same
    # second: the access log writes a line per request, so this is on the hot path.

    def __init__(self) -> None:
        super().__init__()
        # (second, its text) in one attribute, so threads always read a matching pair.
        self._last: tuple[int, str] = (-1, "")

    def _timestamp(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        last = self._last
        if last[0] != second:
            last = self._last = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
        return f"{last[1]}.{int(record.msecs):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": self._timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RESERVED and value is not None and key[0] != "_":
                out[key] = value
        if record.exc_info:
            out["exc_info"] = self.formatException(record.exc_info)
        return fast_json(out, str).decode()


def configure_logging(settings: Settings) -> None:
    """Install one stderr handler on the root logger (idempotent across app instances)."""
    root = logging.getLogger()
    root.setLevel(settings.log_level.upper())
    for handler in root.handlers:
        if getattr(handler, "_structured_api", False):
            return
    handler = logging.StreamHandler(sys.stderr)
    handler._structured_api = True  # type: ignore[attr-defined]
    handler.addFilter(RequestContextFilter())
    if settings.log_json:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")
        )
    root.addHandler(handler)
