"""Rules only the config store can check (ownership, one ApiVersion per /v{major}) end in
Ready=False with an actionable reason, and clear once the other owner is gone."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from kubetools import ControlPlane
from sqlmodel import Session

from app.config_store.service import Source, delete_config, upsert_config
from tests.k8s.operator.conftest import cleanup_namespace, grant_operator_role
from tests.k8s.operator.stack import Kubectl, manifest

pytestmark = [pytest.mark.k8s, pytest.mark.slow, pytest.mark.timeout(300)]

POLICY = {"rules": [{"name": "r", "limits": [{"requests": 5, "window": "1m"}]}]}


def test_name_owned_by_the_admin_api_is_reported_then_taken_over(
    kube: Kubectl, operator: Any, stack_engine: sa.Engine
) -> None:
    name = f"taken-{kube.namespace[-6:]}"
    with Session(stack_engine) as session:
        upsert_config(
            session=session,
            kind="RateLimitPolicy",
            name=name,
            spec=POLICY,
            source=Source.admin(),
            actor="test-admin",
        )
    kube.apply(manifest("RateLimitPolicy", name, POLICY))
    ready = kube.wait_condition("rlp", name, "Ready", "False", reason="OwnedByAdminApi")
    assert "admin API" in ready["message"] and "delete it there" in ready["message"]

    with Session(stack_engine) as session:
        delete_config(
            session=session,
            kind="RateLimitPolicy",
            name=name,
            source=Source.admin(),
            actor="test-admin",
        )
    # Retried every 10 s (CONFLICT_RETRY): no edit needed once the admin row is gone.
    kube.wait_condition("rlp", name, "Ready", "True", reason="Reconciled", timeout=30)


def test_second_api_version_for_the_same_major_is_a_version_conflict(
    kube: Kubectl, operator: Any
) -> None:
    first, second = f"v1-a-{kube.namespace[-6:]}", f"v1-b-{kube.namespace[-6:]}"
    kube.apply(manifest("ApiVersion", first, {"version": "1.0"}))
    kube.wait_condition("apiv", first, "Ready", "True")
    kube.apply(manifest("ApiVersion", second, {"version": "1.5"}))
    conflict = kube.wait_condition("apiv", second, "Ready", "False", reason="VersionConflict")
    assert first in conflict["message"] and "/v1" in conflict["message"]
    kube.delete("apiv", first)
    kube.wait_condition("apiv", second, "Ready", "True", timeout=30)


def test_same_name_in_two_namespaces_is_owned_by_the_first(
    kube: Kubectl,
    operator_factory: Any,
    control_plane: ControlPlane,
    restricted_user: str,
    stack_engine: sa.Engine,
) -> None:
    other = f"{kube.namespace[:50]}-b"
    control_plane.kubectl("create", "namespace", other)
    grant_operator_role(control_plane, other, restricted_user)
    operator = operator_factory(namespaces=f"{kube.namespace},{other}")
    operator.start()
    name = f"shared-{kube.namespace[-6:]}"
    try:
        kube.apply(manifest("RateLimitPolicy", name, POLICY))
        kube.wait_condition("rlp", name, "Ready", "True")
        second = Kubectl(control_plane, other)
        second.apply(manifest("RateLimitPolicy", name, POLICY))
        taken = second.wait_condition("rlp", name, "Ready", "False", reason="OwnedByOtherNamespace")
        assert kube.namespace in taken["message"]
        second.delete("rlp", name)  # deleting the loser must not delete the winner's row
        with stack_engine.connect() as conn:
            owner = conn.execute(
                sa.text("SELECT source_namespace FROM config_object WHERE name = :n"), {"n": name}
            ).scalar_one()
        assert owner == kube.namespace
    finally:
        cleanup_namespace(control_plane, other, stack_engine)
