"""`helm lint --strict` and `helm template` for the defaults and every ci/ values file."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.chart.conftest import CHART, CI_VALUES, helm, template_text

VALUE_SETS = [None, *CI_VALUES]
IDS = ["default", *(p.stem for p in CI_VALUES)]


def test_ci_folder_covers_the_main_switches() -> None:
    assert {p.stem for p in CI_VALUES} >= {
        "all-features-values",
        "existing-secrets-values",
        "minimal-values",
    }


@pytest.mark.parametrize("values", VALUE_SETS, ids=IDS)
def test_helm_lint_strict_passes(values: Path | None) -> None:
    args = ["lint", "--strict", str(CHART)]
    if values is not None:
        args += ["-f", str(values)]

    result = helm(*args)

    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("values", VALUE_SETS, ids=IDS)
def test_helm_template_renders_named_labelled_objects(values: Path | None) -> None:
    text = template_text(values=[values] if values else []).stdout
    docs = [d for d in yaml.safe_load_all(text) if d]

    assert len(docs) >= 5
    for doc in docs:
        meta = doc["metadata"]
        assert len(meta["name"]) <= 63, meta["name"]
        assert meta["labels"]["app.kubernetes.io/instance"] == "sapi"
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "Helm"
        if doc["kind"] not in ("ClusterRole", "ClusterRoleBinding"):
            assert meta["namespace"]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("unknownKey=1", "additional properties 'unknownKey' not allowed"),
        ("api.gunicorn.workers=0", "minimum"),
        ("operator.scope=everywhere", "value must be one of"),
        ("tracing.sampleRatio=2", "maximum"),
        ("api.service.type=Magic", "value must be one of"),
    ],
)
def test_schema_refuses_invalid_values(override: str, message: str) -> None:
    result = template_text(set_values=[override], check=False)

    assert result.returncode != 0
    assert message in result.stderr


def test_every_value_is_commented() -> None:
    # Each leaf key has a comment right above it, or sits in a block whose key has one
    # (e.g. the fields of podSecurityContext); section keys (`image:`) need none.
    lines = (CHART / "values.yaml").read_text().splitlines()
    commented_at: dict[int, bool] = {}  # indentation -> the open key there had a comment
    uncommented = []
    for i, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or ":" not in stripped:
            continue
        indent = len(line) - len(line.lstrip(" -"))
        commented_at = {k: v for k, v in commented_at.items() if k < indent}
        has_comment = lines[i - 1].strip().startswith("#")
        commented_at[indent] = has_comment
        is_section = stripped.endswith(":")
        inherited = any(v for k, v in commented_at.items() if k < indent)
        if not is_section and not has_comment and not inherited:
            uncommented.append(line)
    assert uncommented == []


def test_schema_and_values_name_the_same_keys() -> None:
    import json

    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def missing(node: dict, props: dict, path: str) -> list[str]:
        out = []
        for key, value in node.items():
            sub = props.get("properties", {}).get(key)
            if sub is None:
                out.append(path + key)
            elif isinstance(value, dict) and "properties" in sub:
                out += missing(value, sub, f"{path}{key}.")
        return out

    assert missing(values, schema, "") == []
