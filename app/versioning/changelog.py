"""A machine-readable changelog between two OpenAPI documents (pure, no Flask).

Operations are matched by method and path relative to their version prefix
(`GET /v1/notes` and `GET /v2/notes` are both `GET /notes`). For an operation in both,
the parameters, request body, success and error statuses, response `data` schema and
required roles are compared after resolving `$ref`s, property by property. Each change
says whether it breaks an existing client, with the usual rules: removing anything a
client sends or reads breaks it; adding optional input or extra output does not (our
request models forbid unknown fields, so a removed input field does break).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

IGNORED_KEYS: Final = frozenset({"title", "description", "examples", "example", "default"})
METHODS: Final = ("get", "put", "post", "delete", "patch", "head", "options")
Schema = dict[str, Any]


@dataclass(frozen=True)
class _Doc:
    spec: dict[str, Any]
    prefix: str

    def resolve(self, schema: Any, seen: frozenset[str] = frozenset()) -> tuple[Schema, str | None]:
        """The schema behind a `$ref` (and the ref name, used to stop on cycles)."""
        if isinstance(schema, dict) and "$ref" in schema:
            name = str(schema["$ref"]).rsplit("/", 1)[-1]
            if name in seen:
                return {"$cycle": name}, name
            target = self.spec.get("components", {}).get("schemas", {}).get(name, {})
            return self.resolve(target, seen | {name})[0], name
        return (schema if isinstance(schema, dict) else {}), None

    def operations(self) -> dict[tuple[str, str], tuple[str, dict[str, Any]]]:
        """(METHOD, relative path) -> (full path, operation object), versioned paths only."""
        out: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}
        for path, item in self.spec.get("paths", {}).items():
            if not path.startswith(self.prefix + "/"):
                continue
            for method in METHODS:
                if method in item:
                    out[(method.upper(), path[len(self.prefix) :])] = (path, item[method])
        return out


def _flatten(doc: _Doc, schema: Any, seen: frozenset[str]) -> tuple[Schema, frozenset[str]]:
    """Merge anyOf/oneOf/allOf branches into one view: types, properties, required, items."""
    resolved, ref = doc.resolve(schema, seen)
    if ref is not None:
        seen = seen | {ref}
    merged: Schema = {k: v for k, v in resolved.items() if k not in IGNORED_KEYS}
    types: set[str] = set()
    if "type" in merged:
        t = merged["type"]
        types |= set(t) if isinstance(t, list) else {t}
    properties: dict[str, Any] = dict(merged.get("properties", {}))
    required: set[str] = set(merged.get("required", []))
    items = merged.get("items")
    for key in ("anyOf", "oneOf", "allOf"):
        for branch in merged.get(key, []):
            sub, seen = _flatten(doc, branch, seen)
            types |= set(sub.get("type", []))
            properties.update(sub.get("properties", {}))
            if key == "allOf":
                required |= set(sub.get("required", []))
            items = items if items is not None else sub.get("items")
    if properties and not types:
        types.add("object")
    out: Schema = {"type": sorted(types), "properties": properties, "required": sorted(required)}
    if items is not None:
        out["items"] = items
    if "enum" in merged:
        out["enum"] = merged["enum"]
    if "$cycle" in merged:
        out["$cycle"] = merged["$cycle"]
    return out, seen


def _change(where: str, path: str, change: str, breaking: bool, **extra: Any) -> dict[str, Any]:
    return {
        "location": where,
        "path": path or "(root)",
        "change": change,
        "breaking": breaking,
        **extra,
    }


def diff_schema(
    old: tuple[_Doc, Any],
    new: tuple[_Doc, Any],
    *,
    where: str,
    is_input: bool,
    path: str = "",
    trail: tuple[frozenset[str], frozenset[str]] = (frozenset(), frozenset()),
) -> list[dict[str, Any]]:
    """Property-level differences between two schemas; `is_input` picks breaking rules.

    `trail` holds the `$ref`s already entered on each side, so a recursive schema (a
    note whose `parent` is a note) is compared once, not forever.
    """
    (old_doc, old_schema), (new_doc, new_schema) = old, new
    a, seen_a = _flatten(old_doc, old_schema, trail[0])
    b, seen_b = _flatten(new_doc, new_schema, trail[1])
    if "$cycle" in a or "$cycle" in b:
        return []
    if a["type"] != b["type"]:
        return [_change(where, path, "type_changed", True, **{"from": a["type"], "to": b["type"]})]
    changes: list[dict[str, Any]] = []
    if a.get("enum") != b.get("enum") and ("enum" in a or "enum" in b):
        removed = [v for v in a.get("enum", []) if v not in b.get("enum", [])]
        changes.append(
            _change(
                where,
                path,
                "enum_changed",
                bool(removed) or not is_input,
                **{"from": a.get("enum"), "to": b.get("enum")},
            )
        )
    deeper = {"where": where, "is_input": is_input, "trail": (seen_a, seen_b)}
    for name in sorted(set(a["properties"]) | set(b["properties"])):
        sub = f"{path}.{name}" if path else name
        if name not in b["properties"]:
            changes.append(_change(where, sub, "property_removed", True))
        elif name not in a["properties"]:
            needed = is_input and name in b["required"]
            changes.append(_change(where, sub, "property_added", needed, required=needed))
        else:
            changes += diff_schema(
                (old_doc, a["properties"][name]),
                (new_doc, b["properties"][name]),
                path=sub,
                **deeper,  # type: ignore[arg-type]
            )
            was, now = name in a["required"], name in b["required"]
            if was != now:
                # Input: newly required breaks senders; output: no longer guaranteed breaks readers.
                breaking = now if is_input else was
                changes.append(_change(where, sub, "required" if now else "optional", breaking))
    if "items" in a and "items" in b:
        changes += diff_schema(
            (old_doc, a["items"]),
            (new_doc, b["items"]),
            path=f"{path}[]",
            **deeper,  # type: ignore[arg-type]
        )
    return changes


def _success(op: dict[str, Any]) -> list[str]:
    return sorted(s for s in op.get("responses", {}) if s.startswith("2"))


def _data_schema(doc: _Doc, response: dict[str, Any]) -> Any:
    schema = response.get("content", {}).get("application/json", {}).get("schema", {})
    flat, _ = _flatten(doc, schema, frozenset())
    return flat["properties"].get("data", {})


def _body_schema(op: dict[str, Any]) -> Any | None:
    body = op.get("requestBody")
    if body is None:
        return None
    return body.get("content", {}).get("application/json", {}).get("schema", {})


def _diff_parameters(a: _Doc, old: dict[str, Any], b: _Doc, new: dict[str, Any]) -> list[Any]:
    before = {(p["in"], p["name"]): p for p in old.get("parameters", [])}
    after = {(p["in"], p["name"]): p for p in new.get("parameters", [])}
    changes: list[dict[str, Any]] = []
    for key in sorted(before.keys() | after.keys()):
        where, name = f"parameter.{key[0]}", key[1]
        if key not in after:
            changes.append(_change(where, name, "parameter_removed", True))
        elif key not in before:
            needed = bool(after[key].get("required"))
            changes.append(_change(where, name, "parameter_added", needed, required=needed))
        else:
            was, now = bool(before[key].get("required")), bool(after[key].get("required"))
            if was != now:
                changes.append(_change(where, name, "required" if now else "optional", now))
            changes += diff_schema(
                (a, before[key].get("schema", {})),
                (b, after[key].get("schema", {})),
                where=f"{where}.{name}",
                is_input=True,
            )
    return changes


def diff_operation(a: _Doc, old: dict[str, Any], b: _Doc, new: dict[str, Any]) -> list[Any]:
    """Every contract difference of one operation present in both documents."""
    changes = _diff_parameters(a, old, b, new)
    old_body, new_body = _body_schema(old), _body_schema(new)
    if old_body is None and new_body is not None:
        changes.append(_change("request", "", "request_body_added", True))
    elif old_body is not None and new_body is None:
        changes.append(_change("request", "", "request_body_removed", False))
    elif old_body is not None:
        changes += diff_schema((a, old_body), (b, new_body), where="request", is_input=True)
    old_ok, new_ok = _success(old), _success(new)
    if old_ok != new_ok:
        changes.append(
            _change(
                "response", "", "success_status_changed", True, **{"from": old_ok, "to": new_ok}
            )
        )
    elif old_ok:
        status = old_ok[0]
        changes += diff_schema(
            (a, _data_schema(a, old["responses"][status])),
            (b, _data_schema(b, new["responses"][status])),
            where=f"response.{status}.data",
            is_input=False,
        )
    old_errors = {s for s in old.get("responses", {}) if s[0] in "45"}
    new_errors = {s for s in new.get("responses", {}) if s[0] in "45"}
    for status in sorted(new_errors - old_errors):
        changes.append(_change("response", status, "error_status_added", False))
    for status in sorted(old_errors - new_errors):
        changes.append(_change("response", status, "error_status_removed", False))
    old_roles, new_roles = old.get("x-required-roles", []), new.get("x-required-roles", [])
    if bool(old.get("security")) != bool(new.get("security")) or old_roles != new_roles:
        changes.append(
            _change(
                "security",
                "",
                "authorization_changed",
                True,
                **{
                    "from": old_roles or bool(old.get("security")),
                    "to": new_roles or bool(new.get("security")),
                },
            )
        )
    return changes


def changelog(
    old_spec: dict[str, Any],
    new_spec: dict[str, Any],
    *,
    old_version: str,
    new_version: str,
) -> dict[str, Any]:
    """Operations added, removed and changed going from `old_version` to `new_version`."""
    a = _Doc(old_spec, "/v" + old_version.split(".")[0])
    b = _Doc(new_spec, "/v" + new_version.split(".")[0])
    ops_a, ops_b = a.operations(), b.operations()

    def entry(key: tuple[str, str], full: str, op: dict[str, Any]) -> dict[str, Any]:
        return {
            "method": key[0],
            "path": key[1],
            "operationId": op.get("operationId"),
            "summary": op.get("summary"),
            "url": full,
        }

    added = [entry(k, *ops_b[k]) for k in sorted(ops_b.keys() - ops_a.keys())]
    removed = [
        {**entry(k, *ops_a[k]), "breaking": True} for k in sorted(ops_a.keys() - ops_b.keys())
    ]
    changed: list[dict[str, Any]] = []
    unchanged = 0
    for key in sorted(ops_a.keys() & ops_b.keys()):
        (old_path, old_op), (new_path, new_op) = ops_a[key], ops_b[key]
        changes = diff_operation(a, old_op, b, new_op)
        if not changes:
            unchanged += 1
            continue
        changed.append(
            {
                "method": key[0],
                "path": key[1],
                "from": old_path,
                "to": new_path,
                "breaking": any(c["breaking"] for c in changes),
                "changes": changes,
            }
        )
    return {
        "from": old_version,
        "to": new_version,
        "summary": {
            "added": len(added),
            "removed": len(removed),
            "changed": len(changed),
            "unchanged": unchanged,
            "breaking": len(removed) + sum(1 for c in changed if c["breaking"]),
        },
        "added": added,
        "removed": removed,
        "changed": changed,
    }
