"""`make bench` in miniature: every scenario served and measured for a few seconds."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = [pytest.mark.bench_smoke, pytest.mark.slow]

EXPECTED = [
    "bare Flask",
    "usual Flask stack",
    "usual Flask stack: DB-backed GET",
    "usual Flask stack: write",
    "bare Flask + one Redis script",
    "ours: public GET",
    "ours: authenticated + rate-limited GET",
    "ours: cached GET (hit)",
    "ours: cached GET (304)",
    "ours: DB-backed GET",
    "ours: write",
    "ours: AI gateway (simulator)",
    "ours: authenticated GET, tracing 0.1",
]


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Run the harness briefly into a temporary folder, docs and other scripts left alone."""
    out = tmp_path_factory.mktemp("bench-results")
    args = ["--duration", "2", "--warmup", "1", "--rounds", "1", "--connections", "8"]
    done = subprocess.run(
        [sys.executable, "-m", "bench.run", *args, "--skip-others", "--no-docs", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=780,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return out


@pytest.mark.timeout(900)
def test_every_scenario_answers_without_errors_and_with_throughput(results: Path) -> None:
    rows = json.loads((results / "pipeline.json").read_text())["results"]
    assert [r["name"] for r in rows] == EXPECTED
    for row in rows:
        assert row["rps"] > 0, row
        assert row["errors"] == 0, row
        assert row["p50_ms"] <= row["p99_ms"], row
    statuses = {r["name"]: set(r["statuses"]) for r in rows}
    assert statuses["ours: cached GET (304)"] == {"304"}
    assert statuses["ours: write"] == {"201"}
    assert statuses["usual Flask stack: write"] == {"201"}


@pytest.mark.timeout(900)
def test_table_and_chart_are_written(results: Path) -> None:
    table = (results / "pipeline.md").read_text()
    for name in EXPECTED:
        assert f"| {name} |" in table
    assert "vs bare Flask" in table and "vs usual stack" in table
    assert (results / "pipeline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
