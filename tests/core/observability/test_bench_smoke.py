"""A short run of bench/observability_cost.py: every variant runs and reports its cost."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from sqlalchemy import Engine

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.bench_smoke
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_observability_cost_bench_reports_every_variant(
    migrated_engine: Engine,
    database_url: str,
    redis_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spec = importlib.util.spec_from_file_location("obs_bench", ROOT / "bench/observability_cost.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("REDIS_URL", redis_url)
    out = tmp_path / "cost.json"

    assert (
        bench.main(["--requests", "20", "--rounds", "1", "--passes", "1", "--json", str(out)]) == 0
    )

    rows = {r["variant"]: r for r in json.loads(out.read_text())["results"]}
    assert list(rows) == list(bench.VARIANTS)
    assert rows["off"]["cost_us"] == 0 and rows["off"]["ratio_vs_off"] == 1
    assert all(r["median_us"] > 0 for r in rows.values())
    # 20 warm-up + 20 measured requests, each a server span, all sampled with always_on.
    assert rows["tracing-all"]["spans_exported"] >= 40
    assert rows["off"]["spans_exported"] == rows["metrics-mp"]["spans_exported"] == 0
