"""A short run of bench/auth_cost.py: every scenario answers and the table prints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from bench.auth_cost import main


@pytest.mark.bench_smoke
def test_auth_cost_bench_runs_every_scenario(
    database_url: str,
    redis_url: str,
    migrated_engine: Engine,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("REDIS_URL", redis_url)
    out = tmp_path / "auth.json"
    try:
        assert main(["--requests", "20", "--passes", "1", "--json", str(out)]) == 0
    finally:
        with migrated_engine.begin() as conn:  # the bench commits its user for real
            conn.execute(text("DELETE FROM users WHERE email LIKE 'bench-%@example.com'"))

    rows = {r["scenario"]: r for r in json.loads(out.read_text())["scenarios"]}
    assert {"anonymous", "jwt", "api-key", "api-key-cold", "fje-jwt"} <= set(rows)
    assert all(r["median_us"] > 0 for r in rows.values())
    assert "cpu delta" in capsys.readouterr().out
