"""The numbers docs/performance.md shows are the committed run's, verbatim."""

from __future__ import annotations

import json
import re

from bench.report import BEGIN, END, docs_block
from tests.conftest import ROOT

RESULTS = ROOT / "bench" / "results"
DOC = ROOT / "docs" / "performance.md"


def test_performance_doc_quotes_the_committed_table_verbatim() -> None:
    text = DOC.read_text()
    quoted = text.split(BEGIN, 1)[1].split(END, 1)[0].lstrip("\n")
    assert quoted == docs_block(RESULTS / "pipeline.md")


def test_committed_table_matches_the_committed_measurements() -> None:
    table = (RESULTS / "pipeline.md").read_text()
    for row in json.loads((RESULTS / "pipeline.json").read_text())["results"]:
        line = next(x for x in table.splitlines() if x.startswith(f"| {row['name']} |"))
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[2] == f"{row['rps']:,.0f}"
        assert (cells[3], cells[4]) == (f"{row['p50_ms']:.2f}", f"{row['p99_ms']:.2f}")
        assert cells[5] == str(row["errors"]) == "0"


def test_readme_and_performance_doc_quote_no_throughput_the_table_does_not_have() -> None:
    table = (RESULTS / "pipeline.md").read_text()
    for doc in (ROOT / "README.md", DOC):
        for figure in re.findall(r"([0-9][0-9,]*) req/s", doc.read_text()):
            assert f"| {figure} |" in table, (doc.name, figure)
