"""Structured API: the Flask service and the shared core.

`create_app` is resolved lazily (PEP 562 module `__getattr__`): the operator role and
scripts import `app.config`, `app.services...` or `app.core...` without building the
whole Flask app graph (every blueprint, the AI providers) at import time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from app.factory import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from app.factory import create_app

        return create_app
    raise AttributeError(f"module 'app' has no attribute {name!r}")
