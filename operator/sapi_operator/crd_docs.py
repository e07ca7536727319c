"""docs/crds.md, generated from the CRD schemas, the condition catalogue and the examples."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Final

import yaml

from sapi_operator.crd import crd_manifest
from sapi_operator.resources import API_VERSION, CATEGORY, GROUP, RESOURCES, VERSION, Kind
from sapi_operator.status import KIND_CONDITIONS, REASONS

EXAMPLES_DIR: Final = Path(__file__).resolve().parent.parent / "examples"


def example_path(resource: Kind) -> Path:
    """The worked example of one kind (operator/examples/<singular>.yaml)."""
    return EXAMPLES_DIR / f"{resource.singular}.yaml"


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _type(node: Mapping[str, Any]) -> str:
    kind = str(node.get("type", "any"))
    if kind == "array":
        return f"[]{_type(node.get('items', {}))}"
    if node.get("format"):
        return f"{kind} ({node['format']})"
    return kind


def _constraints(node: Mapping[str, Any], required: bool) -> str:
    parts: list[str] = ["**required**"] if required else []
    if "enum" in node:
        parts.append("one of " + ", ".join(f"`{v}`" for v in node["enum"]))
    if "pattern" in node:
        parts.append(f"pattern `{node['pattern']}`")
    for key, label in (("minimum", ">="), ("maximum", "<=")):
        if key in node:
            exclusive = node.get("exclusiveMinimum" if key == "minimum" else "exclusiveMaximum")
            parts.append(f"{label.rstrip('=') if exclusive else label} {node[key]}")
    for key, label in (
        ("minLength", "min length"),
        ("maxLength", "max length"),
        ("minItems", "min items"),
        ("maxItems", "max items"),
    ):
        if key in node:
            parts.append(f"{label} {node[key]}")
    return "; ".join(parts)


def _rows(node: Mapping[str, Any], path: str, required: bool) -> Iterator[list[str]]:
    default = f"`{node['default']}`" if "default" in node else ""
    yield [
        f"`{path}`",
        _type(node),
        default,
        _constraints(node, required),
        node.get("description", ""),
    ]
    target = node.get("items", {}) if node.get("type") == "array" else node
    suffix = "[]" if node.get("type") == "array" else ""
    needed = set(target.get("required", []))
    for name, child in target.get("properties", {}).items():
        yield from _rows(child, f"{path}{suffix}.{name}", name in needed)


def _cel(node: Mapping[str, Any], path: str) -> Iterator[tuple[str, str, str]]:
    for rule in node.get("x-kubernetes-validations", []):
        yield path, rule["rule"], rule["message"]
    target = node.get("items", {}) if node.get("type") == "array" else node
    suffix = "[]" if node.get("type") == "array" else ""
    for name, child in target.get("properties", {}).items():
        yield from _cel(child, f"{path}{suffix}.{name}")


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines


def _kind_section(resource: Kind) -> list[str]:
    version = crd_manifest(resource)["spec"]["versions"][0]
    root = version["schema"]["openAPIV3Schema"]
    spec, status = root["properties"]["spec"], root["properties"]["status"]
    short = ", ".join(f"`{s}`" for s in resource.short_names)
    out = [
        f"## {resource.kind}",
        "",
        f"`{resource.crd_name}`, short name {short}. {resource.summary}",
        "",
        "### Spec",
        "",
    ]
    out += _table(
        ["Field", "Type", "Default", "Validation", "Description"],
        list(_rows(spec, "spec", True))[1:],
    )
    rules = list(_cel(spec, "spec"))
    if rules:
        out += ["", "Cross-field rules, checked by the apiserver (CEL) and by the admin API:", ""]
        out += _table(["On", "Rule", "Message"], [[f"`{p}`", f"`{r}`", m] for p, r, m in rules])
    out += ["", "### Status", ""]
    out += _table(
        ["Field", "Type", "Description"],
        [[r[0], r[1], r[4]] for r in list(_rows(status, "status", False))[1:]],
    )
    out += ["", "### Conditions", ""]
    wanted = KIND_CONDITIONS[resource.kind]
    out += _table(
        ["Type", "Status", "Reason", "Meaning and what to do"],
        [
            [f"`{r.condition}`", r.status, f"`{r.name}`", r.meaning]
            for t in wanted
            for r in REASONS
            if r.condition == t
        ],
    )
    out += ["", "### Columns of `kubectl get`", ""]
    out += _table(
        ["Column", "JSONPath", "Shown"],
        [
            [c["name"], f"`{c['jsonPath']}`", "with `-o wide`" if c.get("priority") else "always"]
            for c in version["additionalPrinterColumns"]
        ],
    )
    example = example_path(resource).read_text(encoding="utf-8").strip()
    out += ["", "### Example", "", "```yaml", example, "```", ""]
    return out


def crds_markdown() -> str:
    """The whole reference page."""
    out = [
        "# Custom resources reference",
        "",
        "<!-- Generated by scripts/gen_crds.py from app/core/specs, sapi_operator.status and",
        "     operator/examples; do not edit (tests/operator/test_crds.py fails on drift). -->",
        "",
        f"Group `{GROUP}`, version `{VERSION}` (`apiVersion: {API_VERSION}`), namespaced. "
        f"`kubectl get {CATEGORY}` lists all four kinds. The CRDs live in `operator/crds/` "
        "and the chart's `crds/` (Helm installs them but never upgrades or deletes them: "
        "`kubectl apply -f operator/crds/` after an upgrade). The spec fields are the same "
        "the admin API accepts under `/v1/admin/...`; the operator is described in "
        "[operator.md](operator.md).",
        "",
        "Every kind reports `status.observedGeneration` (the `metadata.generation` last acted "
        "on), `status.configGeneration` (the config-store generation that holds it) and "
        "standard conditions; wait for one with "
        "`kubectl wait --for=condition=Ready rlp/<name>`.",
        "",
    ]
    out += _table(
        ["Kind", "Plural", "Short names", "Conditions"],
        [
            [
                r.kind,
                r.plural,
                ", ".join(r.short_names),
                ", ".join(KIND_CONDITIONS[r.kind]),
            ]
            for r in RESOURCES
        ],
    )
    out.append("")
    for resource in RESOURCES:
        out += _kind_section(resource)
    return "\n".join(out).rstrip("\n") + "\n"


def load_example(resource: Kind) -> dict[str, Any]:
    """The parsed worked example of one kind."""
    loaded: dict[str, Any] = yaml.safe_load(example_path(resource).read_text(encoding="utf-8"))
    return loaded
