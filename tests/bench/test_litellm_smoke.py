"""A short run of bench/litellm.py without LiteLLM: our surfaces and the direct baseline.

LiteLLM itself (a PyPI install of a few hundred packages, and 20-40 s to start) is left
to `make bench`; this checks the harness, the load client and our rows, in under a minute.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = [pytest.mark.bench_smoke, pytest.mark.slow]

OURS = [
    "direct",
    "direct stream",
    "ours generate",
    "ours generate stream",
    "ours openai",
    "ours openai stream",
    "ours anthropic",
]


@pytest.mark.timeout(300)
def test_quick_run_measures_every_row_of_ours_without_errors(tmp_path: Path) -> None:
    out = tmp_path / "litellm.json"
    # Its own PostgreSQL and Redis (scripts/devstack), as under `make bench`.
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    done = subprocess.run(
        [sys.executable, "bench/litellm.py", "--quick", "--no-litellm", "--json", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(out.read_text())
    rows = {r["scenario"]: r for r in report["results"]}
    assert list(rows) == OURS
    for row in rows.values():
        assert row["errors"] == 0 and row["requests"] > 0 and row["rps"] > 0, row
        assert row["p50_ms"] <= row["p99_ms"], row
    for name in ("direct stream", "ours generate stream", "ours openai stream"):
        assert 0 < rows[name]["ttft_p50_ms"] <= rows[name]["p99_ms"], rows[name]
    for name in OURS[2:]:
        assert rows[name]["server_cpu_ms"] > 0, rows[name]
    assert set(report["goals"]["within_10pct_of_generate"]) == {
        "ours openai",
        "ours anthropic",
        "ours openai stream",
    }
    assert report["goals"]["lead_over_litellm"] == {}
    assert "| ours openai stream |" in done.stdout
