"""Repository paths and the pinned tool versions from scripts/versions.env."""

from __future__ import annotations

import functools
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPTS_DIR = REPO_ROOT / "scripts"
# Git-ignored (.gitignore lists .cache/): extracted and built binaries live here.
CACHE_DIR = REPO_ROOT / ".cache"


@functools.cache
def versions() -> dict[str, str]:
    """Return the KEY=VALUE pins of scripts/versions.env (the single source of truth)."""
    pins: dict[str, str] = {}
    for raw in (SCRIPTS_DIR / "versions.env").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        pins[key.strip()] = value.strip().strip("\"'")
    return pins
