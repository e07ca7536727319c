"""Which AIModelRoute targets resolve, and the status that says so (pure, no cluster)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sapi_operator.reconcile import ObjectRef, applied, build_status, desired_state, is_reconciled
from sapi_operator.routes import ProviderView, provider_view, revision, unresolved

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
ROUTE = ObjectRef("AIModelRoute", "team-a", "chat", "uid-r", 4)


def provider(models: list[str], *, ready: str = "True", generation: int = 2, **meta: Any) -> Any:
    return {
        "metadata": {"generation": generation, **meta},
        "spec": {"type": "Echo", "models": [{"name": m} for m in models]},
        "status": {"conditions": [{"type": "Ready", "status": ready, "observedGeneration": 2}]},
    }


def test_a_provider_is_ready_only_for_its_current_generation_and_not_while_deleted() -> None:
    assert provider_view("ns", provider(["a"])) == ProviderView("ns", frozenset({"a"}), True)
    assert not provider_view("ns", provider(["a"], generation=3)).ready
    assert not provider_view("ns", provider(["a"], ready="False")).ready
    assert not provider_view("ns", provider(["a"], deletionTimestamp="2026-12-07T12:00:00Z")).ready


def test_each_unresolved_target_is_named_with_its_reason_in_order() -> None:
    views = {
        "p": [ProviderView("ns", frozenset({"a"}), True)],
        "down": [ProviderView("ns", frozenset({"b"}), False)],
        # The same name in two namespaces: one Ready copy is enough.
        "twice": [
            ProviderView("x", frozenset({"c"}), False),
            ProviderView("y", frozenset({"c"}), True),
        ],
    }
    targets = [("p", "a"), ("p", "z"), ("ghost", "a"), ("down", "b"), ("twice", "c")]

    assert unresolved(targets, views) == [
        {"provider": "p", "model": "z", "reason": "ModelNotOffered"},
        {"provider": "ghost", "model": "a", "reason": "ProviderNotFound"},
        {"provider": "down", "model": "b", "reason": "ProviderNotReady"},
    ]
    assert revision(unresolved(targets, views)) != revision([])


def route_status(targets: int, missing: list[dict[str, str]]) -> dict[str, Any]:
    spec = {
        "model": "chat",
        "targets": [{"provider": f"p{i}", "model": "m"} for i in range(targets)],
    }
    desired = desired_state(ROUTE, spec)
    model = getattr(desired, "model", None)
    return build_status(ROUTE, applied(7, changed=True), now=NOW, model=model, unresolved=missing)


def test_some_unresolved_targets_degrade_the_route_none_resolving_makes_it_not_ready() -> None:
    ok = route_status(2, [])
    some = route_status(2, [{"provider": "p1", "model": "m", "reason": "ProviderNotFound"}])
    none = route_status(1, [{"provider": "p0", "model": "m", "reason": "ProviderNotReady"}])

    by_type = [{c["type"]: c for c in s["conditions"]} for s in (ok, some, none)]
    assert [
        (c["Ready"]["status"], c["Degraded"]["status"], c["Degraded"]["reason"]) for c in by_type
    ] == [
        ("True", "False", "TargetsResolved"),
        ("True", "True", "UnresolvedTargets"),
        ("False", "True", "UnresolvedTargets"),
    ]
    assert ok["unresolvedTargets"] == [] and some["unresolvedTargets"][0]["provider"] == "p1"
    assert "p1/m (ProviderNotFound)" in by_type[1]["Degraded"]["message"]
    assert (
        by_type[2]["Ready"]["reason"] == "UnresolvedTargets"
        and "404" in by_type[2]["Ready"]["message"]
    )
    # Still a stored row the drift check keeps in shape.
    body = {"metadata": {"generation": 4}, "status": none}
    assert is_reconciled(body)
