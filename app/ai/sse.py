"""Server-sent events: parse a provider's stream, format our own (WHATWG HTML, 9.2).

Parsing follows the spec's rules that matter for LLM streams: `data:` lines of one
event are joined with newlines, a blank line dispatches, lines starting with `:` are
comments (keep-alives), and one optional space after the colon is dropped.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any


def iter_events(lines: Iterable[str]) -> Iterator[tuple[str | None, str]]:
    """Yield `(event name or None, data)` for each dispatched event."""
    name: str | None = None
    data: list[str] = []
    for raw in lines:
        line = raw.rstrip("\r\n")
        if not line:
            if data:
                yield name, "\n".join(data)
            name, data = None, []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "data":
            data.append(value)
        elif field == "event":
            name = value
    # An event not closed by a blank line when the stream ends is discarded (the spec's
    # rule): a cut stream then reads as truncated instead of as one malformed event.


def format_event(event: str, payload: Any) -> bytes:
    """One event of our own SSE stream (`event:` name and one JSON `data:` line)."""
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    return f"event: {event}\ndata: {body}\n\n".encode()
