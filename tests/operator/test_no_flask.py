"""The operator is Flask-free: every module of `sapi_operator` imports with Flask absent.

`make lint` checks the same statically (import-linter's forbidden contract in
pyproject.toml); this proves it at run time, where a lazy import would also show.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = textwrap.dedent(
    """
    import importlib, pkgutil, sys
    for name in ("flask", "werkzeug"):
        sys.modules[name] = None  # `import flask` now raises ImportError
    import sapi_operator
    names = [m.name for m in pkgutil.walk_packages(sapi_operator.__path__, "sapi_operator.")]
    for name in ["sapi_operator", *names]:
        importlib.import_module(name)
    leaked = sorted(m for m in sys.modules if m.split(".")[0] in ("flask", "werkzeug")
                    and sys.modules[m] is not None)
    print(len(names), leaked)
    """
)


def test_every_operator_module_imports_with_flask_unavailable() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT / "operator"), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode == 0, done.stderr
    count, leaked = done.stdout.split(" ", 1)
    assert int(count) >= 10  # the package's modules were really imported
    assert leaked.strip() == "[]"


def test_the_probe_fails_when_a_module_needs_flask(tmp_path: Path) -> None:
    package = tmp_path / "sapi_operator"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for i in range(10):
        (package / f"m{i}.py").write_text("")
    (package / "bad.py").write_text("import flask\n")

    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode != 0
    assert "ImportError" in done.stderr or "ModuleNotFoundError" in done.stderr
