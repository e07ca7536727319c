"""The layers `make lint` keeps (pyproject.toml `[tool.importlinter]`, docs/architecture.md).

Each contract is shown to fail on a copy of the tree with one offending import added:
core importing a feature, a feature importing a higher one, an import cycle inside a
package, the operator importing Flask.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the packages and the contracts, importable ahead of the real ones."""
    target = tmp_path_factory.mktemp("layers")
    ignore = shutil.ignore_patterns("__pycache__", "static")
    shutil.copytree(ROOT / "app", target / "app", ignore=ignore)
    shutil.copytree(ROOT / "operator" / "sapi_operator", target / "sapi_operator", ignore=ignore)
    shutil.copy2(ROOT / "pyproject.toml", target / "pyproject.toml")
    return target


def lint(tree: Path) -> subprocess.CompletedProcess[str]:
    """`lint-imports` on `tree` (its copies shadow the installed packages)."""
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=tree,
        env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=300,
    )


def with_line(path: Path, line: str) -> str:
    """Append `line` to `path`; returns the original text to restore."""
    original = path.read_text()
    path.write_text(original + "\n" + line + "\n")
    return original


def test_the_contracts_hold_on_the_tree_as_it_is(tree: Path) -> None:
    done = lint(tree)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 kept, 0 broken" in done.stdout


OFFENCES = [
    pytest.param(
        "app/core/health.py", "from app.ai import gateway",
        "app.core is not allowed to import app.ai", id="core-imports-a-feature",
    ),
    pytest.param(
        "app/auth/caller.py", "from app.ratelimit import keys",
        "app.auth is not allowed to import app.ratelimit", id="lower-feature-imports-higher",
    ),
    pytest.param(
        "app/config_store/models.py", "from app.api import docs",
        "app.config_store is not allowed to import app.api", id="feature-imports-api",
    ),
    pytest.param(
        "app/auth/caller.py", "from app.auth import users",
        "No cycles are allowed in app.auth", id="cycle",
    ),
    pytest.param(
        "sapi_operator/kube.py", "import flask",
        "sapi_operator is not allowed to import flask", id="operator-flask",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("module", "line", "broken"), OFFENCES)
def test_one_offending_import_breaks_make_lint(
    tree: Path, module: str, line: str, broken: str
) -> None:
    path = tree / module
    original = with_line(path, line)
    try:
        done = lint(tree)
    finally:
        path.write_text(original)

    assert done.returncode != 0
    assert broken in done.stdout, done.stdout


def test_core_stays_infrastructure_sized_and_no_module_grows_past_400_lines() -> None:
    """The sizes docs/architecture.md promises: `app/core` under 4,000 lines (a feature
    that lands there has to move out), every module of `app/` at most 400."""
    modules = {
        p: len(p.read_text(encoding="utf-8").splitlines()) for p in (ROOT / "app").rglob("*.py")
    }
    core = sum(n for p, n in modules.items() if p.is_relative_to(ROOT / "app" / "core"))
    assert core < 4000, f"app/core has {core} lines"
    assert {str(p.relative_to(ROOT)): n for p, n in modules.items() if n > 400} == {}
