"""The real control plane, helm and kubectl behave like a cluster's (minus controllers)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from kubetools import ControlPlane, versions
from kubetools.paths import SCRIPTS_DIR
from kubetools.process import pid_alive

pytestmark = pytest.mark.k8s

WIDGET_CRD = """\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.kubetools.test
spec:
  group: kubetools.test
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              required: [replicas, maxReplicas]
              properties:
                replicas: {type: integer, minimum: 0}
                maxReplicas: {type: integer, minimum: 0}
              x-kubernetes-validations:
                - rule: self.replicas <= self.maxReplicas
                  message: replicas must not exceed maxReplicas
"""

BROKEN_DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: broken}
spec:
  replicas: 1
  template:
    metadata: {labels: {app: broken}}
    spec:
      containers: [{name: app}]
"""

TYPO_CONFIGMAP = """\
apiVersion: v1
kind: ConfigMap
metadata: {name: typo}
dataa: {key: value}
"""


def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll check until it holds; RBAC and discovery caches in the apiserver lag by a moment."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition did not hold within {timeout}s")
        time.sleep(0.2)


def port_open(url: str) -> bool:
    """Tell whether something accepts TCP connections at the URL's host:port."""
    host, port = url.rsplit("/", 1)[-1].rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return True
    except OSError:
        return False


def write_chart(root: Path) -> Path:
    """Write a tiny chart (ConfigMap + Deployment) and return its directory."""
    chart = root / "tiny"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text(
        "apiVersion: v2\nname: tiny\nversion: 0.1.0\nkubeVersion: '>=1.30.0-0'\n"
    )
    (chart / "values.yaml").write_text("greeting: hello\nimage: registry.invalid/tiny:1\n")
    (chart / "templates" / "configmap.yaml").write_text(
        textwrap.dedent(
            """\
            apiVersion: v1
            kind: ConfigMap
            metadata:
              name: {{ .Release.Name }}-tiny
              labels: {app.kubernetes.io/instance: {{ .Release.Name | quote }}}
            data:
              greeting: {{ .Values.greeting | quote }}
            """
        )
    )
    (chart / "templates" / "deployment.yaml").write_text(
        textwrap.dedent(
            """\
            apiVersion: apps/v1
            kind: Deployment
            metadata:
              name: {{ .Release.Name }}-tiny
            spec:
              replicas: 1
              selector:
                matchLabels: {app.kubernetes.io/instance: {{ .Release.Name | quote }}}
              template:
                metadata:
                  labels: {app.kubernetes.io/instance: {{ .Release.Name | quote }}}
                spec:
                  containers:
                    - name: app
                      image: {{ .Values.image | quote }}
            """
        )
    )
    return chart


def test_server_reports_pinned_version(control_plane: ControlPlane) -> None:
    out = json.loads(control_plane.kubectl("version", "-o", "json").stdout)
    server = out["serverVersion"]
    assert server["gitVersion"] == versions()["KUBE_VERSION"] == "v1.35.4"
    # The build stamps these via -ldflags; unstamped builds say v0.0.0-master (notes).
    assert (server["major"], server["minor"]) == ("1", "35")


def test_configmap_round_trip(control_plane: ControlPlane, namespace: str) -> None:
    control_plane.kubectl(
        "create", "configmap", "demo", "--from-literal=greeting=hello", "-n", namespace
    )
    got = control_plane.kubectl("get", "configmap", "demo", "-n", namespace, "-o", "json")
    cm = json.loads(got.stdout)
    assert cm["data"] == {"greeting": "hello"}
    assert cm["metadata"]["namespace"] == namespace


@pytest.mark.parametrize(
    ("manifest", "expected"),
    [
        (BROKEN_DEPLOYMENT, "spec.selector: Required value"),
        # kubectl asks for strict server-side field validation: typos are errors, not dropped.
        (TYPO_CONFIGMAP, 'unknown field "dataa"'),
    ],
    ids=["invalid-deployment", "unknown-field"],
)
def test_server_dry_run_refuses_invalid_objects(
    control_plane: ControlPlane, namespace: str, manifest: str, expected: str
) -> None:
    result = control_plane.kubectl(
        "apply", "--dry-run=server", "-n", namespace, "-f", "-", input=manifest, check=False
    )
    assert result.returncode != 0
    assert expected in result.stderr


def test_server_dry_run_accepts_valid_object_without_persisting(
    control_plane: ControlPlane, namespace: str
) -> None:
    manifest = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: dry}\ndata: {k: v}\n"
    out = control_plane.kubectl(
        "apply", "--dry-run=server", "-n", namespace, "-f", "-", input=manifest
    ).stdout
    assert "configmap/dry created (server dry run)" in out
    missing = control_plane.kubectl("get", "configmap", "dry", "-n", namespace, check=False)
    assert "NotFound" in missing.stderr


def test_crd_cel_rule_is_enforced(control_plane: ControlPlane, namespace: str) -> None:
    control_plane.kubectl("apply", "-f", "-", input=WIDGET_CRD)
    # The apiextensions controllers run inside kube-apiserver, so CRDs do get Established.
    control_plane.kubectl(
        "wait", "--for=condition=Established", "crd/widgets.kubetools.test", "--timeout=30s"
    )

    def widget(name: str, replicas: int, max_replicas: int) -> str:
        return yaml.safe_dump(
            {
                "apiVersion": "kubetools.test/v1",
                "kind": "Widget",
                "metadata": {"name": name},
                "spec": {"replicas": replicas, "maxReplicas": max_replicas},
            }
        )

    control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=widget("ok", 1, 3))
    bad = control_plane.kubectl(
        "apply", "-n", namespace, "-f", "-", input=widget("bad", 5, 3), check=False
    )
    assert bad.returncode != 0
    assert "replicas must not exceed maxReplicas" in bad.stderr
    names = control_plane.kubectl("get", "widgets", "-n", namespace, "-o", "name").stdout.split()
    assert names == ["widget.kubetools.test/ok"]


def test_helm_version(control_plane: ControlPlane) -> None:
    out = control_plane.helm("version", "--template", "{{.Version}}").stdout
    assert out.startswith("v4.")


def test_helm_template_applies_with_server_dry_run(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    chart = write_chart(tmp_path)
    rendered = control_plane.helm("template", "demo", str(chart), "--namespace", namespace).stdout
    kinds = sorted(d["kind"] for d in yaml.safe_load_all(rendered) if d)
    assert kinds == ["ConfigMap", "Deployment"]
    out = control_plane.kubectl(
        "apply", "--dry-run=server", "-n", namespace, "-f", "-", input=rendered
    ).stdout
    assert "configmap/demo-tiny created (server dry run)" in out
    assert "deployment.apps/demo-tiny created (server dry run)" in out


def test_helm_install_and_uninstall(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    chart = write_chart(tmp_path)
    # No --wait: a bare apiserver has no controllers, so the Deployment never gets Pods (notes).
    control_plane.helm("install", "demo", str(chart), "-n", namespace, "--set", "greeting=hi")
    status = json.loads(control_plane.helm("status", "demo", "-n", namespace, "-o", "json").stdout)
    assert status["info"]["status"] == "deployed"
    cm = json.loads(
        control_plane.kubectl("get", "configmap", "demo-tiny", "-n", namespace, "-o", "json").stdout
    )
    assert cm["data"] == {"greeting": "hi"}
    control_plane.helm("uninstall", "demo", "-n", namespace)
    gone = control_plane.kubectl("get", "configmap", "demo-tiny", "-n", namespace, check=False)
    assert "NotFound" in gone.stderr


def test_rbac_restricted_user_gets_only_what_is_granted(
    control_plane: ControlPlane, namespace: str, restricted_user: str
) -> None:
    user = restricted_user
    denied = control_plane.kubectl("get", "configmaps", "-n", namespace, user=user, check=False)
    assert denied.returncode != 0
    assert "Forbidden" in denied.stderr
    assert f'User "{user}" cannot list resource "configmaps"' in denied.stderr

    control_plane.kubectl(
        "create", "role", "cm-reader", "--verb=get,list", "--resource=configmaps", "-n", namespace
    )
    control_plane.kubectl(
        "create", "rolebinding", "cm-reader", "--role=cm-reader", f"--user={user}", "-n", namespace
    )

    def can(verb: str, ns: str) -> bool:
        args = ("auth", "can-i", verb, "configmaps", "-n", ns)
        return control_plane.kubectl(*args, user=user, check=False).stdout.strip() == "yes"

    eventually(lambda: can("list", namespace))
    control_plane.kubectl("get", "configmaps", "-n", namespace, user=user)
    assert not can("create", namespace)
    assert not can("list", "default")
    create = control_plane.kubectl(
        "create", "configmap", "nope", "-n", namespace, user=user, check=False
    )
    assert f'User "{user}" cannot create resource "configmaps"' in create.stderr


@pytest.mark.slow
def test_stop_leaves_nothing_behind(control_plane: ControlPlane, tmp_path: Path) -> None:
    cp = ControlPlane(tmp_path, binaries=control_plane.binaries)
    pids, urls = cp.pids, [cp.server, cp.etcd_url]
    assert len(pids) == 2
    assert all(pid_alive(p) for p in pids)
    assert all(port_open(u) for u in urls)
    cp.stop()
    cp.stop()  # idempotent
    assert not any(pid_alive(p) for p in pids)
    assert not any(port_open(u) for u in urls)


@pytest.mark.slow
def test_processes_die_with_their_parent(control_plane: ControlPlane, tmp_path: Path) -> None:
    child = textwrap.dedent(
        """\
        import json, sys, time
        from pathlib import Path
        from kubetools import ControlPlane
        cp = ControlPlane(Path(sys.argv[1]))
        print(json.dumps({"pids": cp.pids, "urls": [cp.server, cp.etcd_url]}), flush=True)
        time.sleep(600)
        """
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", child, str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(SCRIPTS_DIR)},
    )
    try:
        assert parent.stdout is not None
        started = json.loads(parent.stdout.readline())
        assert all(pid_alive(p) for p in started["pids"])
    finally:
        parent.kill()  # SIGKILL: no cleanup code runs, only PR_SET_PDEATHSIG can help
        parent.wait()
    eventually(lambda: not any(pid_alive(p) for p in started["pids"]))
    # The listening sockets close with the processes; give the kernel the same grace.
    eventually(lambda: not any(port_open(u) for u in started["urls"]))
