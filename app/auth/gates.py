"""Deferred reads: a stage hands Redis keys to the one round trip a later stage makes.

The identify stage (app/auth/identify.py) must read the revocation denylist for a
verified token; the rate-limit stage (app/ratelimit/stage.py), which runs next, calls
Redis anyway. Instead of a second round trip, identify defers its keys here; the
limiter reads them in its script call and passes the values back (`Gate.resolve`). When
the limiter does not run (a skipped path, no limiter), `resolve_pending_gate()` reads
them with the reader the limiter registered, or tells the gate Redis is unavailable.

This module is the seam both stages share (auth's, below the limiter's layer), so neither
imports the other.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from flask import Flask

from app.core.request_context import current_application, request_globals

#: `g` key of the pending gate.
GATE: Final = "_ratelimit_gate"
#: `app.extensions` key of the function reading keys for a pending gate.
READER: Final = "gate_reader"

#: Reads keys: their values in order, or None when the store cannot be reached.
Reader = Callable[[Sequence[str]], list[bytes | None] | None]
Resolve = Callable[[list[bytes | None] | None], None]


@dataclass(frozen=True, slots=True)
class Gate:
    """Keys an earlier stage needs read before anything is charged, and who to tell."""

    keys: tuple[str, ...]
    resolve: Resolve


def defer_gate(keys: Sequence[str], resolve: Resolve) -> None:
    """Let the next Redis call of the request read `keys` and pass their values on.

    `resolve(values)` may replace `g.caller` (a revoked token becomes anonymous);
    `resolve(None)` means Redis was unreachable. Every deferred gate is resolved before
    the view runs (`require_auth` calls `resolve_pending_gate` as a last resort).
    """
    setattr(request_globals(), GATE, Gate(tuple(keys), resolve))


def pending() -> bool:
    """True while the request has a gate nobody has resolved yet."""
    return GATE in request_globals()


def take_gate() -> Gate | None:
    """The request's pending gate (removed), for the stage that reads it."""
    gate: Gate | None = request_globals().pop(GATE, None)
    return gate


def register_reader(app: Flask, reader: Reader) -> None:
    """Install how `resolve_pending_gate` reads keys in `app` (the limiter's store)."""
    app.extensions[READER] = reader


def resolve_pending_gate() -> None:
    """Resolve a pending gate with a plain read (the limiter had nothing to check)."""
    gate = take_gate()
    if gate is None:
        return
    reader: Reader | None = current_application().extensions.get(READER)
    gate.resolve(reader(gate.keys) if reader is not None else None)
