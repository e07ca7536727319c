"""The drift check's comparison (pure): what to re-apply, what to delete, what to leave."""

from __future__ import annotations

from typing import Any

from sapi_operator.drift import plan
from sapi_operator.reconcile import Desired, ObjectRef, desired_state
from sapi_operator.resources import RATE_LIMIT_POLICY_RESOURCE
from sapi_operator.store import StoredRow

SPEC = {"rules": [{"name": "r", "limits": [{"requests": 5, "window": "1m"}]}]}


def body(name: str, *, namespace: str = "a", ready: bool = True, **meta: Any) -> dict[str, Any]:
    """A RateLimitPolicy as listed from the apiserver."""
    return {
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": f"uid-{name}",
            "generation": 1,
            **meta,
        },
        "spec": SPEC,
        "status": {
            "observedGeneration": 1,
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True" if ready else "False",
                    "reason": "Reconciled" if ready else "InvalidSpec",
                }
            ],
        },
    }


def row(name: str, *, namespace: str = "a", spec: dict[str, Any] | None = None) -> StoredRow:
    """A stored operator row matching `body(name)` unless told otherwise."""
    desired = desired_state(ObjectRef("RateLimitPolicy", namespace, name, f"uid-{name}", 1), SPEC)
    assert isinstance(desired, Desired)
    return StoredRow("RateLimitPolicy", name, spec or desired.spec, namespace, f"uid-{name}")


def in_a(namespace: str | None) -> bool:
    """An operator watching namespace `a` only."""
    return namespace == "a"


def test_matching_rows_need_nothing() -> None:
    todo = plan(RATE_LIMIT_POLICY_RESOURCE, [body("p")], [row("p")], in_scope=in_a)
    assert not todo.repairs and not todo.orphans and len(todo.live) == 1


def test_missing_and_changed_rows_are_repaired() -> None:
    changed = row("q", spec={"rules": [], "mode": "Shadow"})
    todo = plan(RATE_LIMIT_POLICY_RESOURCE, [body("p"), body("q")], [changed], in_scope=in_a)
    assert sorted(d.ref.name for d in todo.repairs) == ["p", "q"]


def test_rows_without_resource_in_scope_are_orphans_others_are_left_alone() -> None:
    rows = [row("gone"), row("elsewhere", namespace="b")]
    todo = plan(RATE_LIMIT_POLICY_RESOURCE, [], rows, in_scope=in_a)
    assert [r.name for r in todo.orphans] == ["gone"]


def test_unreconciled_deleting_and_foreign_owned_resources_are_not_touched() -> None:
    objects = [
        body("failed", ready=False),
        body("deleting", deletionTimestamp="2026-11-26T00:00:00Z"),
        body("taken"),
    ]
    rows = [row("taken", namespace="b")]
    todo = plan(RATE_LIMIT_POLICY_RESOURCE, objects, rows, in_scope=in_a)
    assert not todo.repairs and not todo.live and not todo.orphans
