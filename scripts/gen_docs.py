"""Regenerate the generated parts of the docs (`make docs`); tests fail when they drift."""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.core.errors.codes import catalogue_markdown  # noqa: E402
from app.settings import settings_markdown  # noqa: E402

BEGIN, END = "<!-- settings:begin -->", "<!-- settings:end -->"


def readme_with_settings(readme: str) -> str:
    """README text with the settings table between its markers replaced."""
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.S)
    return pattern.sub(lambda _: f"{BEGIN}\n{settings_markdown()}{END}", readme)


def main() -> None:
    """Write docs/errors.md and the README settings table."""
    (ROOT / "docs" / "errors.md").write_text(catalogue_markdown(), encoding="utf-8")
    readme = ROOT / "README.md"
    readme.write_text(readme_with_settings(readme.read_text(encoding="utf-8")), encoding="utf-8")


if __name__ == "__main__":
    main()
