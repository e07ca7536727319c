"""Alert rules: promtool accepts and unit-tests them; every metric a rule or dashboard panel
queries exists in the code; every runbook link lands on a heading of docs/operations.md."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.core.observability import metrics
from tests.chart.conftest import CHART, render

ROOT = CHART.parents[1]
PROMTOOL_TESTS = Path(__file__).parent / "promtool" / "alerts_test.yaml"
DASHBOARD = CHART / "dashboards" / "structured-api.json"
OPERATIONS = ROOT / "docs" / "operations.md"
METRIC = re.compile(r"\b(sapi_[a-z0-9_]+)\b")


@pytest.fixture(scope="module")
def alert_rules() -> list[dict[str, Any]]:
    """The rules of the PrometheusRule rendered for namespace "sapi"."""
    docs = render(set_values=["monitoring.prometheusRule.enabled=true"], namespace="sapi")
    (rule,) = [d for d in docs if d["kind"] == "PrometheusRule"]
    return [r for g in rule["spec"]["groups"] for r in g["rules"]]


@pytest.fixture(scope="module")
def rules_dir(alert_rules: list[dict[str, Any]], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with rules.yaml (plain Prometheus format) and the promtool test file."""
    folder = tmp_path_factory.mktemp("rules")
    groups = {"groups": [{"name": "structured-api.rules", "rules": alert_rules}]}
    (folder / "rules.yaml").write_text(yaml.safe_dump(groups, sort_keys=False))
    shutil.copy(PROMTOOL_TESTS, folder / PROMTOOL_TESTS.name)
    return folder


def run(promtool: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run promtool and return its result."""
    return subprocess.run(
        [promtool, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def test_promtool_check_rules_accepts_the_chart_rules(promtool: str, rules_dir: Path) -> None:
    result = run(promtool, "check", "rules", "rules.yaml", cwd=rules_dir)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 9 rules found" in result.stdout


def test_promtool_unit_tests_pass(promtool: str, rules_dir: Path) -> None:
    result = run(promtool, "test", "rules", PROMTOOL_TESTS.name, cwd=rules_dir)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_exactly_one_promtool_case(alert_rules: list[dict[str, Any]]) -> None:
    cases = yaml.safe_load(PROMTOOL_TESTS.read_text())["tests"]
    tested = [c["name"] for c in cases]
    alerts = [r["alert"] for r in alert_rules]

    assert sorted(tested) == sorted(alerts)
    for case in cases:
        fired = [t for t in case["alert_rule_test"] if t["exp_alerts"]]
        assert {t["alertname"] for t in fired} == {case["name"]}


def test_issue_alerts_are_all_present(alert_rules: list[dict[str, Any]]) -> None:
    assert {r["alert"] for r in alert_rules} == {
        "StructuredApiHighErrorRatio",
        "StructuredApiHighLatencyP99",
        "StructuredApiRateLimiterFailingOpen",
        "StructuredApiDeadLettersGrowing",
        "StructuredApiProviderErrors",
        "StructuredApiProviderBreakerOpen",
        "StructuredApiOperatorReconcileErrors",
        "StructuredApiConfigGenerationLag",
        "StructuredApiAIHistoryBacklog",
    }


def dashboard_queries() -> list[str]:
    """Every PromQL expression of the dashboard (panels and template variables)."""
    board = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in board["panels"] for t in p["targets"]]
    exprs += [v["definition"] for v in board["templating"]["list"] if "definition" in v]
    return exprs


def test_every_metric_a_rule_queries_is_exported_by_the_code(
    alert_rules: list[dict[str, Any]],
) -> None:
    used = {m for r in alert_rules for m in METRIC.findall(r["expr"])}

    assert used, "rules should query sapi_* metrics"
    assert used - metrics.exported_names() == set()


def test_every_metric_a_dashboard_panel_queries_is_exported_by_the_code() -> None:
    used = {m for expr in dashboard_queries() for m in METRIC.findall(expr)}

    assert len(used) >= 20
    assert used - metrics.exported_names() == set()


def test_every_metric_series_in_the_promtool_tests_is_exported() -> None:
    cases = yaml.safe_load(PROMTOOL_TESTS.read_text())["tests"]
    used = {METRIC.match(s["series"]).group(1) for c in cases for s in c["input_series"]}  # type: ignore[union-attr]

    assert used - metrics.exported_names() == set()


@pytest.mark.parametrize(
    "subsystem", ["http", "warnings", "ratelimit", "cache", "config", "ai", "celery", "operator"]
)
def test_dashboard_shows_every_subsystem(subsystem: str) -> None:
    used = {m for expr in dashboard_queries() for m in METRIC.findall(expr)}

    assert any(m.startswith(f"sapi_{subsystem}_") for m in used)


def test_dashboard_shows_every_metric_family_the_code_exports() -> None:
    used = {m for expr in dashboard_queries() for m in METRIC.findall(expr)}
    suffix = re.compile(r"_(total|bucket|sum|count)$")
    families = {suffix.sub("", m) for m in metrics.exported_names()}
    shown = {suffix.sub("", m) for m in used}

    missing = sorted(families - shown)
    assert missing == [], (
        f"add a panel for {missing} to {DASHBOARD.relative_to(ROOT)} (a metric nobody can "
        "see is a metric nobody watches)"
    )


def heading_anchors(markdown: str) -> set[str]:
    """GitHub-style anchors of the markdown headings."""
    anchors = set()
    for line in markdown.splitlines():
        if line.startswith("#"):
            text = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"[^a-z0-9 _-]", "", text).replace(" ", "-"))
    return anchors


def test_every_runbook_url_points_at_a_heading_of_operations_md(
    alert_rules: list[dict[str, Any]],
) -> None:
    anchors = heading_anchors(OPERATIONS.read_text())
    for rule in alert_rules:
        annotations = rule["annotations"]
        assert {"summary", "description", "runbook_url"} <= set(annotations)
        assert rule["labels"]["severity"] in {"warning", "critical"}
        anchor = annotations["runbook_url"].split("#", 1)[1]
        assert anchor == rule["alert"].lower()
        assert anchor in anchors, f"docs/operations.md has no heading for {rule['alert']}"
