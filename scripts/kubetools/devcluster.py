"""The whole application on the one-node cluster: `make cluster` after `cluster.py up`.

    python scripts/devcluster.py up       # images, ingress, dependencies, the chart, Prometheus
    python scripts/devcluster.py status   # URLs and pods
    python scripts/cluster.py down        # stops everything, Prometheus included

`up` attaches to the cluster that `scripts/cluster.py up --detach` started (its state dir,
default .cache/cluster), starting one that way first when none runs, and, each step
printed with its time:

1. builds what is missing: the app image from the working tree's Dockerfile, the
   development dependency images (scripts/images) and Traefik (its binary from the Go
   module, scripts/build-control-plane.sh traefik, packed FROM scratch);
2. imports them into the node's containerd;
3. installs Traefik (kubetools.traefik) on 127.0.0.1:<ingress port>;
4. installs charts/structured-api-devdeps (PostgreSQL, Redis, the AI provider simulator)
   and waits for them, then charts/structured-api with ci/devcluster-values.yaml and
   `--wait` (the migration Job runs first as a hook);
5. starts Prometheus (kubetools.prometheus) on 127.0.0.1:<prometheus port>, scraping what
   the chart's ServiceMonitor and PodMonitor select and evaluating its PrometheusRule,
   and waits until every metrics target of the release is up;
6. prints the ingress URL, the Prometheus URL, the KUBECONFIG line and how to create the
   first administrator.

Running it again upgrades in place; when the app image changed under the same tag (a
dirty tree), the release's Deployments are restarted so they run the new build.
The same functions drive tests/cluster (they take a kubetools.cluster.Cluster).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml

from kubetools import traefik
from kubetools.cluster import DEFAULT_STATE_DIR, running_state_dir
from kubetools.cluster import main as cluster_main
from kubetools.controlplane import CommandError
from kubetools.images import import_archive
from kubetools.paths import REPO_ROOT
from kubetools.prometheus import (
    Prometheus,
    grant_access,
    kubernetes_sd,
    monitor_scrape_configs,
    rule_groups,
)
from kubetools.tools import helm_kubectl

CHART = REPO_ROOT / "charts" / "structured-api"
DEVDEPS_CHART = REPO_ROOT / "charts" / "structured-api-devdeps"
DEVCLUSTER_VALUES = CHART / "ci" / "devcluster-values.yaml"
# Every monitoring object the chart can render: translated for Prometheus, never installed
# (no Prometheus Operator CRDs in this cluster).
MONITORING_SET = (
    "monitoring.serviceMonitor.enabled=true",
    "monitoring.podMonitor.enabled=true",
    "monitoring.prometheusRule.enabled=true",
)


class Kube(Protocol):
    """A running cluster: kubetools.cluster.Cluster, or AttachedCluster from another process."""

    @property
    def state_dir(self) -> Path: ...

    @property
    def kubeconfig(self) -> Path: ...

    @property
    def containerd_socket(self) -> Path: ...

    def kubectl(
        self, *args: str, check: bool = True, input: str | None = None, timeout: float = 120.0
    ) -> subprocess.CompletedProcess[str]: ...

    def helm(
        self, *args: str, check: bool = True, input: str | None = None, timeout: float = 300.0
    ) -> subprocess.CompletedProcess[str]: ...


class AttachedCluster:
    """The cluster a detached `scripts/cluster.py up` runs, driven from another process."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(state_dir).resolve()
        if not (self.state_dir / "kubeconfig").is_file():
            raise RuntimeError(
                f"no cluster in {self.state_dir}: run `python scripts/cluster.py up`"
            )
        self.helm_bin, self.kubectl_bin = helm_kubectl()

    @property
    def kubeconfig(self) -> Path:
        """The admin kubeconfig `up` wrote."""
        return self.state_dir / "kubeconfig"

    @property
    def containerd_socket(self) -> Path:
        """The node's containerd (images are imported there)."""
        return self.state_dir / "containerd" / "containerd.sock"

    def env(self) -> dict[str, str]:
        """kubetools.ControlPlane's environment for kubectl and helm (caches in the state dir)."""
        work = self.state_dir / "control-plane"
        return {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "KUBECACHEDIR": str(work / "kube-cache"),
            "HELM_CONFIG_HOME": str(work / "helm" / "config"),
            "HELM_CACHE_HOME": str(work / "helm" / "cache"),
            "HELM_DATA_HOME": str(work / "helm" / "data"),
        }

    def _run(
        self, binary: Path, args: Sequence[str], check: bool, input: str | None, timeout: float
    ) -> subprocess.CompletedProcess[str]:
        argv = [str(binary), *args]
        result = subprocess.run(
            argv,
            input=input,
            capture_output=True,
            text=True,
            env=self.env(),
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise CommandError(result.returncode, argv, result.stdout, result.stderr)
        return result

    def kubectl(
        self, *args: str, check: bool = True, input: str | None = None, timeout: float = 120.0
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl as the admin."""
        return self._run(self.kubectl_bin, args, check, input, timeout)

    def helm(
        self, *args: str, check: bool = True, input: str | None = None, timeout: float = 300.0
    ) -> subprocess.CompletedProcess[str]:
        """Run helm as the admin."""
        return self._run(self.helm_bin, args, check, input, timeout)


@dataclass(frozen=True)
class Settings:
    """Names and loopback ports of the development install."""

    namespace: str = "structured-api"
    release: str = "structured-api"
    devdeps_release: str = "structured-api-devdeps"
    # Browsers and curl resolve *.localhost to loopback by themselves (RFC 6761 6.3).
    host: str = "structured-api.localhost"
    ingress_port: int = 18080
    ingress_admin_port: int = 18081
    prometheus_port: int = 19090
    app_context: Path = REPO_ROOT
    extra_set: tuple[str, ...] = ()
    access_log: bool = False

    @property
    def ingress_url(self) -> str:
        """What clients use (Host routes to the app)."""
        return f"http://{self.host}:{self.ingress_port}"

    @property
    def fullname(self) -> str:
        """The chart's full name for this release (the release contains the chart name)."""
        return (
            self.release if "structured-api" in self.release else f"{self.release}-structured-api"
        )


@dataclass
class Images:
    """What `build_images` produced: oci-archives and the app image's reference."""

    app_ref: str
    app_id: str
    archives: list[Path] = field(default_factory=list)


class _Progress:
    """`[devcluster  12.3s] step: detail (4.1 s)` lines on stderr, like the cluster's."""

    def __init__(self, say: Callable[[str], None]) -> None:
        self.say = say
        self.began = time.monotonic()
        self.timings: dict[str, float] = {}

    def line(self, message: str) -> None:
        self.say(f"[devcluster {time.monotonic() - self.began:6.1f}s] {message}")

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[dict[str, str]]:
        t0 = time.monotonic()
        self.line(f"{name} ...")
        detail: dict[str, str] = {}
        yield detail
        self.timings[name] = time.monotonic() - t0
        extra = f": {detail['done']}" if "done" in detail else ""
        self.line(f"{name}{extra} ({self.timings[name]:.1f} s)")


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- steps -----------------------------------------------------------------------------------


def build_images(context: Path = REPO_ROOT, *, with_traefik: bool = True) -> Images:
    """Build (or find cached) every image the install runs; return their archives."""
    from images import app, deps  # scripts/images; imported late: buildah only when building

    deps_built = deps.build_all()
    ref = None if context == REPO_ROOT else f"{app.APP_IMAGE}:{_context_tag(context)}"
    app_built = app.build(ref, context=context)
    archives = [b.archive for b in deps_built] + [app_built.archive]
    if with_traefik:
        archives.append(traefik.build_image())
    return Images(app_ref=app_built.ref, app_id=app_built.image_id, archives=archives)


def _context_tag(context: Path) -> str:
    """Tag of an image built from a context outside the repository (an exported commit)."""
    marker = context / ".devcluster-tag"
    return marker.read_text().strip() if marker.is_file() else context.name


def export_commit(rev: str = "HEAD") -> Path:
    """`git archive <rev>` into .cache/images/work/src-<commit>: a build context that does
    not change while someone edits the working tree. Its images are tagged <commit>."""
    commit = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "rev-parse", "--short=12", rev],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    target = REPO_ROOT / ".cache" / "images" / "work" / f"src-{commit}"
    if not (target / ".devcluster-tag").is_file():
        target.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "archive", "--format=tar", commit],
            check=True, capture_output=True,
        ).stdout  # fmt: skip
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
        (target / ".devcluster-tag").write_text(f"{commit}\n")
    return target


def import_images(kube: Kube, archives: Sequence[Path]) -> list[str]:
    """Import every archive into the node's containerd; return the references."""
    refs: list[str] = []
    for archive in archives:
        refs += import_archive(kube, archive)
    return refs


def helm_app_args(s: Settings, tag: str, *extra_set: str) -> list[str]:
    """The chart, namespace and values of the app release (install, upgrade, template)."""
    args = [str(CHART), "-n", s.namespace, "-f", str(DEVCLUSTER_VALUES)]
    for item in (f"image.tag={tag}", f"ingress.hosts[0].host={s.host}", *s.extra_set, *extra_set):
        args += ["--set", item]
    return args


def install_devdeps(kube: Kube, s: Settings, timeout: float = 600.0) -> None:
    """PostgreSQL, Redis and the simulator, Ready (the migration hook needs PostgreSQL)."""
    kube.helm(
        "upgrade", "--install", s.devdeps_release, str(DEVDEPS_CHART),
        "-n", s.namespace, "--create-namespace",
        "--wait", f"--timeout={int(timeout)}s",
        timeout=timeout + 30,
    )  # fmt: skip


def install_app(kube: Kube, s: Settings, tag: str, *extra_set: str, timeout: float = 900.0) -> bool:
    """`helm upgrade --install --wait` of the chart; return True when it was an upgrade."""
    existed = kube.helm("status", s.release, "-n", s.namespace, check=False).returncode == 0
    kube.helm(
        "upgrade", "--install", s.release, *helm_app_args(s, tag, *extra_set),
        "--wait", f"--timeout={int(timeout)}s",
        timeout=timeout + 30,
    )  # fmt: skip
    return existed


def restart_release(kube: Kube, s: Settings, timeout: float = 600.0) -> None:
    """Roll every Deployment of the release (a rebuilt image under the same tag)."""
    selector = f"app.kubernetes.io/instance={s.release}"
    kube.kubectl("-n", s.namespace, "rollout", "restart", "deployment", "-l", selector)
    names = kube.kubectl(
        "-n", s.namespace, "get", "deployment", "-l", selector, "-o", "name"
    ).stdout.split()
    for name in names:
        kube.kubectl(
            "-n", s.namespace, "rollout", "status", name, f"--timeout={int(timeout)}s",
            timeout=timeout + 10,
        )  # fmt: skip


def monitoring_docs(kube: Kube, s: Settings, tag: str) -> list[dict[str, Any]]:
    """The chart's ServiceMonitor, PodMonitor and PrometheusRule for this release."""
    out = kube.helm(
        "template", s.release, *helm_app_args(s, tag, *MONITORING_SET),
        "--api-versions", "monitoring.coreos.com/v1",
        "--show-only", "templates/monitoring-servicemonitor.yaml",
        "--show-only", "templates/monitoring-podmonitor.yaml",
        "--show-only", "templates/monitoring-prometheusrule.yaml",
    ).stdout  # fmt: skip
    return [d for d in yaml.safe_load_all(out) if d]


def start_prometheus(
    kube: Kube,
    s: Settings,
    docs: Sequence[Mapping[str, Any]],
    *,
    detach: bool,
    port: int | None = None,
) -> Prometheus:
    """Prometheus with the chart's monitors and rules plus Traefik's own metrics."""
    cert, key = grant_access(kube, kube.state_dir)
    sd = kubernetes_sd(kube.state_dir, cert, key)
    jobs = monitor_scrape_configs(docs, sd, interval="5s")
    jobs.append(
        {
            "job_name": "traefik",
            "static_configs": [
                {
                    "targets": [f"127.0.0.1:{s.ingress_admin_port}"],
                    "labels": {"namespace": traefik.NAMESPACE},
                }
            ],
        }
    )
    prom = Prometheus(kube.state_dir, port=port or s.prometheus_port)
    prom.configure(jobs, rule_groups(docs))
    return prom.start(detach=detach)


def release_pods(kube: Kube, s: Settings) -> list[dict[str, Any]]:
    """The release's running pods (not the completed migration Job's)."""
    out = kube.kubectl(
        "-n", s.namespace, "get", "pods", "-l", f"app.kubernetes.io/instance={s.release}",
        "--field-selector=status.phase=Running", "-o", "json",
    ).stdout  # fmt: skip
    return list(json.loads(out)["items"])


def metrics_pods(kube: Kube, s: Settings) -> set[str]:
    """Pods of the release that declare a `metrics` container port."""
    return {
        p["metadata"]["name"]
        for p in release_pods(kube, s)
        if any(
            port.get("name") == "metrics"
            for c in p["spec"]["containers"]
            for port in c.get("ports", [])
        )
        and p["metadata"].get("deletionTimestamp") is None
    }


def wait_targets_up(prom: Prometheus, kube: Kube, s: Settings, timeout: float = 120.0) -> set[str]:
    """Wait until every metrics pod of the release is an up target; return those pods."""
    deadline = time.monotonic() + timeout
    while True:
        wanted = metrics_pods(kube, s)
        up = {
            t["labels"].get("pod", "")
            for t in prom.targets()
            if t["labels"].get("namespace") == s.namespace and t["health"] == "up"
        }
        if wanted and wanted <= up:
            return wanted
        if time.monotonic() > deadline:
            raise TimeoutError(f"Prometheus targets up {sorted(up)}, wanted {sorted(wanted)}")
        time.sleep(1)


def usage(kube: Kube, s: Settings, prometheus_url: str) -> str:
    """What `up` prints at the end."""
    _helm, kubectl = helm_kubectl()
    api = f"{s.fullname}-api"
    return f"""
Structured API runs on the one-node cluster (namespace {s.namespace}).

  API (through Traefik):  {s.ingress_url}/readyz      docs: {s.ingress_url}/docs
                          (curl and browsers resolve *.localhost to 127.0.0.1; otherwise
                           curl -H 'Host: {s.host}' http://127.0.0.1:{s.ingress_port}/readyz)
  Prometheus (HTTP API; this build has no web UI, docs/cluster.md):
                          {prometheus_url}/api/v1/targets   {prometheus_url}/api/v1/alerts
                          promtool query instant {prometheus_url} 'up{{namespace="{s.namespace}"}}'

kubectl:
  export KUBECONFIG={kube.kubeconfig}
  alias kubectl={kubectl}
  kubectl -n {s.namespace} get pods

The first administrator (no default credentials exist):
  printf '%s\\n' 'a long passphrase' > /tmp/sapi-admin-password
  kubectl -n {s.namespace} exec -i deploy/{api} -- \\
    sh -c 'cat > /tmp/pw && flask --app app.wsgi:application users create-admin \\
      --email admin@example.com --password-file /tmp/pw; rm -f /tmp/pw' < /tmp/sapi-admin-password

The AI provider simulator as an AIProvider: helm -n {s.namespace} get notes {s.devdeps_release}
Stop everything: make cluster-down
"""


def up(kube: Kube, s: Settings, say: Callable[[str], None] = _stderr) -> dict[str, Any]:
    """Every step of `make cluster` after the node is up; return URLs and timings."""
    progress = _Progress(say)
    record = kube.state_dir / "devcluster.json"
    previous: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        previous = json.loads(record.read_text())
    with progress.stage("images (build what is missing)") as d:
        images = build_images(s.app_context)
        d["done"] = images.app_ref
    with progress.stage("import into the node's containerd") as d:
        d["done"] = f"{len(import_images(kube, images.archives))} images"
    with progress.stage("ingress controller (Traefik)") as d:
        d["done"] = traefik.install_traefik(
            kube, port=s.ingress_port, admin_port=s.ingress_admin_port, access_log=s.access_log
        )
    with progress.stage("development dependencies (helm, --wait)") as d:
        install_devdeps(kube, s)
        d["done"] = f"release {s.devdeps_release}"
    tag = images.app_ref.rsplit(":", 1)[1]
    with progress.stage("structured-api chart (helm, --wait)") as d:
        upgraded = install_app(kube, s, tag)
        if upgraded and previous.get("app_id") not in (None, images.app_id):
            restart_release(kube, s)
            d["done"] = f"upgraded, restarted for the new {tag} build"
        else:
            d["done"] = f"{'upgraded' if upgraded else 'installed'} {s.release}, image {tag}"
    with progress.stage("ingress answers") as d:
        traefik.wait_http(
            f"http://127.0.0.1:{s.ingress_port}/readyz", 120, headers={"Host": s.host}
        )
        d["done"] = f"{s.ingress_url}/readyz 200"
    with progress.stage("Prometheus") as d:
        prom = start_prometheus(kube, s, monitoring_docs(kube, s, tag), detach=True)
        pods = wait_targets_up(prom, kube, s)
        d["done"] = f"{prom.url}, {len(pods)} targets of the release up"
    result = {
        "app_ref": images.app_ref,
        "app_id": images.app_id,
        "ingress_url": s.ingress_url,
        "prometheus_url": prom.url,
        "timings": progress.timings,
        "seconds": time.monotonic() - progress.began,
    }
    record.write_text(json.dumps(result, indent=2) + "\n")
    progress.line(f"done in {result['seconds']:.1f} s")
    return result


# -- command line ----------------------------------------------------------------------------


def _attach(state_dir: Path | None, *, start: bool = False) -> AttachedCluster:
    running = running_state_dir()
    if state_dir is None:
        if running is None and start:
            # `scripts/cluster.py up --detach`: returns once the node is Ready.
            if cluster_main(["up", "--detach", "--state-dir", str(DEFAULT_STATE_DIR)]) != 0:
                raise RuntimeError("the cluster did not start (see the lines above)")
            running = running_state_dir()
        if running is None:
            raise RuntimeError(
                "no cluster is up: run `python scripts/cluster.py up --detach` first"
            )
        state_dir = running
    elif running is None or running.resolve() != Path(state_dir).resolve():
        raise RuntimeError(f"no cluster of {state_dir} is up (running: {running})")
    return AttachedCluster(state_dir)


def main(argv: Sequence[str] | None = None) -> int:
    """`up | status` (docs/cluster.md, "make cluster")."""
    parser = argparse.ArgumentParser(prog="devcluster", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["up", "status"])
    parser.add_argument(
        "--state-dir",
        default=None,
        help=f"the cluster's (default: the running one, {DEFAULT_STATE_DIR})",
    )
    defaults = Settings()
    parser.add_argument("--namespace", default=defaults.namespace)
    parser.add_argument("--ingress-port", type=int, default=defaults.ingress_port)
    parser.add_argument("--prometheus-port", type=int, default=defaults.prometheus_port)
    parser.add_argument("--access-log", action="store_true", help="Traefik access log on")
    parser.add_argument(
        "--from-commit",
        metavar="REV",
        help="build the app image from `git archive REV` instead of the working tree",
    )
    parser.add_argument(
        "--set", dest="extra_set", action="append", default=[], help="extra helm --set for the app"
    )
    args = parser.parse_args(argv)
    s = Settings(
        namespace=args.namespace,
        ingress_port=args.ingress_port,
        ingress_admin_port=args.ingress_port + 1,
        prometheus_port=args.prometheus_port,
        extra_set=tuple(args.extra_set),
        access_log=args.access_log,
        app_context=export_commit(args.from_commit) if args.from_commit else REPO_ROOT,
    )
    try:
        kube = _attach(Path(args.state_dir) if args.state_dir else None, start=args.command == "up")
        if args.command == "status":
            prom = Prometheus(kube.state_dir, port=s.prometheus_port)
            running = prom.pid() is not None
            print(usage(kube, s, prom.url if running else "(not running)"))
            kube_pods = kube.kubectl("-n", s.namespace, "get", "pods", "-o", "wide", check=False)
            print(kube_pods.stdout or kube_pods.stderr)
            return 0
        result = up(kube, s)
        print(usage(kube, s, result["prometheus_url"]))
    except (RuntimeError, CommandError, subprocess.CalledProcessError, TimeoutError) as err:
        _stderr(f"[devcluster] error: {err}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
