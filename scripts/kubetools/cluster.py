"""A real one-node Kubernetes cluster on this machine, started and stopped from Python.

    with Cluster() as cluster:                       # or cluster = Cluster().up(); ...; down()
        cluster.kubectl("get", "nodes")
        cluster.import_image(archive)                # kubetools.images.build_scratch_image

Command line (PYTHONPATH=scripts, or `python scripts/cluster.py ...`):

    python -m kubetools.cluster up [--detach]   # foreground until Ctrl-C; --detach returns
    python -m kubetools.cluster status
    python -m kubetools.cluster down            # also cleans up after a SIGKILLed `up`

What runs (docs/cluster.md): etcd + kube-apiserver (kubetools.ControlPlane),
kube-controller-manager, kube-scheduler, containerd (Debian's, config of its own) with
runc, the kubelet, kube-proxy (iptables mode) and CoreDNS as a Deployment behind the
kube-dns Service. Pods sit on a CNI bridge (`sapi0`) with host-local IPAM and portmap.
Every process is a child of the process that called up() and dies with it (SIGKILL,
PR_SET_PDEATHSIG); logs are in <state dir>/logs.

Nothing leaves the machine: the pod and service ranges exist only here, the bridge has
no uplink, no masquerading is set up, a mangle-table chain drops every forwarded packet
that would leave the bridge, and CoreDNS has no upstream (no `forward` plugin).

One cluster per machine (fixed bridge name and ranges): up() takes a lock under
/run/structured-api-cluster and records its state directory there, so the next up() or
`down` finds what a killed run left behind (pids, mounts, links, iptables chains,
cgroups, sysctls) and removes it.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import ipaddress
import json
import os
import shlex
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import yaml

from kubetools.build import Binaries, ClusterBinaries, ensure_cluster_binaries
from kubetools.certs import Pki, issue_cert, write_pki
from kubetools.controlplane import CommandError, ControlPlane, StartupError
from kubetools.images import File, build_scratch_image, import_archive
from kubetools.paths import CACHE_DIR, versions
from kubetools.process import free_port, pid_alive, spawn, tail, terminate

DEFAULT_STATE_DIR = CACHE_DIR / "cluster"
# Machine-wide: the lock held while a cluster runs and the path of its state directory.
RUN_DIR = Path("/run/structured-api-cluster")
NODE_NAME = "sapi-node"
CLUSTER_DOMAIN = "cluster.local"
CNI_NETWORK = "sapi-pods"
CNI_BIN_DIR = Path("/usr/lib/cni")
# Pods' cgroups live under this parent in every hierarchy (kubelet cgroupRoot).
CGROUP_PARENT = "structured-api"
IMAGE_PREFIX = "localhost/structured-api"
# iptables chains this cluster creates: ours (SAPI-), kube-proxy's (KUBE-), portmap's.
CHAIN_PREFIXES = ("SAPI-", "KUBE-", "CNI-HOSTPORT-", "CNI-DN-")
ISOLATION_CHAIN = "SAPI-FORWARD"
# Host settings the kubelet (setupKernelTunables), kube-proxy or we change; restored on down.
SYSCTLS = (
    "net/ipv4/ip_forward",
    "net/ipv4/conf/all/route_localnet",
    "net/bridge/bridge-nf-call-iptables",
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
    "net/netfilter/nf_conntrack_max",
)
# Directories outside the state dir that containerd's shims, CNI and the kubelet create
# (hard-wired paths); removed on down when up() found them missing and they are empty.
HOST_DIRS = (
    "/run/containerd/s",
    "/run/containerd",
    "/var/lib/cni/results",
    "/var/lib/cni",
    "/var/log/containers",
    "/var/log/pods",
)
# Executables whose processes belong to a cluster when their command line names its state dir.
_OUR_EXECUTABLES = {
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "kube-proxy",
    "containerd",
    "containerd-shim-runc-v2",
    "crictl",
    "ctr",
    # Started beside the cluster by scripts/devcluster.py and the tests (kubetools.prometheus),
    # its config file in the state dir: `down` stops it with the rest.
    "prometheus",
}
# Debian packages providing the commands the cluster needs.
_HOST_COMMANDS = {
    "containerd": "containerd",
    "ctr": "containerd",
    "runc": "runc",
    "buildah": "buildah",
    "iptables": "iptables",
    "ip6tables": "iptables",
    "ip": "iproute2",
    "setpriv": "util-linux",
    "mount": "mount",
}


@dataclass(frozen=True)
class Network:
    """Address ranges that exist only on this machine (RFC 1918, unlikely to clash)."""

    bridge: str = "sapi0"
    pod_cidr: str = "10.233.64.0/24"
    service_cidr: str = "10.233.0.0/24"

    @property
    def node_ip(self) -> str:
        """The bridge's address: pods' gateway, the node's InternalIP, kube-apiserver's."""
        return str(next(ipaddress.ip_network(self.pod_cidr).hosts()))

    @property
    def kubernetes_service_ip(self) -> str:
        """ClusterIP of the `kubernetes` Service (the first of the service range)."""
        return str(next(ipaddress.ip_network(self.service_cidr).hosts()))

    @property
    def dns_ip(self) -> str:
        """ClusterIP of the kube-dns Service (CoreDNS), the tenth of the service range."""
        return str(ipaddress.ip_network(self.service_cidr)[10])


class ClusterError(RuntimeError):
    """The cluster could not be started, or something was left behind."""


# -- small host helpers -------------------------------------------------------------------------


def _run(argv: Sequence[str], *, check: bool = True, timeout: float = 60) -> str:
    result = subprocess.run(
        list(argv), capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        raise ClusterError(f"{shlex.join(argv)} exited {result.returncode}: {result.stderr}")
    return result.stdout


def _sysctl(key: str) -> str | None:
    try:
        return Path("/proc/sys", key).read_text().strip()
    except OSError:
        return None


def _set_sysctl(key: str, value: str) -> None:
    Path("/proc/sys", key).write_text(value + "\n")


def _link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)


def _ancestors() -> set[int]:
    pids, pid = {os.getpid()}, os.getpid()
    while pid > 1:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            break
        pid = int(stat.rsplit(")", 1)[1].split()[1])
        pids.add(pid)
    return pids


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and pid_alive(int(entry.name)):
            with contextlib.suppress(OSError, IndexError):
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry.name))
    return children


def cluster_processes(state_dir: Path) -> list[int]:
    """Pids of this cluster's processes: components, shims, and everything under a shim.

    A process is the cluster's when its executable is one of ours and its command line
    names the state directory (every component gets a path in it; a shim gets the
    containerd socket), or when it is the `kubetools.cluster` supervisor of that
    directory. Containers (pause, CoreDNS, test pods) are found as the shims' descendants.
    """
    marker = str(state_dir)
    found: list[int] = []
    shims: list[int] = []
    skip = _ancestors()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in skip:
            continue
        pid = int(entry.name)
        argv = _cmdline(pid)
        if not argv or not pid_alive(pid) or not any(marker in a for a in argv):
            continue
        exe = Path(argv[0]).name
        if exe in _OUR_EXECUTABLES:
            found.append(pid)
            if exe == "containerd-shim-runc-v2":
                shims.append(pid)
        elif "python" in exe and "kubetools.cluster" in argv:
            found.append(pid)
    children = _children_map()
    todo = list(shims)
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return sorted(set(found))


def _mounts_under(path: Path) -> list[str]:
    """Mount points at or below path, deepest (and most recent) first."""
    root = str(path)
    points: list[str] = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            point = line.split()[4].encode().decode("unicode_escape")
            if point == root or point.startswith(root + "/"):
                points.append(point)
    points.reverse()
    return sorted(points, key=lambda p: p.count("/"), reverse=True)


def _unmount_all(path: Path) -> None:
    for _ in range(10):
        points = _mounts_under(path)
        if not points:
            return
        for point in points:
            if subprocess.run(["umount", point], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", point], capture_output=True)


def _our_chains(binary: str, table: str) -> tuple[list[str], list[str]]:
    """Return (our chains, rules of the table) for iptables/ip6tables -t table -S."""
    result = subprocess.run([binary, "-w", "-t", table, "-S"], capture_output=True, text=True)
    if result.returncode != 0:
        return [], []
    rules = result.stdout.splitlines()
    chains = [
        line.split()[1]
        for line in rules
        if line.startswith("-N ") and line.split()[1].startswith(CHAIN_PREFIXES)
    ]
    return chains, rules


def _remove_chains() -> None:
    for binary in ("iptables", "ip6tables"):
        if shutil.which(binary) is None:
            continue
        for table in ("raw", "mangle", "nat", "filter"):
            chains, rules = _our_chains(binary, table)
            if not chains:
                continue
            for rule in rules:
                parts = shlex.split(rule)
                if (
                    parts[:1] == ["-A"]
                    and parts[1] not in chains
                    and any(parts[i + 1] in chains for i, p in enumerate(parts[:-1]) if p == "-j")
                ):
                    subprocess.run([binary, "-w", "-t", table, "-D", *parts[1:]], check=False)
            for flag in ("-F", "-X"):
                for chain in chains:
                    subprocess.run(
                        [binary, "-w", "-t", table, flag, chain], capture_output=True, check=False
                    )


def _nft_tables() -> list[str]:
    if shutil.which("nft") is None:
        return []
    out = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    return [line.removeprefix("table ").strip() for line in out.splitlines() if line.strip()]


def _nft_rule_count(table: str) -> int:
    out = subprocess.run(
        ["nft", "-j", "list", "table", *table.split()], capture_output=True, text=True
    ).stdout
    with contextlib.suppress(ValueError):
        return sum(1 for item in json.loads(out).get("nftables", []) if "rule" in item)
    return -1


def _cgroup_dirs() -> list[Path]:
    return [d / CGROUP_PARENT for d in Path("/sys/fs/cgroup").iterdir() if d.is_dir()]


def _remove_cgroups() -> None:
    for _ in range(20):
        left = [d for d in _cgroup_dirs() if d.exists()]
        if not left:
            return
        for top in left:
            dirs = sorted(
                (p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True
            )
            for d in [*dirs, top]:
                with contextlib.suppress(OSError):
                    d.rmdir()
        time.sleep(0.1)


def _kill(pids: Sequence[int], timeout: float = 10.0) -> list[int]:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    left = list(pids)
    while left and time.monotonic() < deadline:
        left = [p for p in left if pid_alive(p)]
        time.sleep(0.05)
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass
    return left


# -- cleanup and leftovers ------------------------------------------------------------------------


def leftovers(state_dir: Path, network: Network | None = None) -> list[str]:
    """Describe what a cluster of state_dir left on this machine (empty when nothing)."""
    state_dir = Path(state_dir).resolve()
    state = _read_json(state_dir / "state.json")
    net = network or Network(**state.get("network", {}))
    found: list[str] = []
    for pid in cluster_processes(state_dir):
        found.append(f"process {pid}: {shlex.join(_cmdline(pid))[:160]}")
    found += [f"mount {p}" for p in _mounts_under(state_dir)]
    netns = Path("/run/netns")
    if netns.is_dir():
        found += [f"network namespace {p}" for p in netns.glob("cni-*")]
    if _link_exists(net.bridge):
        found.append(f"link {net.bridge}")
    for binary in ("iptables", "ip6tables"):
        if shutil.which(binary):
            for table in ("raw", "mangle", "nat", "filter"):
                found += [f"{binary} -t {table} chain {c}" for c in _our_chains(binary, table)[0]]
    baseline = state.get("nft_tables_before")
    if baseline is not None:
        found += [f"nft table {t}" for t in _nft_tables() if t not in baseline]
    found += [f"cgroup {d}" for d in _cgroup_dirs() if d.exists()]
    found += [f"directory {d}" for d in state.get("host_dirs_created", []) if Path(d).exists()]
    for key, value in state.get("sysctls_before", {}).items():
        now = _sysctl(key)
        if now is not None and now != value:
            found.append(f"sysctl {key} = {now} (was {value})")
    shim_sockets = [p for p in Path("/run/containerd/s").glob("*") if p.is_socket()]
    for sock in shim_sockets if state.get("shim_sockets_before") is not None else []:
        if sock.name not in state["shim_sockets_before"]:
            found.append(f"shim socket {sock}")
    return found


def cleanup(state_dir: Path, say: Callable[[str], None] | None = None) -> list[str]:
    """Remove everything a cluster of state_dir left behind; return what could not go.

    Works from what the state directory holds (state.json: network, sysctls and nft
    tables as they were before up) and from what the machine shows (processes naming the
    state dir, mounts under it, our iptables chains), so it also works after `up` was
    SIGKILLed halfway. Safe to run any number of times.
    """
    state_dir = Path(state_dir).resolve()
    state = _read_json(state_dir / "state.json")
    net = Network(**state.get("network", {}))
    note = say or (lambda _msg: None)

    # 1. Processes: the supervisor first (it would restart nothing, but it holds the lock).
    pids = cluster_processes(state_dir)
    if pids:
        note(f"killing {len(pids)} leftover processes")
        _kill(pids)
    # 2. Mounts: kubelet's root dir and volumes, sandbox shm, netns, overlay rootfs.
    _unmount_all(state_dir)
    # 3. Network: veths go with their netns; the bridge, its routes and our chains go here.
    if _link_exists(net.bridge):
        for veth in Path("/sys/class/net").iterdir():
            if (veth / "master").resolve().name == net.bridge:
                _run(["ip", "link", "del", veth.name], check=False)
        _run(["ip", "link", "del", net.bridge], check=False)
    _remove_chains()
    for table in _nft_tables():
        if table not in state.get("nft_tables_before", [table]) and _nft_rule_count(table) == 0:
            _run(["nft", "delete", "table", *table.split()], check=False)
    # 4. Host settings the kubelet, kube-proxy or up() changed.
    for key, value in state.get("sysctls_before", {}).items():
        if _sysctl(key) not in (None, value):
            with contextlib.suppress(OSError):
                _set_sysctl(key, value)
    _remove_cgroups()
    # 5. Files outside the state dir: the kubelet's /var/log/containers links, CNI's cache.
    with contextlib.suppress(OSError):
        for link in Path("/var/log/containers").iterdir():
            if link.is_symlink() and os.readlink(link).startswith(str(state_dir)):
                link.unlink()
    # libcni caches each ADD as <network>-<sandbox id>-<ifname>: ours and containerd's
    # built-in loopback network (cni-loopback) for every sandbox of this cluster.
    sandboxes = {
        p.name for p in state_dir.glob("containerd/*/io.containerd.grpc.v1.cri/sandboxes/*")
    }
    with contextlib.suppress(OSError):
        for cached in Path("/var/lib/cni/results").iterdir():
            network_id = cached.name.rsplit("-", 1)[0]
            if network_id.startswith(f"{CNI_NETWORK}-") or any(
                network_id.endswith(f"-{sandbox}") for sandbox in sandboxes
            ):
                cached.unlink()
    before = state.get("shim_sockets_before")
    if before is not None:
        for sock in Path("/run/containerd/s").glob("*"):
            if sock.is_socket() and sock.name not in before:
                with contextlib.suppress(OSError):
                    sock.unlink()
    for directory in state.get("host_dirs_created", []):
        # Empty directories only (ctr and the shims also make fifo/ and runc/<ns>/ there):
        # never anyone's files.
        tree = Path(directory)
        if tree.is_dir() and not tree.is_symlink():
            for sub in sorted(tree.rglob("*"), key=lambda p: len(p.parts), reverse=True):
                if sub.is_dir() and not sub.is_symlink():
                    with contextlib.suppress(OSError):
                        sub.rmdir()
        with contextlib.suppress(OSError):
            tree.rmdir()
    # 6. Big directories (images, container layers, pod volumes), once nothing is mounted.
    if not _mounts_under(state_dir):
        for name in ("containerd", "kubelet", "control-plane/etcd-data", "prometheus/data"):
            shutil.rmtree(state_dir / name, ignore_errors=True)
    if state:
        state["phase"] = "down"
        _write_json(state_dir / "state.json", state)
    pointer = RUN_DIR / "state-dir"
    with contextlib.suppress(OSError):
        if pointer.read_text().strip() == str(state_dir):
            pointer.unlink()
    return leftovers(state_dir, net)


def last_state_dir() -> Path | None:
    """The state directory of the last `up` on this machine, running or not (for cleanup)."""
    with contextlib.suppress(OSError):
        text = (RUN_DIR / "state-dir").read_text().strip()
        return Path(text) if text else None
    return None


def running_state_dir() -> Path | None:
    """The state directory of the cluster running on this machine, None when none runs.

    Running means an `up` holds /run/structured-api-cluster/lock (a killed one does not).
    """
    state_dir = last_state_dir()
    if state_dir is None:
        return None
    try:
        with open(RUN_DIR / "lock") as probe:
            fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return state_dir  # held: a cluster is up (or starting)
    except OSError:
        return None
    return None


# -- the cluster --------------------------------------------------------------------------------


class _Progress:
    """One line per stage: `[cluster  12.3s] kubelet: node sapi-node Ready (8.1 s)`."""

    def __init__(self, say: Callable[[str], None]) -> None:
        self.say = say
        self.began = time.monotonic()

    def line(self, message: str) -> None:
        self.say(f"[cluster {time.monotonic() - self.began:6.1f}s] {message}")

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[dict[str, str]]:
        t0 = time.monotonic()
        detail: dict[str, str] = {}
        yield detail
        extra = f": {detail['done']}" if "done" in detail else ""
        self.line(f"{name}{extra} ({time.monotonic() - t0:.1f} s)")


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Cluster:
    """etcd, kube-apiserver, controller-manager, scheduler, containerd, kubelet, kube-proxy,
    CoreDNS: a real one-node cluster whose processes are all children of this process.

    state_dir holds certificates, configs, logs (logs/), containerd's and the kubelet's
    data and the kubeconfig (`kubeconfig`, admin). kubectl()/helm() run as the admin.
    """

    def __init__(
        self,
        state_dir: Path = DEFAULT_STATE_DIR,
        *,
        network: Network | None = None,
        say: Callable[[str], None] = _stderr,
        start_timeout: float = 180.0,
    ) -> None:
        self.state_dir = Path(state_dir).resolve()
        self.network = network or Network()
        self.node_name = NODE_NAME
        self.start_timeout = start_timeout
        self._progress = _Progress(say)
        self._lock: IO[str] | None = None
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._state: dict[str, Any] = {}
        self.control_plane: ControlPlane | None = None
        self.binaries: Binaries | None = None
        self.node_binaries: ClusterBinaries | None = None
        self.timings: dict[str, float] = {}

    # -- paths and helpers for users -------------------------------------------------------------

    @property
    def running(self) -> bool:
        """True between a successful up() (or one in progress) and down()."""
        return self._lock is not None

    @property
    def logs_dir(self) -> Path:
        """One log file per component (etcd and kube-apiserver: control-plane/)."""
        return self.state_dir / "logs"

    @property
    def kubeconfig(self) -> Path:
        """Admin kubeconfig (static token, group system:masters)."""
        return self.state_dir / "kubeconfig"

    @property
    def containerd_socket(self) -> Path:
        """The cluster's containerd (kubetools.images.import_archive takes the cluster)."""
        return self.state_dir / "containerd" / "containerd.sock"

    @property
    def pids(self) -> dict[str, int]:
        """Pids of the running components."""
        found = {name: p.pid for name, p in self._procs.items() if p.poll() is None}
        if self.control_plane is not None:
            found.update(zip(("etcd", "kube-apiserver"), self.control_plane.pids, strict=False))
        return found

    def _cp(self) -> ControlPlane:
        if self.control_plane is None:
            raise ClusterError("the cluster is not up")
        return self.control_plane

    def env(self) -> dict[str, str]:
        """Environment for kubectl/helm/clients as the admin (KUBECONFIG set)."""
        return {**self._cp().env(), "KUBECONFIG": str(self.kubeconfig)}

    def kubectl(
        self, *args: str, check: bool = True, input: str | None = None, timeout: float = 120.0
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl as the admin; raise CommandError (stderr in str()) if check fails."""
        return self._cp().kubectl(*args, check=check, input=input, timeout=timeout)

    def helm(
        self, *args: str, check: bool = True, input: str | None = None, timeout: float = 300.0
    ) -> subprocess.CompletedProcess[str]:
        """Run helm as the admin; raise CommandError if check fails."""
        return self._cp().helm(*args, check=check, input=input, timeout=timeout)

    def apply(self, *manifests: Mapping[str, Any]) -> None:
        """kubectl apply the given objects (dicts, as yaml.safe_load returns them)."""
        self.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(list(manifests)))

    def import_image(self, archive: Path) -> list[str]:
        """Import an oci-archive (kubetools.images) into the node; return its references."""
        return import_archive(self, archive)

    def create_namespace(self, name: str, timeout: float = 60.0) -> str:
        """Create a namespace and wait for its `default` ServiceAccount (pods need it)."""
        self.kubectl("create", "namespace", name)
        self.wait_for(
            lambda: self.kubectl("-n", name, "get", "sa", "default", check=False).returncode == 0,
            timeout,
            f"ServiceAccount default in {name}",
        )
        return name

    def wait_for(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        """Poll condition every 0.5 s; raise ClusterError naming `what` after timeout."""
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise ClusterError(f"timed out after {timeout:.0f} s waiting for {what}")
            for name, proc in self._procs.items():
                if proc.poll() is not None:
                    log = self.logs_dir / f"{name}.log"
                    raise ClusterError(
                        f"{name} exited with {proc.returncode} while waiting for {what}; "
                        f"log {log}:\n{tail(log)}"
                    )
            time.sleep(0.5)

    # -- up -----------------------------------------------------------------------------------

    def up(self) -> Cluster:
        """Start everything; return self once the node is Ready and CoreDNS answers."""
        try:
            self._up()
        except BaseException:
            self._progress.line("start-up failed; cleaning up")
            try:
                self.down()
            except Exception as err:  # keep the start-up error: it is the one that matters
                self._progress.line(f"clean-up after the failed start-up: {err}")
            raise
        return self

    def _up(self) -> None:
        began = time.monotonic()
        progress = self._progress
        _preflight()
        self._take_lock()
        with progress.stage("leftovers of earlier runs") as d:
            previous = last_state_dir()
            left: list[str] = []
            for directory in {self.state_dir, previous or self.state_dir}:
                left += cleanup(directory, progress.line)
            if left:
                raise ClusterError("could not clean up an earlier run:\n" + "\n".join(left))
            for name in ("containerd", "kubelet", "control-plane", "logs", "pki", "cni"):
                shutil.rmtree(self.state_dir / name, ignore_errors=True)
            d["done"] = "removed" if previous else "none"
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.logs_dir.mkdir(exist_ok=True)
        RUN_DIR.mkdir(parents=True, exist_ok=True)
        (RUN_DIR / "state-dir").write_text(f"{self.state_dir}\n")
        self._state = {
            "phase": "starting",
            "supervisor": os.getpid(),
            "network": vars(self.network) | {},
            "node": self.node_name,
            "kubeconfig": str(self.kubeconfig),
            "sysctls_before": {k: v for k in SYSCTLS if (v := _sysctl(k)) is not None},
            "nft_tables_before": _nft_tables(),
            "shim_sockets_before": sorted(p.name for p in Path("/run/containerd/s").glob("*")),
            "host_dirs_created": [d for d in HOST_DIRS if not Path(d).exists()],
            "pids": {},
        }
        self._save()

        with progress.stage("binaries") as d:
            self.binaries, self.node_binaries = ensure_cluster_binaries()
            d["done"] = f"Kubernetes {versions()['KUBE_VERSION']}, cached"
        with progress.stage("host network") as d:
            self._setup_network()
            d["done"] = (
                f"bridge {self.network.bridge} {self.network.node_ip}, pods "
                f"{self.network.pod_cidr}, services {self.network.service_cidr}"
            )
        with progress.stage("certificates"):
            pki = self._write_pki()
        with progress.stage("etcd + kube-apiserver") as d:
            self.control_plane = ControlPlane(
                self.state_dir / "control-plane",
                binaries=self.binaries,
                start_timeout=self.start_timeout,
                host=self.network.node_ip,
                pki=pki,
                apiserver_flags=self._apiserver_flags(pki),
            )
            self._state["pids"].update(
                zip(("etcd", "kube-apiserver"), self.control_plane.pids, strict=False)
            )
            shutil.copy2(self.control_plane.kubeconfig, self.kubeconfig)
            self._save()
            d["done"] = self.control_plane.server
        with progress.stage("kube-controller-manager + kube-scheduler"):
            self._start_controllers(pki)
        with progress.stage("containerd + images") as d:
            refs = self._start_containerd()
            d["done"] = ", ".join(refs)
        with progress.stage("kubelet") as d:
            self._start_kubelet(pki)
            d["done"] = f"node {self.node_name} Ready"
        with progress.stage("kube-proxy (iptables)"):
            self._start_kube_proxy()
        with progress.stage("CoreDNS") as d:
            self._start_coredns()
            d["done"] = f"kube-dns {self.network.dns_ip}"
        self._state["phase"] = "ready"
        self._save()
        self.timings["up"] = time.monotonic() - began
        progress.line(f"cluster up in {self.timings['up']:.1f} s; KUBECONFIG={self.kubeconfig}")

    def _take_lock(self) -> None:
        RUN_DIR.mkdir(parents=True, exist_ok=True)
        lock = open(RUN_DIR / "lock", "w")  # noqa: SIM115 - held until down()
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise ClusterError(
                f"another cluster is up on this machine (state dir {last_state_dir()}); "
                "stop it with `python scripts/cluster.py down` first"
            ) from None
        self._lock = lock

    def _save(self) -> None:
        _write_json(self.state_dir / "state.json", self._state)

    def _start(
        self,
        name: str,
        argv: Sequence[str | os.PathLike[str]],
        ready: Callable[[], bool],
        what: str,
    ) -> None:
        env = {**os.environ, "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
        self._procs[name] = spawn(argv, self.logs_dir / f"{name}.log", env, new_session=True)
        self._state["pids"][name] = self._procs[name].pid
        self._save()
        self.wait_for(ready, self.start_timeout, what)

    # -- network, certificates ------------------------------------------------------------

    def _setup_network(self) -> None:
        net = self.network
        _run(["ip", "link", "add", net.bridge, "type", "bridge"])
        prefix = ipaddress.ip_network(net.pod_cidr).prefixlen
        _run(["ip", "addr", "add", f"{net.node_ip}/{prefix}", "dev", net.bridge])
        _run(["ip", "link", "set", net.bridge, "up"])
        # Service IPs the host dials before kube-proxy's DNAT (or without it) stay local.
        _run(["ip", "route", "add", net.service_cidr, "dev", net.bridge])
        forwarding_was_on = _sysctl("net/ipv4/ip_forward") == "1"
        # Forwarding isolation first, then forwarding on: no window where a pod packet leaves.
        chain = ["iptables", "-w", "-t", "mangle"]
        comment = ["-m", "comment", "--comment"]
        _run([*chain, "-N", ISOLATION_CHAIN])
        rules = [
            ["-i", net.bridge, "-o", net.bridge, "-j", "RETURN", *comment, "pod to pod"],
            ["-i", net.bridge, "-j", "DROP", *comment, "pod traffic never leaves the machine"],
            ["-o", net.bridge, "-j", "DROP", *comment, "nothing from outside reaches pods"],
        ]
        if not forwarding_was_on:
            rules.append(["-j", "DROP", *comment, "ip_forward was 0 before the cluster"])
        for rule in rules:
            _run([*chain, "-A", ISOLATION_CHAIN, *rule])
        _run([*chain, "-I", "FORWARD", "1", "-j", ISOLATION_CHAIN])
        _set_sysctl("net/ipv4/ip_forward", "1")
        if _sysctl("net/bridge/bridge-nf-call-iptables") != "1":
            # Service traffic between two pods on one bridge must pass kube-proxy's rules.
            _set_sysctl("net/bridge/bridge-nf-call-iptables", "1")
        # Pods' cgroups: the kubelet wants its cgroupRoot to exist in every hierarchy.
        for directory in _cgroup_dirs():
            directory.mkdir(exist_ok=True)
            if directory.parent.name == "cpuset":
                for knob in ("cpuset.cpus", "cpuset.mems"):
                    (directory / knob).write_text((directory.parent / knob).read_text())

    def _write_pki(self) -> Pki:
        net = self.network
        pki = write_pki(
            self.state_dir / "pki",
            days=30,
            hosts=[
                net.node_ip,
                net.kubernetes_service_ip,
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                f"kubernetes.default.svc.{CLUSTER_DOMAIN}",
            ],
        )
        clients = {
            "apiserver-kubelet-client": ("kube-apiserver-kubelet-client", ["system:masters"]),
            "controller-manager": ("system:kube-controller-manager", []),
            "scheduler": ("system:kube-scheduler", []),
            "kube-proxy": ("system:kube-proxy", []),
            "kubelet-client": (f"system:node:{self.node_name}", ["system:nodes"]),
        }
        for name, (cn, orgs) in clients.items():
            issue_cert(pki, name, cn, orgs)
        issue_cert(
            pki,
            "kubelet-serving",
            f"system:node:{self.node_name}",
            ["system:nodes"],
            hosts=[net.node_ip, self.node_name],
        )
        return pki

    def _apiserver_flags(self, pki: Pki) -> dict[str, str | None]:
        d = pki.ca_cert.parent
        return {
            "--service-cluster-ip-range": self.network.service_cidr,
            # Real pods get tokens: the ServiceAccount admission plugin stays on.
            "--disable-admission-plugins": None,
            "--enable-admission-plugins": "NodeRestriction",
            "--authorization-mode": "Node,RBAC",
            "--client-ca-file": str(pki.ca_cert),
            "--kubelet-client-certificate": str(d / "apiserver-kubelet-client.crt"),
            "--kubelet-client-key": str(d / "apiserver-kubelet-client.key"),
            "--kubelet-certificate-authority": str(pki.ca_cert),
            "--kubelet-preferred-address-types": "InternalIP",
            "--profiling": "false",
        }

    def _component_kubeconfig(self, name: str) -> Path:
        cp = self._cp()
        d = cp.pki.ca_cert.parent
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "structured-api",
                    "cluster": {"server": cp.server, "certificate-authority": str(cp.pki.ca_cert)},
                }
            ],
            "users": [
                {
                    "name": name,
                    "user": {
                        "client-certificate": str(d / f"{name}.crt"),
                        "client-key": str(d / f"{name}.key"),
                    },
                }
            ],
            "contexts": [{"name": name, "context": {"cluster": "structured-api", "user": name}}],
            "current-context": name,
        }
        path = self.state_dir / "kubeconfigs" / f"{name}.yaml"
        path.parent.mkdir(exist_ok=True)
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        path.chmod(0o600)
        return path

    # -- components -----------------------------------------------------------------------

    def _start_controllers(self, pki: Pki) -> None:
        assert self.node_binaries is not None
        net = self.network
        cm_port, sched_port = free_port(), free_port()
        cm = self._component_kubeconfig("controller-manager")
        self._start(
            "kube-controller-manager",
            [
                self.node_binaries.kube_controller_manager,
                f"--kubeconfig={cm}",
                f"--authentication-kubeconfig={cm}",
                f"--authorization-kubeconfig={cm}",
                "--bind-address=127.0.0.1",
                f"--secure-port={cm_port}",
                f"--cert-dir={self.state_dir / 'controller-manager'}",
                "--leader-elect=false",
                # Each controller acts as its own ServiceAccount (tokens from the token
                # controller, signed with the apiserver's SA key).
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={pki.sa_key}",
                f"--root-ca-file={pki.ca_cert}",
                f"--cluster-signing-cert-file={pki.ca_cert}",
                f"--cluster-signing-key-file={pki.ca_key}",
                # Node IPAM hands the node the whole pod range, matching the CNI config.
                "--allocate-node-cidrs=true",
                f"--cluster-cidr={net.pod_cidr}",
                f"--node-cidr-mask-size={ipaddress.ip_network(net.pod_cidr).prefixlen}",
                f"--service-cluster-ip-range={net.service_cidr}",
                "--cluster-name=structured-api",
                "--profiling=false",
            ],
            lambda: _https_ok(f"https://127.0.0.1:{cm_port}/healthz"),
            "kube-controller-manager /healthz",
        )
        sched = self._component_kubeconfig("scheduler")
        self._start(
            "kube-scheduler",
            [
                self.node_binaries.kube_scheduler,
                f"--kubeconfig={sched}",
                f"--authentication-kubeconfig={sched}",
                f"--authorization-kubeconfig={sched}",
                "--bind-address=127.0.0.1",
                f"--secure-port={sched_port}",
                "--leader-elect=false",
                "--profiling=false",
            ],
            lambda: _https_ok(f"https://127.0.0.1:{sched_port}/healthz"),
            "kube-scheduler /healthz",
        )

    def _start_containerd(self) -> list[str]:
        assert self.node_binaries is not None
        root = self.state_dir / "containerd"
        cni_conf = self.state_dir / "cni" / "net.d"
        cni_conf.mkdir(parents=True, exist_ok=True)
        (self.state_dir / "cni" / "ipam").mkdir(exist_ok=True)
        _write_json(cni_conf / f"10-{CNI_NETWORK}.conflist", self._cni_config())
        root.mkdir(exist_ok=True)
        config = root / "config.toml"
        config.write_text(self._containerd_config(root, cni_conf))
        self._start(
            "containerd",
            ["containerd", "--config", config],
            lambda: (
                self.containerd_socket.is_socket()
                and subprocess.run(self._ctr("version"), capture_output=True).returncode == 0
            ),
            "containerd socket",
        )
        pause_ref, coredns_ref = self._images()
        refs = []
        for ref, archive in (pause_ref, coredns_ref):
            import_archive(self, archive)
            refs.append(ref)
        return refs

    def _ctr(self, *args: str) -> list[str]:
        return ["ctr", "--address", str(self.containerd_socket), "--namespace", "k8s.io", *args]

    def _images(self) -> tuple[tuple[str, Path], tuple[str, Path]]:
        assert self.node_binaries is not None
        pins = versions()
        pause = f"{IMAGE_PREFIX}/pause:{pins['KUBE_VERSION']}"
        coredns = f"{IMAGE_PREFIX}/coredns:{pins['COREDNS_VERSION']}"
        return (
            (
                pause,
                build_scratch_image(
                    pause, {"/pause": File(self.node_binaries.pause, 0o755)}, entrypoint=["/pause"]
                ),
            ),
            (
                coredns,
                build_scratch_image(
                    coredns,
                    {"/coredns": File(self.node_binaries.coredns, 0o755)},
                    entrypoint=["/coredns"],
                ),
            ),
        )

    def _cni_config(self) -> dict[str, Any]:
        net = self.network
        return {
            "cniVersion": "1.0.0",
            "name": CNI_NETWORK,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": net.bridge,
                    "isGateway": True,
                    # No masquerading: pod traffic has nowhere to go but this machine.
                    "ipMasq": False,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": net.pod_cidr, "gateway": net.node_ip}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": str(self.state_dir / "cni" / "ipam"),
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        }

    def _containerd_config(self, root: Path, cni_conf: Path) -> str:
        pause = f"{IMAGE_PREFIX}/pause:{versions()['KUBE_VERSION']}"
        cri = '[plugins."io.containerd.grpc.v1.cri"'
        return f"""# Written by scripts/kubetools/cluster.py; see docs/cluster.md.
version = 2
root = "{root / "root"}"
state = "{root / "state"}"
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing",
]

[grpc]
  address = "{self.containerd_socket}"

[plugins."io.containerd.internal.v1.opt"]
  path = "{root / "opt"}"

{cri}]
  # No registry is reachable: the pause image is built here and imported (images.py).
  sandbox_image = "{pause}"
  # No CAP_SYS_RESOURCE in this VM: a negative oom_score_adj kills every sandbox
  # ("can't get final child's PID from pipe: EOF"); restrict to >= containerd's own.
  restrict_oom_score_adj = true
  # Network namespaces under the state dir, not /run/netns: cleanup finds them there.
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  disable_apparmor = true

{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

{cri}.containerd.runtimes.runc.options]
  SystemdCgroup = false
  Root = "{root / "runc"}"

{cri}.cni]
  bin_dir = "{CNI_BIN_DIR}"
  conf_dir = "{cni_conf}"
  max_conf_num = 1
"""

    def _start_kubelet(self, pki: Pki) -> None:
        assert self.node_binaries is not None
        net = self.network
        d = pki.ca_cert.parent
        root = self.state_dir / "kubelet"
        manifests = root / "manifests"
        manifests.mkdir(parents=True, exist_ok=True)
        # No nameserver: a pod with dnsPolicy Default must not reach a DNS server elsewhere.
        resolv = root / "resolv.conf"
        resolv.write_text("# structured-api cluster: no upstream DNS\noptions ndots:1\n")
        healthz = free_port()
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            # The VM has a cgroup v1 hierarchy (cgroup2 only at /sys/fs/cgroup/unified).
            "failCgroupV1": False,
            "cgroupDriver": "cgroupfs",
            "cgroupRoot": f"/{CGROUP_PARENT}",
            "containerRuntimeEndpoint": f"unix://{self.containerd_socket}",
            "address": net.node_ip,
            "port": free_port(),
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": healthz,
            "tlsCertFile": str(d / "kubelet-serving.crt"),
            "tlsPrivateKeyFile": str(d / "kubelet-serving.key"),
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True},
                "x509": {"clientCAFile": str(pki.ca_cert)},
            },
            "authorization": {"mode": "Webhook"},
            "clusterDNS": [net.dns_ip],
            "clusterDomain": CLUSTER_DOMAIN,
            "resolvConf": str(resolv),
            "failSwapOn": False,
            "staticPodPath": str(manifests),
            "podLogsDir": str(root / "pod-logs"),
            # Images cannot be pulled again: never garbage-collect them.
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "evictionHard": {
                "memory.available": "100Mi",
                "nodefs.available": "2%",
                "imagefs.available": "2%",
            },
            "serializeImagePulls": False,
            "rotateCertificates": False,
            "serverTLSBootstrap": False,
        }
        config_path = root / "config.yaml"
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        kubeconfig = self._component_kubeconfig("kubelet-client")
        self._start(
            "kubelet",
            [
                self.node_binaries.kubelet,
                f"--config={config_path}",
                f"--kubeconfig={kubeconfig}",
                f"--root-dir={root}",
                f"--hostname-override={self.node_name}",
                f"--node-ip={net.node_ip}",
            ],
            lambda: _http_ok(f"http://127.0.0.1:{healthz}/healthz"),
            "kubelet /healthz",
        )
        self.wait_for(self.node_ready, self.start_timeout, f"node {self.node_name} Ready")

    def node_ready(self) -> bool:
        """Tell whether the node reports Ready."""
        out = self.kubectl(
            "get",
            "node",
            self.node_name,
            "-o",
            'jsonpath={.status.conditions[?(@.type=="Ready")].status}',
            check=False,
        )
        return out.returncode == 0 and out.stdout.strip() == "True"

    def _start_kube_proxy(self) -> None:
        assert self.node_binaries is not None
        net = self.network
        healthz = free_port()
        config = {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "mode": "iptables",
            "clientConnection": {"kubeconfig": str(self._component_kubeconfig("kube-proxy"))},
            "hostnameOverride": self.node_name,
            "bindAddress": net.node_ip,
            "clusterCIDR": net.pod_cidr,
            "healthzBindAddress": f"127.0.0.1:{healthz}",
            "metricsBindAddress": f"127.0.0.1:{free_port()}",
            "nodePortAddresses": [f"{net.node_ip}/32"],
            # Without CAP_SYS_RESOURCE a negative value fails; 0 leaves it as it is.
            "oomScoreAdj": 0,
            # 0 = leave the host's conntrack sysctls alone.
            "conntrack": {
                "maxPerCore": 0,
                "min": 0,
                "tcpEstablishedTimeout": "0s",
                "tcpCloseWaitTimeout": "0s",
            },
            # No route_localnet: NodePorts answer on the node address only.
            "iptables": {"localhostNodePorts": False, "masqueradeAll": False},
        }
        path = self.state_dir / "kube-proxy.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        self._start(
            "kube-proxy",
            [self.node_binaries.kube_proxy, f"--config={path}"],
            lambda: _http_ok(f"http://127.0.0.1:{healthz}/healthz"),
            "kube-proxy /healthz",
        )

    def _start_coredns(self) -> None:
        self.apply(
            *coredns_manifests(
                self.network.dns_ip, f"{IMAGE_PREFIX}/coredns:{versions()['COREDNS_VERSION']}"
            )
        )
        self.kubectl(
            "-n",
            "kube-system",
            "rollout",
            "status",
            "deployment/coredns",
            f"--timeout={int(self.start_timeout)}s",
            timeout=self.start_timeout + 10,
        )

    # -- down ---------------------------------------------------------------------------------

    def down(self) -> None:
        """Stop everything and remove what it left; raise ClusterError if anything stays.

        Pods go first through the CRI (crictl rmp: containers killed, CNI DEL, sandbox
        shm and netns unmounted) while containerd still runs, then the components stop,
        then cleanup() sweeps (processes, mounts, links, chains, cgroups, sysctls).
        """
        progress = self._progress
        if self._lock is None:
            return  # never started, or another cluster holds the machine: nothing of ours
        if self._state:
            self._state["phase"] = "stopping"
            self._save()
        with progress.stage("pods"):
            for name in ("kube-controller-manager", "kube-scheduler", "kubelet"):
                self._stop(name)
            if "containerd" in self._procs and self.node_binaries is not None:
                crictl = [
                    str(self.node_binaries.crictl),
                    f"--runtime-endpoint=unix://{self.containerd_socket}",
                    "--timeout=30s",
                ]
                subprocess.run(
                    [*crictl, "rmp", "--all", "--force"],
                    capture_output=True,
                    timeout=120,
                    check=False,
                )
        with progress.stage("components"):
            for name in ("kube-proxy", "containerd"):
                self._stop(name)
            if self.control_plane is not None:
                self.control_plane.stop()
        with progress.stage("sweep") as d:
            left = cleanup(self.state_dir, progress.line) if self._state else []
            d["done"] = "nothing left" if not left else f"{len(left)} left"
        if self._lock is not None:
            self._lock.close()
            self._lock = None
        if left:
            raise ClusterError("left behind after down():\n" + "\n".join(left))

    def _stop(self, name: str) -> None:
        proc = self._procs.pop(name, None)
        if proc is not None:
            terminate(proc, grace=15)

    def __enter__(self) -> Cluster:
        return self.up()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.down()


def coredns_manifests(dns_ip: str, image: str) -> list[dict[str, Any]]:
    """CoreDNS in kube-system behind the kube-dns Service at dns_ip, with no upstream."""
    labels = {"k8s-app": "kube-dns"}
    corefile = f"""\
.:53 {{
    errors
    health {{
        lameduck 5s
    }}
    ready
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 30
    }}
    prometheus :9153
    cache 30
    reload
    loadbalance
}}
"""
    meta = {"name": "coredns", "namespace": "kube-system"}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "system:coredns"},
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["endpoints", "services", "pods", "namespaces"],
                    "verbs": ["list", "watch"],
                },
                {
                    "apiGroups": ["discovery.k8s.io"],
                    "resources": ["endpointslices"],
                    "verbs": ["list", "watch"],
                },
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "system:coredns"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "system:coredns",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "coredns", "namespace": "kube-system"}],
        },
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"Corefile": corefile}},
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {**meta, "labels": labels},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "serviceAccountName": "coredns",
                        "priorityClassName": "system-cluster-critical",
                        "dnsPolicy": "Default",
                        "containers": [
                            {
                                "name": "coredns",
                                "image": image,
                                "imagePullPolicy": "Never",
                                "args": ["-conf", "/etc/coredns/Corefile"],
                                "ports": [
                                    {"name": "dns", "containerPort": 53, "protocol": "UDP"},
                                    {"name": "dns-tcp", "containerPort": 53, "protocol": "TCP"},
                                    {"name": "metrics", "containerPort": 9153, "protocol": "TCP"},
                                ],
                                "resources": {
                                    "requests": {"cpu": "50m", "memory": "70Mi"},
                                    "limits": {"memory": "170Mi"},
                                },
                                "securityContext": {
                                    "allowPrivilegeEscalation": False,
                                    "capabilities": {"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]},
                                    "readOnlyRootFilesystem": True,
                                },
                                "volumeMounts": [
                                    {
                                        "name": "config",
                                        "mountPath": "/etc/coredns",
                                        "readOnly": True,
                                    }
                                ],
                                "livenessProbe": {
                                    "httpGet": {"path": "/health", "port": 8080},
                                    "initialDelaySeconds": 10,
                                    "failureThreshold": 5,
                                },
                                "readinessProbe": {
                                    "httpGet": {"path": "/ready", "port": 8181},
                                    "periodSeconds": 2,
                                },
                            }
                        ],
                        "volumes": [{"name": "config", "configMap": {"name": "coredns"}}],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "kube-dns", "namespace": "kube-system", "labels": labels},
            "spec": {
                "clusterIP": dns_ip,
                "selector": labels,
                "ports": [
                    {"name": "dns", "port": 53, "protocol": "UDP"},
                    {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
                    {"name": "metrics", "port": 9153, "protocol": "TCP"},
                ],
            },
        },
    ]


def _preflight() -> None:
    if os.geteuid() != 0:
        raise ClusterError("the cluster needs root (network namespaces, mounts, iptables, cgroups)")
    missing = sorted({pkg for cmd, pkg in _HOST_COMMANDS.items() if shutil.which(cmd) is None})
    for plugin in ("bridge", "host-local", "portmap", "loopback"):
        if not (CNI_BIN_DIR / plugin).exists():
            missing.append("containernetworking-plugins")
            break
    if missing:
        raise ClusterError(
            f"missing Debian packages: apt-get install -y {' '.join(sorted(set(missing)))} "
            "(scripts/install-test-tools.sh installs them)"
        )


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _https_ok(url: str) -> bool:
    # Loopback health endpoints with the components' self-signed serving certs.
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url, timeout=2, context=ctx) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


# -- command line ------------------------------------------------------------------------------


def _usage(state_dir: Path) -> str:
    kubeconfig = state_dir / "kubeconfig"
    return (
        f"kubeconfig: {kubeconfig}\n"
        f"  export KUBECONFIG={kubeconfig}\n"
        f"  kubectl get nodes          (kubectl: {_kubectl_hint()})\n"
        f"logs: {state_dir / 'logs'}  stop: python scripts/cluster.py down"
    )


def _kubectl_hint() -> str:
    try:
        from kubetools.tools import helm_kubectl

        return str(helm_kubectl()[1])
    except Exception:  # the wheel is missing: the hint is only a convenience
        return "kubectl"


def _cmd_up(args: argparse.Namespace) -> int:
    state_dir = Path(args.state_dir).resolve()
    if args.detach:
        return _detach(state_dir)
    cluster = Cluster(state_dir)
    stop = {"now": False}

    def _on_signal(signum: int, _frame: object) -> None:
        stop["now"] = True
        raise KeyboardInterrupt(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)
    try:
        cluster.up()
        _stderr(_usage(state_dir))
        _stderr("running; Ctrl-C (or `python scripts/cluster.py down`) stops it")
        while not stop["now"]:
            time.sleep(1)
            dead = [n for n, p in cluster._procs.items() if p.poll() is not None]
            if dead:
                _stderr(f"{', '.join(dead)} exited; see {cluster.logs_dir}; stopping")
                break
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if cluster._lock is not None:
            cluster.down()
    return 0


def _detach(state_dir: Path) -> int:
    """Start `up` as a supervisor in a session of its own; return once it is ready."""
    state_dir.mkdir(parents=True, exist_ok=True)
    log = state_dir / "supervisor.log"
    scripts = str(Path(__file__).resolve().parents[1])
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [scripts, os.environ.get("PYTHONPATH")])),
    }
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "kubetools.cluster", "up", "--state-dir", str(state_dir)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    shown = 0
    while True:
        lines = log.read_text(errors="replace").splitlines()
        for line in lines[shown:]:
            if line.startswith("[") or "build" in line:
                _stderr(line)
        shown = len(lines)
        if proc.poll() is not None:
            _stderr(f"cluster supervisor exited with {proc.returncode}; log {log}:\n{tail(log)}")
            return 1
        if _read_json(state_dir / "state.json").get("phase") == "ready" and any(
            "cluster up in" in line for line in lines
        ):
            _stderr(_usage(state_dir))
            _stderr(f"supervisor pid {proc.pid} (log {log}); it stops on `down`")
            return 0
        time.sleep(0.5)


def _cmd_down(args: argparse.Namespace) -> int:
    dirs = {Path(args.state_dir).resolve()}
    if (last := last_state_dir()) is not None:
        dirs.add(last)
    t0 = time.monotonic()
    for state_dir in sorted(dirs):
        supervisor = _read_json(state_dir / "state.json").get("supervisor")
        if isinstance(supervisor, int) and "kubetools.cluster" in _cmdline(supervisor):
            _stderr(f"[cluster] stopping supervisor {supervisor} ({state_dir})")
            with contextlib.suppress(ProcessLookupError):
                os.kill(supervisor, signal.SIGTERM)
            deadline = time.monotonic() + 180
            while pid_alive(supervisor) and time.monotonic() < deadline:
                time.sleep(0.2)
        left = cleanup(state_dir, lambda m: _stderr(f"[cluster] {m}"))
        if left:
            _stderr("[cluster] still left:\n  " + "\n  ".join(left))
            return 1
    _stderr(f"[cluster] down: nothing left ({time.monotonic() - t0:.1f} s)")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    state_dir = last_state_dir() or Path(args.state_dir).resolve()
    state = _read_json(state_dir / "state.json")
    if not state:
        print(f"no cluster state in {state_dir}")
        return 1
    print(f"state dir: {state_dir}\nphase: {state.get('phase')}")
    for name, pid in sorted(state.get("pids", {}).items()):
        print(f"  {name:<24} pid {pid:<8} {'running' if pid_alive(pid) else 'gone'}")
    if state.get("phase") == "ready":
        from kubetools.tools import helm_kubectl

        kubectl = helm_kubectl()[1]
        env = {**os.environ, "KUBECONFIG": str(state_dir / "kubeconfig")}
        subprocess.run([str(kubectl), "get", "nodes", "-o", "wide"], env=env, check=False)
        print(_usage(state_dir))
    left = leftovers(state_dir) if state.get("phase") == "down" else []
    for item in left:
        print(f"  left behind: {item}")
    return 0 if state.get("phase") == "ready" else 1


def main(argv: Sequence[str] | None = None) -> int:
    """`up [--detach] | down | status` (docs/cluster.md)."""
    parser = argparse.ArgumentParser(prog="kubetools.cluster", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument("--state-dir", default=str(DEFAULT_STATE_DIR))
    parser.add_argument(
        "--detach", action="store_true", help="up: run in the background, return when ready"
    )
    args = parser.parse_args(argv)
    try:
        return {"up": _cmd_up, "down": _cmd_down, "status": _cmd_status}[args.command](args)
    except (ClusterError, StartupError, CommandError) as err:
        _stderr(f"[cluster] error: {err}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
