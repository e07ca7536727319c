"""What the settings groups share: comma-separated lists from the environment."""

from __future__ import annotations

from typing import Any


def split_commas(value: Any) -> Any:
    """`a,b` -> ["a", "b"] (environment variables); lists pass through."""
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return value
