"""CRD manifests generated from the Pydantic spec and status models (one source of truth).

Pydantic emits JSON Schema 2020-12; a CRD wants a *structural* OpenAPI v3 schema
(Kubernetes docs, "Specifying a structural schema"): no `$ref`, a `type` on every node,
no `anyOf` around optional fields, `exclusiveMinimum` as a boolean beside `minimum`,
and no `additionalProperties: false` next to `properties` (unknown fields are refused by
kubectl's server-side field validation instead). Cross-field rules the models check in
Python are attached as CEL `x-kubernetes-validations`, so the apiserver refuses what the
admin API refuses. `scripts/gen_crds.py` writes the YAML; a test fails when it drifts.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, Final

import yaml

from app.core.specs import ai_provider, ai_route, api_version, rate_limit
from sapi_operator.resources import CATEGORY, GROUP, RESOURCES, VERSION, Kind
from sapi_operator.status import STATUS_MODELS

#: CEL rules per (kind, $defs name or "" for the spec root), from the specs package.
CEL: Final[dict[tuple[str, str], list[dict[str, str]]]] = {
    ("ApiVersion", ""): api_version.CEL_RULES,
    ("RateLimitPolicy", ""): rate_limit.POLICY_CEL_RULES,
    ("RateLimitPolicy", "Limit"): rate_limit.LIMIT_CEL_RULES,
    ("AIProvider", ""): ai_provider.CEL_RULES,
    ("AIModelRoute", ""): ai_route.CEL_RULES,
}
_DROPPED: Final = frozenset({"title", "$defs"})
_LABELS: Final = {
    "app.kubernetes.io/name": "structured-api",
    "app.kubernetes.io/part-of": "structured-api",
    "app.kubernetes.io/component": "crd",
}


class _Converter:
    """Turns one Pydantic JSON schema into a structural schema, inlining `$defs`."""

    def __init__(self, kind: str, schema: Mapping[str, Any]) -> None:
        self.kind = kind
        self.defs: Mapping[str, Any] = schema.get("$defs", {})

    def convert(self, node: Mapping[str, Any], def_name: str | None = None) -> dict[str, Any]:
        """The structural form of `node`; `def_name` is its `$defs` name, "" for the root."""
        node = dict(node)
        if "$ref" in node:
            name = node.pop("$ref").rsplit("/", 1)[-1]
            return self._merge(self.convert(self.defs[name], name), node)
        if "anyOf" in node:
            branches = [b for b in node.pop("anyOf") if b.get("type") != "null"]
            if len(branches) != 1:
                raise ValueError(f"{self.kind}: cannot make a structural schema of {branches}")
            return self._merge(self.convert(branches[0]), node)
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key in _DROPPED or (key == "default" and value is None):
                continue
            if key == "additionalProperties" and value is False:
                continue
            if key == "properties":
                out[key] = {k: self.convert(v) for k, v in value.items()}
            elif key == "items":
                out[key] = self.convert(value)
            elif key in ("exclusiveMinimum", "exclusiveMaximum"):
                # JSON Schema 2020-12 number -> OpenAPI 3.0 boolean beside minimum/maximum.
                out["minimum" if key == "exclusiveMinimum" else "maximum"] = value
                out[key] = True
            elif key == "const":
                out["enum"] = [value]
            else:
                out[key] = copy.deepcopy(value)
        rules = CEL.get((self.kind, def_name)) if def_name is not None else None
        if rules:
            out["x-kubernetes-validations"] = copy.deepcopy(rules)
        return out

    def _merge(self, target: dict[str, Any], site: Mapping[str, Any]) -> dict[str, Any]:
        # Keys at the referencing site (description, default) win over the definition's.
        for key, value in site.items():
            if key in _DROPPED or (key == "default" and value is None):
                continue
            target[key] = copy.deepcopy(value)
        return target


_ORDER: Final = (
    "description",
    "type",
    "format",
    "enum",
    "default",
    "pattern",
    "minLength",
    "maxLength",
    "minimum",
    "exclusiveMinimum",
    "maximum",
    "exclusiveMaximum",
    "minItems",
    "maxItems",
    "required",
    "properties",
    "items",
)


def _ordered(node: Any) -> Any:
    """Keys in a reading order (description and type first); field order kept as declared."""
    if isinstance(node, list):
        return [_ordered(v) for v in node]
    if not isinstance(node, dict):
        return node
    rank = {k: i for i, k in enumerate(_ORDER)}
    out: dict[str, Any] = {}
    for key in sorted(node, key=lambda k: (rank.get(k, len(_ORDER)), k)):
        value = node[key]
        if key == "properties":
            out[key] = {name: _ordered(v) for name, v in value.items()}
        else:
            out[key] = _ordered(value)
    return out


def spec_schema(resource: Kind) -> dict[str, Any]:
    """Structural schema of `.spec`, with the kind's CEL rules."""
    schema = resource.spec_model.model_json_schema(mode="validation")
    converted: dict[str, Any] = _ordered(_Converter(resource.kind, schema).convert(schema, ""))
    return converted


def status_schema(resource: Kind) -> dict[str, Any]:
    """Structural schema of `.status` (what the operator writes, nothing else)."""
    schema = STATUS_MODELS[resource.kind].model_json_schema(mode="validation")
    out = _Converter(resource.kind + "Status", schema).convert(schema, "")
    conditions = out["properties"]["conditions"]
    # One entry per type, merged by type under server-side apply (KEP-1623 convention).
    conditions["x-kubernetes-list-type"] = "map"
    conditions["x-kubernetes-list-map-keys"] = ["type"]
    conditions["items"]["required"] = ["type", "status", "reason", "message", "lastTransitionTime"]
    out.pop("description", None)
    ordered: dict[str, Any] = _ordered(out)
    return ordered


def crd_manifest(resource: Kind) -> dict[str, Any]:
    """The CustomResourceDefinition of one kind."""
    spec = spec_schema(resource)
    spec.pop("description", None)
    root = {
        "type": "object",
        "description": resource.summary,
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": {"description": f"Desired state of the {resource.kind}.", **spec},
            "status": {
                "description": "Observed state, written by the operator only.",
                **status_schema(resource),
            },
        },
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": resource.crd_name, "labels": dict(_LABELS)},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": resource.kind,
                "listKind": f"{resource.kind}List",
                "plural": resource.plural,
                "singular": resource.singular,
                "shortNames": list(resource.short_names),
                "categories": [CATEGORY],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [dict(c) for c in resource.columns],
                    "schema": {"openAPIV3Schema": root},
                }
            ],
        },
    }


HEADER: Final = (
    "# Generated by scripts/gen_crds.py from app/core/specs and sapi_operator.status;\n"
    "# do not edit (tests/operator/test_crds.py fails when this file drifts).\n"
)


def render(resource: Kind) -> str:
    """The YAML file of one CRD, header included."""
    body = yaml.safe_dump(crd_manifest(resource), sort_keys=False, width=100)
    return HEADER + body


def file_name(resource: Kind) -> str:
    """`<group>_<plural>.yaml`, the name both the chart and operator/crds use."""
    return f"{GROUP}_{resource.plural}.yaml"


def rendered() -> dict[str, str]:
    """File name -> YAML of every CRD."""
    return {file_name(r): render(r) for r in RESOURCES}
