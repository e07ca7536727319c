"""The drift check repairs rows changed or deleted behind the operator's back and deletes
rows whose resource is gone; the liveness probe and the metrics report it."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import pytest
import sqlalchemy as sa

from tests.k8s.operator.stack import Kubectl, OperatorProcess, eventually, manifest

pytestmark = [pytest.mark.k8s, pytest.mark.slow, pytest.mark.timeout(300)]

SPEC = {"rules": [{"name": "r", "key": "ip", "limits": [{"requests": 7, "window": "1m"}]}]}


def stored(engine: sa.Engine, name: str) -> Any:
    """The stored spec of a RateLimitPolicy row, or None."""
    with engine.connect() as conn:
        return conn.execute(
            sa.text("SELECT spec FROM config_object WHERE kind = 'RateLimitPolicy' AND name = :n"),
            {"n": name},
        ).scalar_one_or_none()


def execute(engine: sa.Engine, sql: str, **params: Any) -> None:
    """A write behind the operator's back."""
    with engine.begin() as conn:
        conn.execute(sa.text(sql), params)


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text (0 when absent)."""
    for line in text.splitlines():
        if line.startswith(f"{name}{{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_rows_changed_deleted_or_orphaned_behind_its_back_are_repaired(
    kube: Kubectl, operator: OperatorProcess, stack_engine: sa.Engine
) -> None:
    name = f"drift-{kube.namespace[-6:]}"
    kube.apply(manifest("RateLimitPolicy", name, SPEC))
    kube.wait_condition("rlp", name, "Ready", "True")
    original = stored(stack_engine, name)

    execute(stack_engine, "DELETE FROM config_object WHERE name = :n", n=name)
    eventually(lambda: stored(stack_engine, name) == original, timeout=10, what="row recreated")

    execute(
        stack_engine,
        "UPDATE config_object SET spec = jsonb_set(spec, '{rules,0,limits,0,requests}', '999') "
        "WHERE name = :n",
        n=name,
    )
    eventually(lambda: stored(stack_engine, name) == original, timeout=10, what="row restored")

    orphan = f"orphan-{kube.namespace[-6:]}"
    execute(
        stack_engine,
        "INSERT INTO config_object (id, kind, name, spec, status, source, source_namespace, "
        "source_uid, generation, created_at, updated_at) VALUES (gen_random_uuid(), "
        "'RateLimitPolicy', :n, CAST(:spec AS jsonb), '{}', 'operator', :ns, 'gone', 0, now(), "
        "now())",
        n=orphan,
        spec=json.dumps(original),
        ns=kube.namespace,
    )
    eventually(lambda: stored(stack_engine, orphan) is None, timeout=10, what="orphan deleted")

    eventually(
        lambda: (
            metric(operator.metrics(), "sapi_operator_drift_repairs_total", kind="RateLimitPolicy")
            >= 3
        ),
        timeout=5,
        what="three drift repairs counted",
    )
    text = operator.metrics()
    assert (
        metric(text, "sapi_operator_reconciles_total", kind="RateLimitPolicy", outcome="success")
        >= 1
    )
    assert (
        metric(text, "sapi_operator_reconcile_duration_seconds_count", kind="RateLimitPolicy") >= 1
    )
    with urllib.request.urlopen(operator.liveness_url, timeout=5) as resp:
        health = json.load(resp)
    assert resp.status == 200 and 0 <= health["driftCheckAgeSeconds"] < 10
