"""Pictures of the chart's Grafana dashboard drawn from a live Prometheus, no Grafana needed.

    from kubetools.dashboard import load_dashboard, render_rows

    board = load_dashboard()  # charts/structured-api/dashboards/structured-api.json
    render_rows(prom, board, "structured-api", Path("docs/img"), start, end)

Every panel of the dashboard is a `timeseries` panel of PromQL targets with a
`$namespace` variable; the panels sit in rows of the 24-column grid (`gridPos.y`). One
PNG per row, one plot per panel, every target drawn from `/api/v1/query_range` with its
`legendFormat` (Grafana's `{{label}}` templates) or its label set as the legend. Only
matplotlib (the `bench` dependency group) and the Prometheus HTTP API are used.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from kubetools.paths import REPO_ROOT

DASHBOARD = REPO_ROOT / "charts" / "structured-api" / "dashboards" / "structured-api.json"


class RangeQuerier(Protocol):
    """What the renderer needs from Prometheus (kubetools.prometheus.Prometheus)."""

    def query_range(
        self, expr: str, start: float, end: float, step: float
    ) -> list[dict[str, Any]]: ...


@dataclass(frozen=True)
class Target:
    """One PromQL query of a panel."""

    expr: str
    legend: str | None


@dataclass(frozen=True)
class Panel:
    """One timeseries panel."""

    title: str
    y: int
    x: int
    unit: str | None
    targets: tuple[Target, ...]


def load_dashboard(path: Path = DASHBOARD) -> dict[str, Any]:
    """The dashboard JSON."""
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def panels(board: Mapping[str, Any], namespace: str) -> list[Panel]:
    """Every panel with `$namespace` filled in, in grid order."""
    found = []
    for raw in board["panels"]:
        unit = (raw.get("fieldConfig") or {}).get("defaults", {}).get("unit")
        targets = tuple(
            Target(t["expr"].replace("$namespace", namespace), t.get("legendFormat"))
            for t in raw.get("targets", [])
        )
        grid = raw.get("gridPos", {})
        found.append(Panel(raw["title"], grid.get("y", 0), grid.get("x", 0), unit, targets))
    return sorted(found, key=lambda p: (p.y, p.x))


def rows(board: Mapping[str, Any], namespace: str) -> list[list[Panel]]:
    """Panels grouped by grid row (same `gridPos.y`)."""
    grouped: dict[int, list[Panel]] = {}
    for panel in panels(board, namespace):
        grouped.setdefault(panel.y, []).append(panel)
    return [grouped[y] for y in sorted(grouped)]


def legend(target: Target, labels: Mapping[str, str], varying: Iterable[str] | None = None) -> str:
    """Grafana's legend: `{{label}}` placeholders filled in, else the label set.

    varying: the labels whose values differ between the panel's series; without a
    legendFormat only those are shown (the rest is the same on every line).
    """
    if target.legend and target.legend != "__auto":
        return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), target.legend)
    keep = set(varying) if varying is not None else set(labels)
    shown = {k: v for k, v in labels.items() if k != "__name__" and k in keep}
    if not shown:
        return target.expr if len(target.expr) < 60 else target.expr[:57] + "..."
    text = ", ".join(f"{k}={v}" for k, v in sorted(shown.items()))
    return text if len(text) < 80 else text[:77] + "..."


# Target labels that follow from `pod` (the scrape address, the monitor's job, ...): left
# out of legends when other labels already tell the series apart.
_TARGET_LABELS = {"instance", "job", "endpoint", "container", "service", "namespace"}


def varying_labels(label_sets: Sequence[Mapping[str, str]]) -> set[str]:
    """Labels that are missing from some series or differ between them."""
    names = {k for labels in label_sets for k in labels}
    varying = {k for k in names if len({labels.get(k) for labels in label_sets}) > 1}
    return (varying - _TARGET_LABELS) or varying


def _metric_name(expr: str) -> str:
    """The first sapi_ metric an expression reads, without the prefix (multi-query legends)."""
    found = re.search(r"sapi_([a-z0-9_]+?)(_bucket|_total)?\b", expr)
    return found.group(1) if found else "query"


def slug(text: str) -> str:
    """File-name part of a title."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def render_rows(
    prom: RangeQuerier,
    board: Mapping[str, Any],
    namespace: str,
    out_dir: Path,
    start: float,
    end: float,
    *,
    step: float | None = None,
    prefix: str = "dashboard-row",
) -> list[Path]:
    """Draw every row of the dashboard into out_dir; return the PNG paths in row order."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.dates import AutoDateLocator, DateFormatter

    step = step or max(5.0, (end - start) / 240)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for index, row in enumerate(rows(board, namespace), start=1):
        fig, axes = plt.subplots(1, len(row), figsize=(6.4 * len(row), 3.6), squeeze=False)
        for ax, panel in zip(axes[0], row, strict=True):
            drawn = 0
            results = [(t, prom.query_range(t.expr, start, end, step)) for t in panel.targets]
            varying = varying_labels([s["metric"] for _, found in results for s in found])
            for target, found in results:
                for series in found:
                    points = [
                        (datetime.fromtimestamp(float(t), UTC), float(v))
                        for t, v in series["values"]
                        if not math.isnan(float(v))
                    ]
                    if not points:
                        continue
                    times, values = zip(*points, strict=True)
                    label = legend(target, series["metric"], varying)
                    if len(panel.targets) > 1 and not target.legend:
                        label = f"{_metric_name(target.expr)}: {label}"
                    ax.plot(times, values, label=label, linewidth=1.3)
                    drawn += 1
            ax.set_title(panel.title, fontsize=10)
            ax.set_xlim(datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(end, UTC))
            ax.xaxis.set_major_locator(AutoDateLocator(minticks=3, maxticks=6))
            ax.xaxis.set_major_formatter(DateFormatter("%H:%M:%S"))
            ax.tick_params(labelsize=8)
            ax.grid(alpha=0.3)
            if panel.unit:
                ax.set_ylabel(panel.unit, fontsize=8)
            if drawn:
                ax.legend(fontsize=6, loc="upper left", framealpha=0.6)
            else:
                ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
        fig.tight_layout()
        path = out_dir / f"{prefix}-{index:02d}-{slug(row[0].title)}.png"
        fig.savefig(path, dpi=80)
        plt.close(fig)
        written.append(path)
    return written


def queries(board: Mapping[str, Any], namespace: str) -> list[tuple[str, str]]:
    """(panel title, expression) of every target, `$namespace` filled in."""
    return [(p.title, t.expr) for p in panels(board, namespace) for t in p.targets]


def empty(results: Iterable[Sequence[Any]]) -> bool:
    """True when no result holds a sample."""
    return all(len(r) == 0 for r in results)
