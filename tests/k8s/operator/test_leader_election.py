"""Two operator replicas elect a leader on a Lease (sapi_operator/election.py): only the
holder reconciles, a standby takes over when the leader is SIGKILLed mid-reconcile or
stops cleanly, and a leader that loses its Lease stops at once.

Both replicas run as the restricted user with the chart's operator Role and its
leader-election Role, nothing else: the test is also the proof that the chart's RBAC is
enough for the election.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from kubetools import ControlPlane

from tests.k8s.operator.conftest import grant_election_role
from tests.k8s.operator.stack import Kubectl, OperatorProcess, eventually, manifest
from tests.k8s.operator.test_restart import COUNT, rows, spec

pytestmark = [pytest.mark.k8s, pytest.mark.slow, pytest.mark.chaos, pytest.mark.timeout(420)]

#: The promise: a standby reconciles within this long of the leader's death.
TAKEOVER_S = 15.0
#: A clean stop releases the Lease: a standby takes it on its next try (1 s, +20 % jitter).
HANDOVER_S = 5.0
EXIT_LOST_LEASE = 3
PLACEHOLDER = "test-placeholder"

Elected = Callable[[str], OperatorProcess]


@pytest.fixture
def lease(control_plane: ControlPlane, namespace: str, restricted_user: str) -> str:
    """The chart's leader-election Role bound to the operators' user; the Lease's name."""
    return grant_election_role(control_plane, namespace, restricted_user)


@pytest.fixture
def elected(operator_factory: Any, namespace: str, lease: str) -> Elected:
    """Builds operator replicas that elect a leader on `lease` (chart defaults: 8/6/1 s)."""

    def make(identity: str) -> OperatorProcess:
        operator: OperatorProcess = operator_factory(
            OPERATOR_LEADER_ELECTION="true",
            OPERATOR_LEASE_NAME=lease,
            OPERATOR_LEASE_NAMESPACE=namespace,
            OPERATOR_IDENTITY=identity,
        )
        return operator

    return make


def holder(kube: Kubectl, lease: str) -> str | None:
    """The Lease's holderIdentity (None: absent or released)."""
    found = kube.get("lease", lease)
    return ((found or {}).get("spec") or {}).get("holderIdentity")


def leading(operator: OperatorProcess, identity: str) -> float:
    """The replica's `sapi_operator_leader` gauge."""
    pattern = rf'^sapi_operator_leader\{{identity="{re.escape(identity)}"\}} (\S+)$'
    found = re.search(pattern, operator.metrics(), re.MULTILINE)
    assert found, operator.metrics()
    return float(found.group(1))


def hold_lease(kube: Kubectl, lease: str, identity: str) -> None:
    """Make the Lease held by `identity` for an hour (a leader the replicas must wait for)."""
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    body = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": lease},
        "spec": {
            "holderIdentity": identity,
            "leaseDurationSeconds": 3600,
            "acquireTime": now,
            "renewTime": now,
        },
    }
    kube.apply(yaml.safe_dump(body))


def patch_lease(kube: Kubectl, lease: str, spec: dict[str, Any]) -> None:
    """Merge `spec` into the Lease, as the admin."""
    kube.cp.kubectl(
        "patch", "lease", lease, "-n", kube.namespace, "--type=merge",
        "-p", json.dumps({"spec": spec}),
    )  # fmt: skip


def test_a_standby_takes_over_a_killed_leader_and_every_policy_converges_once(
    kube: Kubectl, elected: Elected, lease: str, stack_engine: sa.Engine
) -> None:
    suffix = kube.namespace[-6:]
    names = [f"p{i:03d}-{suffix}" for i in range(COUNT)]
    kube.apply("---\n".join(manifest("RateLimitPolicy", n, spec(10)) for n in names))
    # Someone else leads: both replicas start as standbys, and neither may reconcile.
    hold_lease(kube, lease, PLACEHOLDER)
    replicas = {identity: elected(identity) for identity in ("op-a", "op-b")}
    for operator in replicas.values():
        operator.start()  # returns once the standby answers /healthz
    time.sleep(3)  # more than a retry period: both have looked at the Lease
    assert rows(stack_engine, kube.namespace) == {}
    assert all(leading(op, identity) == 0 for identity, op in replicas.items())

    # The placeholder releases the Lease (as a leader does on SIGTERM): one replica takes it.
    patch_lease(kube, lease, {"holderIdentity": None, "leaseDurationSeconds": 1})
    eventually(lambda: holder(kube, lease) in replicas, timeout=HANDOVER_S, what="a leader")
    leader_id = str(holder(kube, lease))
    (standby_id,) = set(replicas) - {leader_id}
    leader, standby = replicas[leader_id], replicas[standby_id]
    eventually(lambda: len(rows(stack_engine, kube.namespace)) >= 3, timeout=30, what="rows")
    assert leading(leader, leader_id) == 1 and leading(standby, standby_id) == 0

    leader.kill()
    killed_at = time.monotonic()
    stored_at_kill = len(rows(stack_engine, kube.namespace))
    assert stored_at_kill < COUNT, "every reconcile finished before the kill; nothing was tested"
    eventually(
        lambda: holder(kube, lease) == standby_id, timeout=TAKEOVER_S + 5, what="the takeover"
    )
    lease_taken = time.monotonic() - killed_at
    eventually(
        lambda: len(rows(stack_engine, kube.namespace)) > stored_at_kill,
        timeout=TAKEOVER_S + 5,
        what="the standby's first reconcile",
    )
    reconciling = time.monotonic() - killed_at
    assert reconciling <= TAKEOVER_S, f"standby reconciled {reconciling:.1f} s after the kill"
    assert leading(standby, standby_id) == 1

    for name in names:
        kube.wait_condition("rlp", name, "Ready", "True", timeout=120)
    stored = rows(stack_engine, kube.namespace)
    assert sorted(stored) == sorted(names)
    with stack_engine.connect() as conn:
        creates = conn.execute(
            sa.text(
                "SELECT name, count(*) AS n FROM config_audit WHERE action = 'create' "
                "AND source_namespace = :ns GROUP BY name"
            ),
            {"ns": kube.namespace},
        ).all()
    counts = {r.name: r.n for r in creates}
    assert sorted(counts) == sorted(names)
    assert all(n == 1 for n in counts.values()), {k: v for k, v in counts.items() if v != 1}
    assert standby.process is not None
    standby.process.check_alive()
    print(  # noqa: T201 - visible with -s
        f"\n{stored_at_kill}/{COUNT} stored when the leader was killed; standby held the "
        f"Lease after {lease_taken:.1f} s and reconciled after {reconciling:.1f} s"
    )


def test_a_clean_stop_hands_over_at_once_and_a_leader_that_loses_the_lease_exits(
    kube: Kubectl, elected: Elected, lease: str
) -> None:
    first, second = elected("op-a"), elected("op-b")
    first.start()
    eventually(lambda: holder(kube, lease) == "op-a", timeout=10, what="op-a leads")
    second.start()
    assert leading(second, "op-b") == 0
    # A standby stops cleanly on SIGTERM (a scale-down) and leaves the leader alone.
    third = elected("op-c")
    third.start()
    third.stop()  # raises unless it exits cleanly
    assert third.process is not None and third.process.proc is not None
    assert third.process.proc.returncode == 0
    assert holder(kube, lease) == "op-a"

    began = time.monotonic()
    first.stop()  # SIGTERM: Kopf stops, the Lease is released; raises unless it exits cleanly
    eventually(lambda: holder(kube, lease) == "op-b", timeout=HANDOVER_S, what="the handover")
    handover = time.monotonic() - began
    assert "released lease" in first.output()

    # The new leader reconciles.
    kube.apply(manifest("RateLimitPolicy", "after-handover", spec(5)))
    kube.wait_condition("rlp", "after-handover", "Ready", "True", timeout=30)

    # Someone else takes the Lease (as a standby would after a long partition): the
    # replica that thought it led stops on its next renewal, before reconciling more.
    patch_lease(kube, lease, {"holderIdentity": "op-elsewhere"})
    assert second.process is not None and second.process.proc is not None
    stolen = time.monotonic()
    status = second.process.proc.wait(timeout=15)
    assert status == EXIT_LOST_LEASE, second.process.tail()
    print(  # noqa: T201 - visible with -s
        f"\nclean handover in {handover:.1f} s; lost-Lease exit after "
        f"{time.monotonic() - stolen:.1f} s"
    )
