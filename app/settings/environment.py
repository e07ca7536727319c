"""Where a process runs: only `development` and `test` may invent secrets."""

from __future__ import annotations

from enum import StrEnum
from typing import Final

#: Values a secret may never have outside development.
PLACEHOLDERS: Final = frozenset({"", "changeme", "change-me", "secret", "dev", "development"})


class Environment(StrEnum):
    """Where the process runs; only `development` and `test` may invent secrets."""

    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"
