"""A real node: kubelet + containerd + runc, CNI bridge, kube-proxy, CoreDNS, controllers.

Every check goes through the real component: the readiness probe is the kubelet's, the
ClusterIP answers through kube-proxy's iptables rules, names resolve through the CoreDNS
pod, `kubectl exec` goes apiserver -> kubelet (client cert, webhook authn/authz), and a
namespace deletion needs the namespace controller and the garbage collector.
"""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from devstack.process import descendants
from kubetools.cluster import (
    CHAIN_PREFIXES,
    ISOLATION_CHAIN,
    NODE_NAME,
    Cluster,
    cleanup,
    cluster_processes,
    leftovers,
)
from kubetools.paths import CACHE_DIR, REPO_ROOT, versions

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

HTTPD_PORT = 8080
PAGE = "hello from a pod on sapi0"


def _json(cluster: Cluster, *args: str) -> Any:
    return json.loads(cluster.kubectl(*args, "-o", "json").stdout)


def _wait(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.5)


def _web(image: str, name: str, probe_path: str) -> list[dict[str, Any]]:
    """A Deployment serving PAGE with busybox httpd, readiness probe on probe_path."""
    labels = {"app": name}
    script = (
        f"mkdir -p /tmp/www && echo '{PAGE}' > /tmp/www/index.html && "
        f"exec /bin/busybox httpd -f -p {HTTPD_PORT} -h /tmp/www"
    )
    return [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "terminationGracePeriodSeconds": 1,
                        "containers": [
                            {
                                "name": "httpd",
                                "image": image,
                                "imagePullPolicy": "Never",
                                "command": ["/bin/busybox", "sh", "-c", script],
                                "ports": [{"containerPort": HTTPD_PORT}],
                                "readinessProbe": {
                                    "httpGet": {"path": probe_path, "port": HTTPD_PORT},
                                    "periodSeconds": 1,
                                    "failureThreshold": 1,
                                },
                            }
                        ],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name},
            "spec": {
                "selector": labels,
                "ports": [{"port": 80, "targetPort": HTTPD_PORT, "protocol": "TCP"}],
            },
        },
    ]


@pytest.fixture(scope="module")
def app(cluster: Cluster, busybox_image: str) -> Iterator[dict[str, str]]:
    """A namespace with the `web` Deployment + Service and a `client` pod to exec into."""
    ns = cluster.create_namespace(f"node-test-{os.getpid()}")
    cluster.kubectl("-n", ns, "apply", "-f", "-", input=_yaml(_web(busybox_image, "web", "/")))
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "client", "namespace": ns},
            "spec": {
                "terminationGracePeriodSeconds": 1,
                "containers": [
                    {
                        "name": "client",
                        "image": busybox_image,
                        "imagePullPolicy": "Never",
                        "command": ["/bin/busybox", "sleep", "3600"],
                    }
                ],
            },
        }
    )
    cluster.kubectl("-n", ns, "rollout", "status", "deployment/web", "--timeout=120s")
    cluster.kubectl("-n", ns, "wait", "--for=condition=Ready", "pod/client", "--timeout=120s")
    yield {"namespace": ns}
    if cluster.running:
        cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def _yaml(objects: list[dict[str, Any]]) -> str:
    import yaml

    return yaml.safe_dump_all(objects)


def _exec(cluster: Cluster, ns: str, *argv: str, check: bool = True) -> str:
    out = cluster.kubectl("-n", ns, "exec", "client", "--", "/bin/busybox", *argv, check=check)
    return out.stdout


def _wget(cluster: Cluster, ns: str, url: str) -> str:
    # Not `wget -T`: Debian's busybox-static 1.35 wget segfaults with -T (docs/cluster.md).
    return _exec(cluster, ns, "timeout", "10", "/bin/busybox", "wget", "-q", "-O", "-", url)


def test_node_is_ready_with_pinned_kubelet_and_pod_cidr(cluster: Cluster) -> None:
    node = _json(cluster, "get", "node", NODE_NAME)
    conditions = {c["type"]: c["status"] for c in node["status"]["conditions"]}
    assert conditions["Ready"] == "True", conditions
    assert node["status"]["nodeInfo"]["kubeletVersion"] == versions()["KUBE_VERSION"]
    assert node["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("containerd://")
    # Node IPAM (kube-controller-manager) gave the node the range the CNI config uses.
    assert node["spec"]["podCIDR"] == cluster.network.pod_cidr
    addresses = {a["type"]: a["address"] for a in node["status"]["addresses"]}
    assert addresses["InternalIP"] == cluster.network.node_ip
    system = _json(cluster, "-n", "kube-system", "get", "pods")["items"]
    assert [p["status"]["phase"] for p in system] == ["Running"], system


def test_deployment_pod_becomes_ready_on_the_bridge(cluster: Cluster, app: dict[str, str]) -> None:
    ns = app["namespace"]
    pod = _json(cluster, "-n", ns, "get", "pods", "-l", "app=web")["items"][0]
    ready = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
    assert ready["Ready"] == "True"
    ip = ipaddress.ip_address(pod["status"]["podIP"])
    assert ip in ipaddress.ip_network(cluster.network.pod_cidr)
    # The host reaches the pod directly over the bridge.
    with urllib.request.urlopen(f"http://{ip}:{HTTPD_PORT}/", timeout=5) as resp:
        assert resp.read().decode().strip() == PAGE
    # Real pods get a ServiceAccount token (ServiceAccount admission + token signing).
    token = _exec(cluster, ns, "cat", "/var/run/secrets/kubernetes.io/serviceaccount/token")
    assert token.count(".") == 2


def test_readiness_probe_failing_keeps_pod_unready(
    cluster: Cluster, cluster_namespace: str, busybox_image: str
) -> None:
    """The kubelet really probes: the same pod with a probe path that 404s never gets Ready."""
    ns = cluster_namespace
    cluster.kubectl("-n", ns, "apply", "-f", "-", input=_yaml(_web(busybox_image, "web", "/nope")))

    def running() -> bool:
        pods = _json(cluster, "-n", ns, "get", "pods", "-l", "app=web")["items"]
        statuses = pods[0]["status"].get("containerStatuses", []) if pods else []
        return bool(statuses) and "running" in statuses[0]["state"]

    _wait(running, 60, "the httpd container to run")
    time.sleep(5)  # five probe periods
    pod = _json(cluster, "-n", ns, "get", "pods", "-l", "app=web")["items"][0]
    ready = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
    assert ready["Ready"] == "False"
    endpoints = _json(
        cluster, "-n", ns, "get", "endpointslices", "-l", "kubernetes.io/service-name=web"
    )
    assert all(
        not e["conditions"].get("ready")
        for s in endpoints["items"]
        for e in s.get("endpoints") or []
    )


def test_cluster_ip_service_answers_through_kube_proxy(
    cluster: Cluster, app: dict[str, str]
) -> None:
    ns = app["namespace"]
    service = _json(cluster, "-n", ns, "get", "service", "web")
    cluster_ip = service["spec"]["clusterIP"]
    assert ipaddress.ip_address(cluster_ip) in ipaddress.ip_network(cluster.network.service_cidr)
    # kube-proxy programmed a KUBE-SVC chain for it (iptables mode).
    nat = subprocess.run(["iptables-save", "-t", "nat"], capture_output=True, text=True).stdout
    assert any(f"-d {cluster_ip}/32" in line and "KUBE-SVC-" in line for line in nat.splitlines())
    # From the host (OUTPUT DNAT) and from another pod (PREROUTING DNAT, same bridge).
    with urllib.request.urlopen(f"http://{cluster_ip}/", timeout=5) as resp:
        assert resp.read().decode().strip() == PAGE
    assert _wget(cluster, ns, f"http://{cluster_ip}/").strip() == PAGE


def test_coredns_resolves_the_service_name_from_another_pod(
    cluster: Cluster, app: dict[str, str]
) -> None:
    ns = app["namespace"]
    cluster_ip = _json(cluster, "-n", ns, "get", "service", "web")["spec"]["clusterIP"]
    fqdn = f"web.{ns}.svc.cluster.local"
    resolv = _exec(cluster, ns, "cat", "/etc/resolv.conf")
    assert f"nameserver {cluster.network.dns_ip}" in resolv
    answer = _exec(cluster, ns, "nslookup", fqdn, cluster.network.dns_ip)
    assert cluster_ip in answer, answer
    # The short name through the pod's search path, then HTTP by name.
    page = _wget(cluster, ns, "http://web/")
    assert page.strip() == PAGE
    # CoreDNS has no upstream: names outside the cluster do not resolve (nothing leaves).
    missing = _exec(cluster, ns, "nslookup", "example.com.", cluster.network.dns_ip, check=False)
    assert "93.184" not in missing and "Address: " not in missing.split("Name:", 1)[-1]


def test_namespace_deletion_completes(cluster: Cluster, busybox_image: str) -> None:
    ns = cluster.create_namespace(f"doomed-{os.getpid()}")
    cluster.kubectl("-n", ns, "create", "configmap", "data", "--from-literal=k=v")
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "sleeper", "namespace": ns},
            "spec": {
                "terminationGracePeriodSeconds": 1,  # busybox sleep as PID 1 ignores SIGTERM
                "containers": [
                    {
                        "name": "sleeper",
                        "image": busybox_image,
                        "imagePullPolicy": "Never",
                        "command": ["/bin/busybox", "sleep", "3600"],
                    }
                ],
            },
        }
    )
    cluster.kubectl("-n", ns, "wait", "--for=condition=Ready", "pod/sleeper", "--timeout=60s")
    cluster.kubectl("delete", "namespace", ns, "--wait=false")
    # The namespace controller deletes the contents (the kubelet kills the pod) and the
    # namespace finalizer goes: the namespace disappears instead of staying Terminating.
    _wait(
        lambda: cluster.kubectl("get", "namespace", ns, check=False).returncode != 0,
        90,
        f"namespace {ns} to be deleted",
    )


def test_pod_traffic_cannot_be_forwarded_off_the_bridge(cluster: Cluster) -> None:
    """First in mangle FORWARD (before kube-proxy's accepts): only bridge-to-bridge passes."""
    forward = subprocess.run(
        ["iptables", "-w", "-t", "mangle", "-S", "FORWARD"], capture_output=True, text=True
    ).stdout.splitlines()
    assert forward[1] == f"-A FORWARD -j {ISOLATION_CHAIN}", forward
    rules = subprocess.run(
        ["iptables", "-w", "-t", "mangle", "-S", ISOLATION_CHAIN], capture_output=True, text=True
    ).stdout
    bridge = cluster.network.bridge
    assert f"-i {bridge} -o {bridge}" in rules and "-j RETURN" in rules
    assert f"-A {ISOLATION_CHAIN} -i {bridge} -m comment" in rules and "-j DROP" in rules
    cni = json.loads(next((cluster.state_dir / "cni" / "net.d").glob("*.conflist")).read_text())
    assert cni["plugins"][0]["ipMasq"] is False


@pytest.fixture
def outside_host() -> Iterator[str]:
    """An HTTP server in a network namespace of our own, routed from the host (not a pod).

    10.233.250.2 sits behind a veth pair: the host reaches it directly; a pod reaches it
    only if the host forwards the pod's packet off the bridge, which it must never do.
    Everything stays on this machine, in namespaces this fixture makes and removes.
    """
    ns, host_if = "sapi-test-outside", "sapi-out0"
    # `ip netns add` creates /run/netns and bind-mounts it onto itself: undo that too.
    netns_dir_existed = Path("/run/netns").exists()
    run = lambda *a: subprocess.run(list(a), check=True, capture_output=True)  # noqa: E731
    server: subprocess.Popen[bytes] | None = None
    try:
        run("ip", "netns", "add", ns)
        run("ip", "link", "add", host_if, "type", "veth", "peer", "name", "eth0", "netns", ns)
        run("ip", "addr", "add", "10.233.250.1/30", "dev", host_if)
        run("ip", "link", "set", host_if, "up")
        run("ip", "-n", ns, "addr", "add", "10.233.250.2/30", "dev", "eth0")
        run("ip", "-n", ns, "link", "set", "eth0", "up")
        run("ip", "-n", ns, "link", "set", "lo", "up")
        run("ip", "-n", ns, "route", "add", "10.233.64.0/24", "via", "10.233.250.1")
        server = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-m", "http.server", "8080",
             "--bind", "10.233.250.2"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip

        def serving() -> bool:
            try:
                with urllib.request.urlopen("http://10.233.250.2:8080/", timeout=1):
                    return True
            except OSError:
                return False

        _wait(serving, 20, "the outside HTTP server")
        yield "10.233.250.2"
    finally:
        if server is not None:
            server.kill()
            server.wait()
        subprocess.run(["ip", "link", "del", host_if], capture_output=True)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        if not netns_dir_existed and not any(Path("/run/netns").iterdir()):
            subprocess.run(["umount", "/run/netns"], capture_output=True)
            Path("/run/netns").rmdir()


def _drops(bridge: str) -> int:
    out = subprocess.run(
        ["iptables", "-w", "-t", "mangle", "-L", ISOLATION_CHAIN, "-v", "-x", "-n"],
        capture_output=True,
        text=True,
    ).stdout
    for line in out.splitlines():
        fields = line.split()
        if len(fields) > 5 and fields[2] == "DROP" and fields[5] == bridge:
            return int(fields[0])
    raise AssertionError(f"no DROP rule for -i {bridge} in {ISOLATION_CHAIN}:\n{out}")


def test_pod_cannot_reach_an_address_beyond_the_host(
    cluster: Cluster, app: dict[str, str], outside_host: str
) -> None:
    ns, bridge = app["namespace"], cluster.network.bridge
    before = _drops(bridge)
    # The host can (local route); the pod's packet must be dropped, not forwarded.
    with urllib.request.urlopen(f"http://{outside_host}:8080/", timeout=5) as resp:
        assert resp.status == 200
    out = cluster.kubectl(
        "-n", ns, "exec", "client", "--", "/bin/busybox", "timeout", "5", "/bin/busybox",
        "wget", "-q", "-O", "-", f"http://{outside_host}:8080/", check=False,
    )  # fmt: skip
    assert out.returncode != 0, out.stdout
    assert _drops(bridge) > before


# -- teardown: these run last (conftest moves every test using cluster_teardown) --------------


def _assert_nothing_left(state_dir: Path, bridge: str, before: set[int]) -> None:
    """Nothing of the cluster is left; `before` are this process's children that are not
    the cluster's (the session's PostgreSQL, Redis and friends), taken before it started."""
    assert leftovers(state_dir) == []
    assert [p for p in descendants(os.getpid()) if p not in before] == [], "child processes left"
    mounts = Path("/proc/self/mountinfo").read_text()
    assert str(state_dir) not in mounts
    netns = Path("/run/netns")
    assert not (netns.is_dir() and list(netns.glob("cni-*")))
    assert not Path("/sys/class/net", bridge).exists()
    for binary in ("iptables-save", "ip6tables-save"):
        rules = subprocess.run([binary], capture_output=True, text=True).stdout
        assert not [
            line
            for line in rules.splitlines()
            if line.startswith(":") and line[1:].startswith(CHAIN_PREFIXES)
        ]
    shims = subprocess.run(
        ["pgrep", "-af", "containerd-shim"], capture_output=True, text=True
    ).stdout
    assert str(state_dir) not in shims


def test_down_leaves_nothing_behind(cluster_teardown: Cluster) -> None:
    cluster = cluster_teardown
    state_dir = cluster.state_dir
    ours = cluster_processes(state_dir)
    assert ours, "the cluster should be running before down()"
    for pid in list(ours):
        ours += descendants(pid)
    before = set(descendants(os.getpid())) - set(ours)
    cluster.down()
    _assert_nothing_left(state_dir, cluster.network.bridge, before)


def test_killed_up_is_cleaned_by_the_next_up_and_by_down(cluster_teardown: Cluster) -> None:
    """SIGKILL a detached `up`: containers, shims, mounts, bridge and chains stay behind;
    a second `up` clears them and starts; `down` then leaves nothing."""
    assert not cluster_teardown.running
    state_dir = CACHE_DIR / "cluster-tests-killed"
    cli = [sys.executable, str(REPO_ROOT / "scripts" / "cluster.py")]
    args = ["--state-dir", str(state_dir)]

    def up() -> int:
        subprocess.run([*cli, "up", "--detach", *args], check=True, timeout=600)
        supervisor = json.loads((state_dir / "state.json").read_text())["supervisor"]
        assert isinstance(supervisor, int)
        return supervisor

    before = set(descendants(os.getpid()))
    try:
        os.kill(up(), signal.SIGKILL)
        _wait(
            lambda: not any("kube-apiserver" in str(p) for p in _exes(state_dir)), 30, "pdeathsig"
        )
        left = leftovers(state_dir)
        assert any(item.startswith("process") for item in left), left  # shims + containers
        assert any(item.startswith("mount") for item in left), left
        assert any(item.startswith("link") for item in left), left
        assert any("chain KUBE-" in item for item in left), left
        supervisor = up()  # must clean the killed run's leftovers first
        assert subprocess.run([*cli, "status", *args], capture_output=True).returncode == 0
    finally:
        subprocess.run([*cli, "down", *args], check=False, timeout=300)
    assert not Path(f"/proc/{supervisor}").exists() or "kubetools" not in Path(
        f"/proc/{supervisor}/cmdline"
    ).read_text(errors="replace")
    _assert_nothing_left(state_dir, cluster_teardown.network.bridge, before)
    cleanup(state_dir)  # idempotent


def _exes(state_dir: Path) -> list[str]:
    names = []
    for pid in cluster_processes(state_dir):
        try:  # a process may exit between the listing and this read
            names.append(Path(f"/proc/{pid}/comm").read_text().strip())
        except OSError:
            continue
    return names
