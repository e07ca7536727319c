"""The chart's `redis.cluster` values: REDIS_CLUSTER_NODES and its password as rendered.

The node list the chart renders is read by the same Settings the pods run, so a template
that renders a list the app would refuse fails here.
"""

from __future__ import annotations

import pytest

from app.settings import Settings
from tests.chart.conftest import containers, env_of, one, render, template_text

NODES = "{redis-0.redis-cluster:6379,redis-1.redis-cluster:6379,redis-2.redis-cluster:6380}"
CLUSTER = ["redis.cluster.enabled=true", f"redis.cluster.nodes={NODES}"]
WORKLOADS = ("-api", "-worker", "-beat", "-operator")


def test_cluster_nodes_reach_every_workload_as_a_list_the_app_accepts() -> None:
    docs = render(set_values=CLUSTER)
    for suffix in WORKLOADS:
        env = env_of(containers(one(docs, "Deployment", suffix))[0])
        nodes = env["REDIS_CLUSTER_NODES"]
        assert (
            nodes
            == "redis-0.redis-cluster:6379,redis-1.redis-cluster:6379,redis-2.redis-cluster:6380"
        )
        settings = Settings(app_env="test", redis_cluster_nodes=nodes)
        assert settings.cluster_seeds()[2] == ("redis-2.redis-cluster", 6380)
        assert "REDIS_CLUSTER_PASSWORD" not in env
        assert "REDIS_URL" in env  # the broker and pub/sub stay on REDIS_URL


def test_the_cluster_password_comes_from_an_existing_secret_the_operator_may_not_read() -> None:
    docs = render(
        set_values=[
            *CLUSTER,
            "redis.cluster.existingSecret=cluster-auth",
            "redis.cluster.existingSecretKey=password",
        ]
    )
    for suffix in WORKLOADS:
        env = env_of(containers(one(docs, "Deployment", suffix))[0])
        ref = env["REDIS_CLUSTER_PASSWORD"]["secretKeyRef"]
        assert (ref["name"], ref["key"]) == ("cluster-auth", "password")
    operator = env_of(containers(one(docs, "Deployment", "-operator"))[0])
    assert "sapi/cluster-auth" in operator["OPERATOR_PROTECTED_SECRETS"].split(",")


def test_cluster_disabled_renders_no_cluster_variables() -> None:
    docs = render(set_values=[f"redis.cluster.nodes={NODES}"])
    env = env_of(containers(one(docs, "Deployment", "-api"))[0])
    assert "REDIS_CLUSTER_NODES" not in env and "REDIS_CLUSTER_PASSWORD" not in env


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (["redis.cluster.enabled=true"], "redis.cluster.nodes"),
        ([*CLUSTER[:1], "redis.cluster.nodes={no-port}"], "nodes"),
    ],
)
def test_wrong_cluster_values_fail_the_render(values: list[str], message: str) -> None:
    result = template_text(set_values=values, check=False)
    assert result.returncode != 0
    assert message in result.stderr
