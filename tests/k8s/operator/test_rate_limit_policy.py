"""`kubectl apply` a RateLimitPolicy: the API enforces it, edits and deletes within 2 s."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest
import sqlalchemy as sa

from tests.k8s.operator.stack import Kubectl, OperatorProcess, eventually, manifest
from tests.support.processes import LiveServer

pytestmark = [pytest.mark.k8s, pytest.mark.slow, pytest.mark.timeout(300)]

#: Seconds from `kubectl apply`/`delete` returning (the change is in etcd) to the API
#: enforcing it.
DEADLINE = 2.0


def policy(requests: int, *, mode: str = "Enforce") -> dict[str, object]:
    """Limit GET /versions per client IP."""
    return {
        "mode": mode,
        "rules": [
            {
                "name": "versions",
                "match": {"paths": ["/versions"], "methods": ["GET"]},
                "key": "ip",
                "limits": [{"requests": requests, "window": "1m"}],
            }
        ],
    }


def get(api: LiveServer, path: str) -> tuple[int, dict[str, str]]:
    """Status and headers of a GET."""
    try:
        with urllib.request.urlopen(api.url + path, timeout=5) as resp:
            return resp.status, dict(resp.headers)
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers)


def quota(api: LiveServer, name: str) -> int | None:
    """The quota `q` the API advertises for the policy `name` on GET /versions, if any."""
    _, headers = get(api, "/versions")
    for item in headers.get("RateLimit-Policy", "").split(","):
        label, _, params = item.strip().partition(";")
        if label.strip('"').startswith(f"{name}."):
            return int(dict(p.split("=") for p in params.split(";"))["q"])
    return None


def test_policy_is_enforced_edited_and_deleted_within_two_seconds(
    kube: Kubectl, operator: OperatorProcess, api: LiveServer, stack_engine: sa.Engine
) -> None:
    name = f"versions-{kube.namespace[-6:]}"
    kube.apply(manifest("RateLimitPolicy", name, policy(1000)))
    applied = eventually(lambda: quota(api, name) == 1000, timeout=DEADLINE, what="enforced")
    ready = kube.wait_condition("rlp", name, "Ready", "True")
    assert ready["reason"] == "Reconciled"
    assert kube.condition("rlp", name, "Enforced")["status"] == "True"  # type: ignore[index]

    kube.apply(manifest("RateLimitPolicy", name, policy(3)))
    edited = eventually(lambda: quota(api, name) == 3, timeout=DEADLINE, what="edit enforced")
    statuses = [get(api, "/versions")[0] for _ in range(4)]
    assert 429 in statuses, statuses
    body = kube.get("rlp", name)
    assert body is not None and body["status"]["observedGeneration"] == 2
    kube.wait_condition("rlp", name, "Ready", "True")

    kube.delete("rlp", name, wait=False)
    deleted = eventually(lambda: quota(api, name) is None, timeout=DEADLINE, what="delete")
    eventually(lambda: kube.get("rlp", name) is None, timeout=10, what="finalizer removed")
    with stack_engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT count(*) FROM config_object WHERE name = :n"), {"n": name}
        ).scalar_one()
    assert rows == 0
    assert max(applied, edited, deleted) < DEADLINE, (applied, edited, deleted)
    print(  # noqa: T201 - numbers for the report
        f"\napply->enforced {applied:.3f}s, edit {edited:.3f}s, delete {deleted:.3f}s"
    )


def test_shadow_policy_never_blocks_and_reports_would_be_rejections_in_status(
    kube: Kubectl, operator: OperatorProcess, api: LiveServer
) -> None:
    name = f"shadow-{kube.namespace[-6:]}"
    kube.apply(manifest("RateLimitPolicy", name, policy(1, mode="Shadow")))
    enforced = kube.wait_condition("rlp", name, "Enforced", "False", reason="ShadowMode")
    assert "shadowRejectsLastHour" in enforced["message"]
    kube.wait_condition("rlp", name, "Ready", "True")
    statuses = [get(api, "/versions")[0] for _ in range(4)]
    assert statuses == [200] * 4
    eventually(
        lambda: (
            ((kube.get("rlp", name) or {}).get("status") or {}).get("shadowRejectsLastHour", 0) >= 3
        ),
        timeout=15,
        interval=0.5,
        what="shadowRejectsLastHour in status",
    )
