"""Write the CRDs generated from the spec models; a test fails when they drift.

`uv run python scripts/gen_crds.py` is the one CRD generator: `operator/crds/` (applied
by hand or by the tests) and `charts/structured-api/crds/` (installed by Helm) get
byte-identical files; `operator/rbac/` and docs/crds.md come from the same sources.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "operator")]

from sapi_operator.crd import rendered  # noqa: E402
from sapi_operator.crd_docs import crds_markdown  # noqa: E402
from sapi_operator.rbac import rendered as rendered_rbac  # noqa: E402

CRD_DIRS = (ROOT / "operator" / "crds", ROOT / "charts" / "structured-api" / "crds")
RBAC_DIR = ROOT / "operator" / "rbac"
DOCS = ROOT / "docs" / "crds.md"


def expected_files() -> dict[Path, str]:
    """Every generated file and its content."""
    files: dict[Path, str] = {}
    for directory in CRD_DIRS:
        for name, text in rendered().items():
            files[directory / name] = text
    for name, text in rendered_rbac().items():
        files[RBAC_DIR / name] = text
    files[DOCS] = crds_markdown()
    return files


def main() -> None:
    """Write the files that differ; list what changed."""
    for path, text in expected_files().items():
        if path.exists() and path.read_text(encoding="utf-8") == text:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
