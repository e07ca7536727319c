"""A real, loopback-only test control plane: etcd + kube-apiserver, plus helm and kubectl."""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import yaml

from kubetools.build import Binaries, ensure_binaries
from kubetools.certs import Pki, write_pki
from kubetools.process import free_port, spawn, tail, terminate
from kubetools.tools import helm_kubectl

ADMIN = "admin"
_CLUSTER = "kubetools"
_PORT_ATTEMPTS = 3


def _token() -> str:
    return secrets.token_hex(24)


@dataclass(frozen=True)
class User:
    """A static-token user; the admin is in system:masters, others get only what RBAC grants."""

    name: str
    groups: tuple[str, ...] = ()
    token: str = field(default_factory=_token, repr=False)


class StartupError(RuntimeError):
    """A control-plane process exited or never became ready."""


class CommandError(subprocess.CalledProcessError):
    """A kubectl/helm call failed; unlike its base class, str() shows stderr."""

    def __str__(self) -> str:
        return f"{super().__str__()}\n{self.stderr}"


class ControlPlane:
    """etcd + kube-apiserver on 127.0.0.1 with static-token auth and RBAC, started on init."""

    def __init__(
        self,
        work_dir: Path,
        users: Iterable[User | tuple[str, Sequence[str]]] = (),
        *,
        binaries: Binaries | None = None,
        start_timeout: float = 120.0,
        host: str = "127.0.0.1",
        pki: Pki | None = None,
        apiserver_flags: Mapping[str, str | None] | None = None,
    ) -> None:
        """Start etcd and kube-apiserver; the defaults make the envtest-like test plane.

        host: the address kube-apiserver binds and advertises (a cluster's node address,
        which pods reach through the `kubernetes` Service). pki: certificates made by the
        caller (write_pki with the extra hosts), written to work_dir/pki when None.
        apiserver_flags: "--flag" -> value overriding the defaults; None drops a flag.
        """
        self.work_dir = Path(work_dir).resolve()
        self.work_dir.mkdir(parents=True, exist_ok=True)
        extra = [u if isinstance(u, User) else User(u[0], tuple(u[1])) for u in users]
        self.users: dict[str, User] = {
            u.name: u for u in [User(ADMIN, ("system:masters",)), *extra]
        }
        if len(self.users) != len(extra) + 1:
            raise ValueError("user names must be unique and not 'admin'")
        self.binaries = binaries or ensure_binaries()
        self.helm_bin, self.kubectl_bin = helm_kubectl()
        self.start_timeout = start_timeout
        self.host = host
        self.apiserver_flags = dict(apiserver_flags or {})
        self._etcd: subprocess.Popen[bytes] | None = None
        self._apiserver: subprocess.Popen[bytes] | None = None
        self.timings: dict[str, float] = {}
        began = time.monotonic()
        try:
            self.pki: Pki = pki or write_pki(self.work_dir / "pki")
            self.etcd_url = self._retry_ports(self._start_etcd)
            self.server = self._retry_ports(self._start_apiserver)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began
        self.kubeconfig = self._write_kubeconfig(self.work_dir / "kubeconfig", list(self.users))

    # -- public API ---------------------------------------------------------------------------

    @property
    def token(self) -> str:
        """Bearer token of the admin user (group system:masters)."""
        return self.users[ADMIN].token

    @property
    def pids(self) -> list[int]:
        """Process ids of the running etcd and kube-apiserver."""
        return [p.pid for p in (self._etcd, self._apiserver) if p is not None]

    def kubeconfig_for(self, user: str) -> Path:
        """Write (once) a kubeconfig that knows only this user, for least-privilege callers."""
        path = self.work_dir / f"kubeconfig-{user}"
        if not path.exists():
            self._write_kubeconfig(path, [user])
        return path

    def env(self, user: str = ADMIN) -> dict[str, str]:
        """Environment for a kubectl/helm/client process acting as user."""
        helm_home = self.work_dir / "helm"
        kubeconfig = self.kubeconfig if user == ADMIN else self.kubeconfig_for(user)
        return {
            **os.environ,
            "KUBECONFIG": str(kubeconfig),
            # Keep discovery caches and helm state inside work_dir, never in $HOME.
            "KUBECACHEDIR": str(self.work_dir / "kube-cache"),
            "HELM_CONFIG_HOME": str(helm_home / "config"),
            "HELM_CACHE_HOME": str(helm_home / "cache"),
            "HELM_DATA_HOME": str(helm_home / "data"),
        }

    def kubectl(
        self,
        *args: str,
        check: bool = True,
        user: str = ADMIN,
        input: str | None = None,
        timeout: float = 120.0,
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this control plane as user; raise CommandError if check fails."""
        return self._run(self.kubectl_bin, args, check, user, input, timeout)

    def helm(
        self,
        *args: str,
        check: bool = True,
        user: str = ADMIN,
        input: str | None = None,
        timeout: float = 120.0,
    ) -> subprocess.CompletedProcess[str]:
        """Run helm against this control plane as user; raise CommandError if check fails."""
        return self._run(self.helm_bin, args, check, user, input, timeout)

    def stop(self) -> None:
        """Stop kube-apiserver, then etcd, and reap both; safe to call twice."""
        # The apiserver goes first so it does not log a storm of etcd connection errors.
        for attr in ("_apiserver", "_etcd"):
            proc = getattr(self, attr)
            if proc is not None:
                terminate(proc)
                setattr(self, attr, None)

    def __enter__(self) -> ControlPlane:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"ControlPlane(server={getattr(self, 'server', None)!r}, pids={self.pids})"

    # -- start-up -----------------------------------------------------------------------------

    def _retry_ports(self, start: Callable[[], str]) -> str:
        """Run start, retrying when a just-probed free port was taken by someone else."""
        for attempt in range(1, _PORT_ATTEMPTS + 1):
            try:
                return start()
            except StartupError as err:
                if "address already in use" not in str(err) or attempt == _PORT_ATTEMPTS:
                    raise
        raise AssertionError("unreachable")

    def _start_etcd(self) -> str:
        client, peer = free_port(), free_port()
        url, peer_url = f"http://127.0.0.1:{client}", f"http://127.0.0.1:{peer}"
        data = self.work_dir / "etcd-data"
        shutil.rmtree(data, ignore_errors=True)
        log = self.work_dir / "etcd.log"
        began = time.monotonic()
        self._etcd = spawn(
            [
                self.binaries.etcd,
                "--name=kubetools",
                f"--data-dir={data}",
                f"--listen-client-urls={url}",
                f"--advertise-client-urls={url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=kubetools={peer_url}",
                "--initial-cluster-state=new",
                # Notes, "etcd": tests do not need durability; fsync dominates on slow disks.
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
            log,
        )
        self._wait_ready("etcd", self._etcd, log, lambda: _etcd_healthy(url))
        self.timings["etcd"] = time.monotonic() - began
        return url

    def _start_apiserver(self) -> str:
        port = free_port()
        server = f"https://{self.host}:{port}"
        tokens = self.work_dir / "tokens.csv"
        # Static token file: token,user,uid,"group1,group2" (kube-apiserver --token-auth-file).
        rows = (f'{u.token},{u.name},{u.name},"{",".join(u.groups)}"' for u in self.users.values())
        tokens.write_text("\n".join(rows) + "\n")
        tokens.chmod(0o600)
        log = self.work_dir / "kube-apiserver.log"
        began = time.monotonic()
        flags: dict[str, str | None] = {
            # Flags envtest uses (controller-runtime controlplane/apiserver.go, see notes).
            "--service-cluster-ip-range": "10.0.0.0/24",
            "--allow-privileged": "true",
            "--disable-admission-plugins": "ServiceAccount",
            "--cert-dir": str(self.work_dir / "apiserver-certs"),
            "--authorization-mode": "RBAC",
            "--secure-port": str(port),
            "--bind-address": self.host,
            # Without it the server wants a default route and refuses to start
            # ("no default routes found", openshift/microshift#876).
            "--advertise-address": self.host,
            "--service-account-issuer": server,
            "--service-account-key-file": str(self.pki.sa_pub),
            "--service-account-signing-key-file": str(self.pki.sa_key),
            "--etcd-servers": self.etcd_url,
            "--tls-cert-file": str(self.pki.serving_cert),
            "--tls-private-key-file": str(self.pki.serving_key),
            "--token-auth-file": str(tokens),
            **self.apiserver_flags,
        }
        argv = [f"{name}={value}" for name, value in flags.items() if value is not None]
        self._apiserver = spawn([self.binaries.kube_apiserver, *argv], log)
        ctx = ssl.create_default_context(cafile=str(self.pki.ca_cert))
        self._wait_ready(
            "kube-apiserver", self._apiserver, log, lambda: _readyz(server, self.token, ctx)
        )
        self.timings["kube-apiserver"] = time.monotonic() - began
        return server

    def _wait_ready(
        self, name: str, proc: subprocess.Popen[bytes], log: Path, ready: Callable[[], bool]
    ) -> None:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise StartupError(f"{name} exited with {proc.returncode}; log {log}:\n{tail(log)}")
            if ready():
                return
            time.sleep(0.1)
        terminate(proc)
        raise StartupError(f"{name} not ready after {self.start_timeout}s; log {log}:\n{tail(log)}")

    # -- helpers ------------------------------------------------------------------------------

    def _write_kubeconfig(self, path: Path, users: list[str]) -> Path:
        ca = base64.b64encode(self.pki.ca_cert.read_bytes()).decode()
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": _CLUSTER,
                    "cluster": {"server": self.server, "certificate-authority-data": ca},
                }
            ],
            "users": [{"name": u, "user": {"token": self.users[u].token}} for u in users],
            "contexts": [{"name": u, "context": {"cluster": _CLUSTER, "user": u}} for u in users],
            "current-context": users[0],
        }
        tmp = path.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump(config, sort_keys=False))
        tmp.chmod(0o600)
        tmp.replace(path)
        return path

    def _run(
        self,
        binary: Path,
        args: tuple[str, ...],
        check: bool,
        user: str,
        input: str | None,
        timeout: float,
    ) -> subprocess.CompletedProcess[str]:
        argv = [str(binary), *args]
        result = subprocess.run(
            argv, env=self.env(user), input=input, capture_output=True, text=True, timeout=timeout
        )
        if check and result.returncode != 0:
            raise CommandError(result.returncode, argv, result.stdout, result.stderr)
        return result


def _etcd_healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
            return bool(json.load(resp).get("health") == "true")
    except (OSError, ValueError):
        return False


def _readyz(server: str, token: str, ctx: ssl.SSLContext) -> bool:
    req = urllib.request.Request(f"{server}/readyz", headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=5, context=ctx) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False
