"""Prometheus beside the one-node cluster: a host process that discovers pods through the
apiserver (`kubernetes_sd_configs`) and scrapes them over the `sapi0` bridge.

    from kubetools.prometheus import Prometheus, grant_access, monitor_scrape_configs

    cert, key = grant_access(cluster, cluster.state_dir)      # x509 client, read-only RBAC
    docs = [...]  # the chart rendered with its ServiceMonitor, PodMonitor, PrometheusRule
    prom = Prometheus(cluster.state_dir, port=19090)
    prom.configure(monitor_scrape_configs(docs, api), rule_groups(docs))
    prom.start()                                              # or start(detach=True)
    prom.query('up{namespace="structured-api"}')

No Prometheus Operator runs here, so its CRDs are not installed and the chart's monitors
stay disabled in the release. Instead `monitor_scrape_configs` turns the monitors the
chart renders into the scrape configuration the Prometheus Operator generates for them
(pkg/prometheus/promcfg.go upstream: `kubernetes_sd_configs` filtered by the monitor's
selector and port name, `namespace`/`service`/`pod`/`container`/`endpoint` target
labels, `job` = the Service name for a ServiceMonitor and `<namespace>/<name>` for a
PodMonitor), and `rule_groups` the PrometheusRule's groups into a rules file. What
Prometheus scrapes is therefore exactly what the chart asks a Prometheus Operator for.

The server is built from its Go module at `PROMETHEUS_VERSION` (scripts/versions.env) by
`scripts/build-control-plane.sh prometheus`: Debian's `prometheus` package has no
Kubernetes service discovery (see that script), and neither has its `promtool`, so the
server itself validates the config when it starts.

Authentication: a client certificate (CN `structured-api:prometheus`) signed by the
cluster's CA, bound to a ClusterRole that can only read pods, services and endpoint
slices. The process is named after the state dir (its config file lives there), so the
cluster's cleanup (`scripts/cluster.py down`) stops it with everything else.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import yaml

from kubetools.build import BUILD_SCRIPT
from kubetools.certs import Pki, issue_cert
from kubetools.paths import CACHE_DIR
from kubetools.process import pid_alive, spawn, tail

USER = "structured-api:prometheus"
CLUSTER_ROLE = "structured-api-prometheus"
# The interval the tests and the dashboard pictures rely on: rate(...[5m]) needs two samples.
SCRAPE_INTERVAL = "5s"


class Kube(Protocol):
    """The cluster calls grant_access() needs (kubetools.cluster.Cluster has them)."""

    def kubectl(
        self, *args: str, check: bool = True, input: str | None = None, timeout: float = 120.0
    ) -> subprocess.CompletedProcess[str]: ...


class PrometheusError(RuntimeError):
    """Prometheus did not start, or an API call failed."""


def prometheus_path() -> Path:
    """Where the build script puts the pinned server (it may not exist yet)."""
    out = subprocess.run(
        ["bash", str(BUILD_SCRIPT), "path-prometheus"], check=True, capture_output=True, text=True
    )
    return Path(out.stdout.strip())


def ensure_prometheus() -> Path:
    """Build the server if it is not cached (minutes when cold; progress on stderr)."""
    path = prometheus_path()
    if path.is_file():
        return path
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with open(CACHE_DIR / "control-plane.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        subprocess.run(["bash", str(BUILD_SCRIPT), "prometheus"], check=True)
    if not path.is_file():
        raise FileNotFoundError(f"{BUILD_SCRIPT} prometheus finished but {path} is missing")
    return path


def _pki(state_dir: Path) -> Pki:
    d = Path(state_dir) / "pki"
    return Pki(
        ca_cert=d / "ca.crt",
        ca_key=d / "ca.key",
        serving_cert=d / "apiserver.crt",
        serving_key=d / "apiserver.key",
        sa_key=d / "sa.key",
        sa_pub=d / "sa.pub",
    )


def api_server(state_dir: Path) -> str:
    """The apiserver URL of the cluster in state_dir (from its admin kubeconfig)."""
    config = yaml.safe_load((Path(state_dir) / "kubeconfig").read_text())
    return str(config["clusters"][0]["cluster"]["server"])


def grant_access(kube: Kube, state_dir: Path) -> tuple[Path, Path]:
    """Issue Prometheus' client certificate and bind it to read-only discovery RBAC."""
    pki = _pki(state_dir)
    cert, key = issue_cert(pki, "prometheus", USER)
    read = ["get", "list", "watch"]
    docs = [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": CLUSTER_ROLE},
            "rules": [
                {"apiGroups": [""], "resources": ["pods", "services", "endpoints"], "verbs": read},
                {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": read},
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": CLUSTER_ROLE},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": CLUSTER_ROLE,
            },
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": USER}],
        },
    ]
    kube.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(docs))
    return cert, key


# -- the Prometheus Operator's translation of the chart's monitors ----------------------------


def _sanitize(label: str) -> str:
    """Kubernetes label name -> Prometheus meta label suffix (non [a-zA-Z0-9_] -> _)."""
    return re.sub(r"[^a-zA-Z0-9_]", "_", label)


def _selector_relabels(kind: str, selector: Mapping[str, Any]) -> list[dict[str, Any]]:
    """keep rules for a LabelSelector on `__meta_kubernetes_<kind>_label_*`."""
    rules: list[dict[str, Any]] = []
    for name, value in sorted((selector.get("matchLabels") or {}).items()):
        s = _sanitize(name)
        rules.append(
            {
                "action": "keep",
                "source_labels": [
                    f"__meta_kubernetes_{kind}_label_{s}",
                    f"__meta_kubernetes_{kind}_labelpresent_{s}",
                ],
                "regex": f"({re.escape(str(value))});true",
            }
        )
    for expr in selector.get("matchExpressions") or []:
        s = _sanitize(expr["key"])
        label = f"__meta_kubernetes_{kind}_label_{s}"
        present = f"__meta_kubernetes_{kind}_labelpresent_{s}"
        values = "|".join(re.escape(str(v)) for v in expr.get("values") or [])
        match expr["operator"]:
            case "In":
                rules.append(
                    {
                        "action": "keep",
                        "source_labels": [label, present],
                        "regex": f"({values});true",
                    }
                )
            case "NotIn":
                rules.append({"action": "drop", "source_labels": [label], "regex": f"({values})"})
            case "Exists":
                rules.append({"action": "keep", "source_labels": [present], "regex": "true"})
            case "DoesNotExist":
                rules.append({"action": "drop", "source_labels": [present], "regex": "true"})
    return rules


def _common_target_labels(port: str) -> list[dict[str, Any]]:
    return [
        # Completed or failed pods are no targets (the operator drops them too).
        {
            "action": "drop",
            "source_labels": ["__meta_kubernetes_pod_phase"],
            "regex": "(Failed|Succeeded)",
        },
        {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
        {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
        {"source_labels": ["__meta_kubernetes_pod_container_name"], "target_label": "container"},
        {"target_label": "endpoint", "replacement": port},
    ]


def _namespaces(monitor: Mapping[str, Any]) -> list[str]:
    names = (monitor["spec"].get("namespaceSelector") or {}).get("matchNames")
    return list(names or [monitor["metadata"]["namespace"]])


def service_monitor_jobs(monitor: Mapping[str, Any], sd: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Scrape configs of one ServiceMonitor (role endpointslice, as the operator can use)."""
    spec, meta = monitor["spec"], monitor["metadata"]
    jobs = []
    for index, endpoint in enumerate(spec["endpoints"]):
        port = endpoint["port"]
        relabel = _selector_relabels("service", spec["selector"])
        relabel += [
            {
                "action": "keep",
                "source_labels": ["__meta_kubernetes_endpointslice_port_name"],
                "regex": re.escape(port),
            },
            *_common_target_labels(port),
            {"source_labels": ["__meta_kubernetes_service_name"], "target_label": "service"},
            {"source_labels": ["__meta_kubernetes_service_name"], "target_label": "job"},
        ]
        job: dict[str, Any] = {
            "job_name": f"serviceMonitor/{meta['namespace']}/{meta['name']}/{index}",
            "metrics_path": endpoint.get("path", "/metrics"),
            "kubernetes_sd_configs": [
                {**sd, "role": "endpointslice", "namespaces": {"names": _namespaces(monitor)}}
            ],
            "relabel_configs": relabel,
        }
        if "interval" in endpoint:
            job["scrape_interval"] = endpoint["interval"]
        if "scrapeTimeout" in endpoint:
            job["scrape_timeout"] = endpoint["scrapeTimeout"]
        jobs.append(job)
    return jobs


def pod_monitor_jobs(monitor: Mapping[str, Any], sd: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Scrape configs of one PodMonitor (role pod)."""
    spec, meta = monitor["spec"], monitor["metadata"]
    jobs = []
    for index, endpoint in enumerate(spec["podMetricsEndpoints"]):
        port = endpoint["port"]
        relabel = _selector_relabels("pod", spec["selector"])
        relabel += [
            {
                "action": "keep",
                "source_labels": ["__meta_kubernetes_pod_container_port_name"],
                "regex": re.escape(port),
            },
            *_common_target_labels(port),
            {"target_label": "job", "replacement": f"{meta['namespace']}/{meta['name']}"},
        ]
        job: dict[str, Any] = {
            "job_name": f"podMonitor/{meta['namespace']}/{meta['name']}/{index}",
            "metrics_path": endpoint.get("path", "/metrics"),
            "kubernetes_sd_configs": [
                {**sd, "role": "pod", "namespaces": {"names": _namespaces(monitor)}}
            ],
            "relabel_configs": relabel,
        }
        if "interval" in endpoint:
            job["scrape_interval"] = endpoint["interval"]
        jobs.append(job)
    return jobs


def kubernetes_sd(state_dir: Path, cert: Path, key: Path) -> dict[str, Any]:
    """The apiserver part of every `kubernetes_sd_configs` entry (client cert auth)."""
    return {
        "api_server": api_server(state_dir),
        "tls_config": {
            "ca_file": str(_pki(state_dir).ca_cert),
            "cert_file": str(cert),
            "key_file": str(key),
        },
    }


def monitor_scrape_configs(
    docs: Iterable[Mapping[str, Any]], sd: Mapping[str, Any], *, interval: str | None = None
) -> list[dict[str, Any]]:
    """Scrape configs for every ServiceMonitor and PodMonitor among docs.

    interval: replaces the monitors' own interval (the tests want samples every few
    seconds; the chart's default is 30 s).
    """
    jobs: list[dict[str, Any]] = []
    for doc in docs:
        if doc.get("kind") == "ServiceMonitor":
            jobs += service_monitor_jobs(doc, sd)
        elif doc.get("kind") == "PodMonitor":
            jobs += pod_monitor_jobs(doc, sd)
    if interval is not None:
        for job in jobs:
            job["scrape_interval"] = interval
            job.pop("scrape_timeout", None)
    return jobs


def rule_groups(docs: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The groups of every PrometheusRule among docs, as a Prometheus rules file."""
    groups = [g for d in docs if d.get("kind") == "PrometheusRule" for g in d["spec"]["groups"]]
    return {"groups": groups}


# -- the server ----------------------------------------------------------------------------


class Prometheus:
    """One Prometheus server with its config, rules and TSDB under <state dir>/prometheus."""

    def __init__(
        self, state_dir: Path, *, port: int, binary: Path | None = None, host: str = "127.0.0.1"
    ) -> None:
        self.state_dir = Path(state_dir).resolve()
        self.dir = self.state_dir / "prometheus"
        self.port = port
        self.host = host
        self._binary = binary
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Base URL of the web UI and HTTP API."""
        return f"http://{self.host}:{self.port}"

    @property
    def config_file(self) -> Path:
        """prometheus.yml (its path names the state dir: cleanup finds the process)."""
        return self.dir / "prometheus.yml"

    @property
    def log_file(self) -> Path:
        """Where the server logs."""
        return self.dir / "prometheus.log"

    @property
    def pid_file(self) -> Path:
        """The running server's pid (written by start())."""
        return self.dir / "prometheus.pid"

    def configure(
        self,
        scrape_configs: Sequence[Mapping[str, Any]],
        rules: Mapping[str, Any] | None = None,
        *,
        interval: str = SCRAPE_INTERVAL,
    ) -> None:
        """Write prometheus.yml (and rules.yml); a running server reloads on SIGHUP."""
        self.dir.mkdir(parents=True, exist_ok=True)
        config: dict[str, Any] = {
            "global": {"scrape_interval": interval, "evaluation_interval": interval},
            "scrape_configs": [dict(c) for c in scrape_configs],
        }
        if rules is not None:
            rules_file = self.dir / "rules.yml"
            rules_file.write_text(yaml.safe_dump(dict(rules), sort_keys=False))
            config["rule_files"] = [str(rules_file)]
        self.config_file.write_text(yaml.safe_dump(config, sort_keys=False))
        pid = self.pid()
        if pid is not None:
            os.kill(pid, signal.SIGHUP)

    @property
    def binary(self) -> Path:
        """The server executable (built on first use)."""
        if self._binary is None:
            self._binary = ensure_prometheus()
        return self._binary

    def argv(self) -> list[str]:
        """The server's command line."""
        return [
            str(self.binary),
            f"--config.file={self.config_file}",
            f"--storage.tsdb.path={self.dir / 'data'}",
            "--storage.tsdb.retention.time=1d",
            f"--web.listen-address={self.host}:{self.port}",
        ]

    def start(self, *, detach: bool = False, timeout: float = 60.0) -> Prometheus:
        """Start the server; return once /-/ready answers.

        detach: outlive this process (`make cluster`); the cluster's cleanup stops it.
        Otherwise it dies with this process (PR_SET_PDEATHSIG, like the cluster's parts).
        """
        self.stop()
        if detach:
            with open(self.log_file, "ab") as out:
                self._proc = subprocess.Popen(
                    self.argv(),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
        else:
            self._proc = spawn(self.argv(), self.log_file, new_session=True)
        self.pid_file.write_text(f"{self._proc.pid}\n")
        deadline = time.monotonic() + timeout
        while not self._get_ok("/-/ready"):
            if self._proc.poll() is not None:
                raise PrometheusError(
                    f"prometheus exited with {self._proc.returncode}:\n{tail(self.log_file)}"
                )
            if time.monotonic() > deadline:
                raise PrometheusError(f"prometheus not ready in {timeout:.0f} s")
            time.sleep(0.3)
        return self

    def pid(self) -> int | None:
        """Pid of the server started from this state dir, if it runs."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            return None
        return pid if pid_alive(pid) and str(self.config_file) in cmdline else None

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM (Prometheus flushes its head block), then SIGKILL after grace seconds."""
        pid = self.pid()
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + grace
            while pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
        if self._proc is not None:
            self._proc.wait(timeout=grace)
            self._proc = None
        self.pid_file.unlink(missing_ok=True)

    # -- HTTP API ------------------------------------------------------------------------------

    def _get_ok(self, path: str) -> bool:
        try:
            with urllib.request.urlopen(self.url + path, timeout=2) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def api(self, path: str, **params: str) -> Any:
        """GET /api/v1/<path>; return `data`, raise PrometheusError on an error status."""
        query = urllib.parse.urlencode(params)
        url = f"{self.url}/api/v1/{path}" + (f"?{query}" if query else "")
        try:
            with urllib.request.urlopen(url, timeout=30) as resp:
                body = json.load(resp)
        except urllib.error.HTTPError as err:
            raise PrometheusError(f"GET {url}: {err.code} {err.read().decode()[:500]}") from err
        if body.get("status") != "success":
            raise PrometheusError(f"GET {url}: {body}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant query; the result vector (or matrix) as Prometheus returns it."""
        data = self.api("query", query=expr)
        return list(data["result"])

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
        """Range query; the result matrix."""
        data = self.api("query_range", query=expr, start=str(start), end=str(end), step=str(step))
        return list(data["result"])

    def targets(self) -> list[dict[str, Any]]:
        """Active targets with their labels, health and last error."""
        return list(self.api("targets", state="active")["activeTargets"])

    def rules(self) -> list[dict[str, Any]]:
        """Every loaded rule with its health and last error (from /api/v1/rules)."""
        return [r for g in self.api("rules")["groups"] for r in g["rules"]]
