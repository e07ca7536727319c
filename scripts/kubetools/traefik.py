"""Traefik v3 as the one-node cluster's ingress controller, serving on 127.0.0.1 only.

    from kubetools.traefik import install_traefik

    install_traefik(cluster, port=18080, admin_port=18081)  # cluster: kubetools.cluster.Cluster
    # every Ingress with ingressClassName "traefik" answers on http://127.0.0.1:18080

The binary is built from the Go module at `TRAEFIK_VERSION` (scripts/versions.env) by
`scripts/build-control-plane.sh traefik` and packed FROM scratch (kubetools.images). The
pod runs with `hostNetwork: true` and binds its entry points to 127.0.0.1, so the ingress
is reachable from this machine's loopback and from nowhere else; it reaches the pods it
routes to over the `sapi0` bridge like any other host process. Its Kubernetes Ingress
provider reads Ingresses, IngressClasses, Services, EndpointSlices, Secrets (TLS) and
Nodes through a ServiceAccount bound to the ClusterRole below (Traefik's
docs/content/reference/routing-configuration/kubernetes/ingress.md lists the same rules
but nodes, which pkg/provider/kubernetes/ingress/client.go also watches).

Traefik balances over the EndpointSlices' ready addresses itself (not the ClusterIP), so a
pod that turns unready or terminating stops receiving requests as soon as its endpoint is
updated; the api's preStop sleep (the chart) covers that delay.
"""

from __future__ import annotations

import fcntl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import yaml

from kubetools.build import BUILD_SCRIPT
from kubetools.images import File, build_scratch_image, import_archive
from kubetools.paths import CACHE_DIR, versions

NAMESPACE = "sapi-ingress"
NAME = "traefik"
INGRESS_CLASS = "traefik"
CONTROLLER = "traefik.io/ingress-controller"
IMAGE_REPOSITORY = "localhost/structured-api/traefik"
# A fixed unprivileged uid: the image has no /etc/passwd (FROM scratch).
RUN_AS = 65532


class Kube(Protocol):
    """What the installer needs from a cluster (kubetools.cluster.Cluster has it all)."""

    @property
    def containerd_socket(self) -> Path: ...

    def kubectl(
        self, *args: str, check: bool = True, input: str | None = None, timeout: float = 120.0
    ) -> subprocess.CompletedProcess[str]: ...


def traefik_path() -> Path:
    """Where the build script puts the pinned binary (it may not exist yet)."""
    out = subprocess.run(
        ["bash", str(BUILD_SCRIPT), "path-traefik"], check=True, capture_output=True, text=True
    )
    return Path(out.stdout.strip())


def ensure_traefik() -> Path:
    """Build Traefik if it is not cached (minutes when cold; progress on stderr)."""
    path = traefik_path()
    if path.is_file():
        return path
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    # The same lock as the other cluster binaries (kubetools.build): one build at a time.
    with open(CACHE_DIR / "control-plane.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        subprocess.run(["bash", str(BUILD_SCRIPT), "traefik"], check=True)
    if not path.is_file():
        raise FileNotFoundError(f"{BUILD_SCRIPT} traefik finished but {path} is missing")
    return path


def image_ref() -> str:
    """`localhost/structured-api/traefik:<TRAEFIK_VERSION>`."""
    return f"{IMAGE_REPOSITORY}:{versions()['TRAEFIK_VERSION']}"


def build_image() -> Path:
    """The FROM-scratch image holding only /traefik (cached oci-archive)."""
    return build_scratch_image(
        image_ref(),
        {"/traefik": File(ensure_traefik(), 0o755)},
        entrypoint=["/traefik"],
        user=f"{RUN_AS}:{RUN_AS}",
    )


def args(port: int, admin_port: int, *, access_log: bool = False) -> list[str]:
    """Traefik's static configuration as command-line flags."""
    flags = [
        # Nothing may leave this machine: no version check, no usage statistics.
        "--global.checkNewVersion=false",
        "--global.sendAnonymousUsage=false",
        f"--entryPoints.web.address=127.0.0.1:{port}",
        # Ping (probes) and Traefik's own metrics on a second loopback port.
        f"--entryPoints.traefik.address=127.0.0.1:{admin_port}",
        "--ping=true",
        "--ping.entryPoint=traefik",
        "--metrics.prometheus=true",
        "--metrics.prometheus.entryPoint=traefik",
        "--providers.kubernetesIngress=true",
        # Ingresses whose class names this controller, nothing else.
        f"--providers.kubernetesIngress.ingressClass={INGRESS_CLASS}",
        # Ingress status shows where the ingress answers.
        "--providers.kubernetesIngress.ingressEndpoint.ip=127.0.0.1",
        "--log.level=INFO",
        "--log.format=json",
    ]
    if access_log:
        flags += ["--accessLog=true", "--accessLog.format=json"]
    return flags


def manifests(
    image: str, port: int, admin_port: int, *, access_log: bool = False
) -> list[dict[str, Any]]:
    """Namespace, RBAC, IngressClass and the hostNetwork Deployment."""
    labels = {"app.kubernetes.io/name": NAME, "app.kubernetes.io/part-of": "structured-api-dev"}
    meta = {"name": NAME, "namespace": NAMESPACE, "labels": labels}
    read = ["get", "list", "watch"]
    probe = {"httpGet": {"host": "127.0.0.1", "path": "/ping", "port": admin_port}}
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": f"{NAMESPACE}-{NAME}", "labels": labels},
            "rules": [
                {"apiGroups": [""], "resources": ["services", "secrets", "nodes"], "verbs": read},
                {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": read},
                {
                    "apiGroups": ["networking.k8s.io"],
                    "resources": ["ingresses", "ingressclasses"],
                    "verbs": read,
                },
                {
                    "apiGroups": ["networking.k8s.io"],
                    "resources": ["ingresses/status"],
                    "verbs": ["update"],
                },
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": f"{NAMESPACE}-{NAME}", "labels": labels},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": f"{NAMESPACE}-{NAME}",
            },
            "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": NAMESPACE}],
        },
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "IngressClass",
            "metadata": {"name": INGRESS_CLASS, "labels": labels},
            "spec": {"controller": CONTROLLER},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": meta,
            "spec": {
                "replicas": 1,
                # Host ports: the old pod must let go of them before the new one binds.
                "strategy": {"type": "Recreate"},
                "selector": {"matchLabels": {"app.kubernetes.io/name": NAME}},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "serviceAccountName": NAME,
                        "hostNetwork": True,
                        # In the host's network namespace, still resolve cluster names.
                        "dnsPolicy": "ClusterFirstWithHostNet",
                        "terminationGracePeriodSeconds": 10,
                        "securityContext": {
                            "runAsNonRoot": True,
                            "runAsUser": RUN_AS,
                            "runAsGroup": RUN_AS,
                            "seccompProfile": {"type": "RuntimeDefault"},
                        },
                        "containers": [
                            {
                                "name": NAME,
                                "image": image,
                                "imagePullPolicy": "Never",
                                "args": args(port, admin_port, access_log=access_log),
                                "ports": [
                                    {"name": "web", "containerPort": port},
                                    {"name": "admin", "containerPort": admin_port},
                                ],
                                # The pod IP is the node's; the entry points are on loopback.
                                "readinessProbe": {**probe, "periodSeconds": 2},
                                "livenessProbe": {**probe, "periodSeconds": 10},
                                "resources": {
                                    "requests": {"cpu": "50m", "memory": "64Mi"},
                                    "limits": {"memory": "256Mi"},
                                },
                                "securityContext": {
                                    "allowPrivilegeEscalation": False,
                                    "readOnlyRootFilesystem": True,
                                    "capabilities": {"drop": ["ALL"]},
                                },
                            }
                        ],
                    },
                },
            },
        },
    ]


def install_traefik(
    kube: Kube,
    *,
    port: int,
    admin_port: int,
    access_log: bool = False,
    timeout: float = 180.0,
) -> str:
    """Build (if needed), import and run Traefik; return its URL once /ping answers."""
    import_archive(kube, build_image())
    docs = manifests(image_ref(), port, admin_port, access_log=access_log)
    kube.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(docs))
    kube.kubectl(
        "-n",
        NAMESPACE,
        "rollout",
        "status",
        f"deployment/{NAME}",
        f"--timeout={int(timeout)}s",
        timeout=timeout + 10,
    )
    wait_http(f"http://127.0.0.1:{admin_port}/ping", timeout)
    return f"http://127.0.0.1:{port}"


def uninstall_traefik(kube: Kube) -> None:
    """Remove what install_traefik() applied (the namespace takes the Deployment with it)."""
    for kind, name in (
        ("ingressclass", INGRESS_CLASS),
        ("clusterrolebinding", f"{NAMESPACE}-{NAME}"),
        ("clusterrole", f"{NAMESPACE}-{NAME}"),
        ("namespace", NAMESPACE),
    ):
        kube.kubectl("delete", kind, name, "--ignore-not-found", "--wait=false", check=False)


def wait_http(url: str, timeout: float, headers: Mapping[str, str] | None = None) -> None:
    """Poll url until it answers 200; raise TimeoutError with the last error."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            request = urllib.request.Request(url, headers=dict(headers or {}))
            with urllib.request.urlopen(request, timeout=3) as resp:
                if resp.status == 200:
                    return
                last = f"HTTP {resp.status}"
        except urllib.error.HTTPError as err:
            last = f"HTTP {err.code}"
        except (urllib.error.URLError, OSError) as err:
            last = str(err)
        time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer 200 within {timeout:.0f} s (last: {last})")
