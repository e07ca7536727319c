"""Helpers for the release tests: an HTTP client through the ingress, bounded steady load,
pod metrics scraped directly, and waits on custom resources (tests/cluster/test_release.py)."""

from __future__ import annotations

import contextlib
import http.client
import json
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kubetools.cluster import Cluster
from prometheus_client.parser import text_string_to_metric_families

PASSWORD = "correct horse battery staple"


@dataclass(frozen=True)
class Reply:
    """One HTTP answer: status, headers (lower-case names) and the JSON body if any."""

    status: int
    headers: dict[str, str]
    body: Any
    text: str


class Ingress:
    """HTTP through Traefik: connect to 127.0.0.1:<port>, route with the Host header."""

    def __init__(self, port: int, host: str) -> None:
        self.port = port
        self.host = host

    @property
    def url(self) -> str:
        """The URL a browser uses (*.localhost resolves to loopback, RFC 6761 6.3)."""
        return f"http://{self.host}:{self.port}"

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 30.0,
    ) -> Reply:
        """One request on a fresh connection."""
        sent = {"Host": self.host, **(headers or {})}
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            sent["Content-Type"] = "application/json"
        if token:
            sent["Authorization"] = f"Bearer {token}"
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=payload, headers=sent)
            resp = conn.getresponse()
            raw = resp.read().decode(errors="replace")
            parsed: Any = None
            with contextlib.suppress(ValueError):
                parsed = json.loads(raw) if raw else None
            return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, parsed, raw)
        finally:
            conn.close()

    def token(self, email: str, password: str = PASSWORD, *, register: bool = True) -> str:
        """Register (when asked) and log in; return the access token."""
        if register:
            reply = self.call("POST", "/v1/auth/register", {"email": email, "password": password})
            assert reply.status in (200, 201, 202), reply.text
        reply = self.call("POST", "/v1/auth/login", {"email": email, "password": password})
        assert reply.status == 200, reply.text
        return str(reply.body["data"]["access_token"])


@dataclass
class LoadResult:
    """What a load run saw: every request, and the ones that did not answer 200."""

    requests: int = 0
    failures: list[tuple[float, str]] = field(default_factory=list)
    # 503s with Retry-After that a client following docs/errors.md retried, and the retry
    # answered 200 (a retry that fails again is a failure).
    retried: list[tuple[float, str]] = field(default_factory=list)
    seconds: float = 0.0


class SteadyLoad:
    """Bounded steady load through the ingress: one keep-alive client per token, each
    sending GET `path` every `pause` seconds until stopped, `max_seconds` pass or
    `max_requests` are sent. A request fails when its answer is not 200 or the connection
    breaks. The only retry is the one the API documents for clients: a 503 with
    `Retry-After` (a dependency did not answer in time, docs/errors.md) is sent once more
    after that delay (at most 1 s) and recorded in `result.retried`; if the retry is not a
    200 either, the request fails. The pause keeps each user under the app's default limit
    (RATE_LIMIT_DEFAULT_REQUESTS, 600 a minute per user)."""

    def __init__(
        self,
        ingress: Ingress,
        tokens: Sequence[str],
        *,
        path: str = "/v1/auth/me",
        pause: float = 0.15,
        max_seconds: float = 240.0,
        max_requests: int = 20_000,
    ) -> None:
        self.ingress = ingress
        self.tokens = list(tokens)
        self.path = path
        self.pause = pause
        self.max_seconds = max_seconds
        self.max_requests = max_requests
        self.result = LoadResult()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._workers: list[threading.Thread] = []
        self._began = 0.0

    def _worker(self, token: str) -> None:
        headers = {"Host": self.ingress.host, "Authorization": f"Bearer {token}"}
        conn: http.client.HTTPConnection | None = None
        while not self._stop.is_set():
            now = time.monotonic()
            with self._lock:
                if (
                    self.result.requests >= self.max_requests
                    or now - self._began > self.max_seconds
                ):
                    return
                self.result.requests += 1
            first: tuple[float, str] | None = None
            for attempt in (1, 2):
                problem, retry_after = None, None
                try:
                    if conn is None:
                        conn = http.client.HTTPConnection(
                            "127.0.0.1", self.ingress.port, timeout=15
                        )
                    conn.request("GET", self.path, headers=headers)
                    resp = conn.getresponse()
                    raw = resp.read()
                    if resp.status != 200:
                        # The body says who answered (the app's error envelope, or
                        # Traefik's plain "Service Unavailable"/"Bad Gateway").
                        problem = f"HTTP {resp.status} {raw[:300].decode(errors='replace')}"
                        if resp.status == 503:
                            retry_after = resp.getheader("retry-after")
                    if resp.getheader("connection", "").lower() == "close":
                        conn.close()
                        conn = None
                except (OSError, http.client.HTTPException) as err:
                    problem = f"{type(err).__name__}: {err}"
                    if conn is not None:
                        conn.close()
                    conn = None
                at = time.monotonic() - self._began
                if problem is None:
                    if first is not None:
                        with self._lock:
                            self.result.retried.append(first)
                    break
                if attempt == 1 and retry_after is not None and retry_after.isdigit():
                    first = (at, problem)
                    time.sleep(min(float(retry_after), 1.0))
                    continue
                with self._lock:
                    self.result.failures.append(first or (at, problem))
                break
            time.sleep(self.pause)
        if conn is not None:
            conn.close()

    def __enter__(self) -> SteadyLoad:
        self._began = time.monotonic()
        self._workers = [
            threading.Thread(target=self._worker, args=(token,), daemon=True)
            for token in self.tokens
        ]
        for worker in self._workers:
            worker.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(timeout=30)
        self.result.seconds = time.monotonic() - self._began


def wait(condition: Callable[[], Any], timeout: float, what: str, every: float = 0.5) -> Any:
    """Poll until condition() is truthy; return its value or raise AssertionError."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = condition()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def kube_json(cluster: Cluster, *args: str) -> Any:
    """`kubectl ... -o json`, parsed."""
    return json.loads(cluster.kubectl(*args, "-o", "json").stdout)


def running_pods(cluster: Cluster, namespace: str, selector: str) -> list[dict[str, Any]]:
    """Running pods matching selector that are not being deleted."""
    pods = kube_json(cluster, "-n", namespace, "get", "pods", "-l", selector)["items"]
    return [
        p
        for p in pods
        if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")
    ]


def ready(pod: Mapping[str, Any]) -> bool:
    """The pod's Ready condition is True."""
    return any(
        c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", [])
    )


def scrape(pod_ip: str, port: int = 9808) -> dict[str, list[tuple[dict[str, str], float]]]:
    """A pod's metrics port, scraped directly over the bridge: sample name -> samples."""
    with urllib.request.urlopen(f"http://{pod_ip}:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return samples


def custom_resource_ready(cluster: Cluster, namespace: str, kind: str, name: str) -> int | None:
    """configGeneration of a custom resource once the operator reconciled its latest spec."""
    obj = kube_json(cluster, "-n", namespace, "get", kind, name)
    status = obj.get("status") or {}
    conditions = {c["type"]: c for c in status.get("conditions", [])}
    current = status.get("observedGeneration") == obj["metadata"]["generation"]
    if current and conditions.get("Ready", {}).get("status") == "True":
        generation = status.get("configGeneration")
        return int(generation) if generation is not None else None
    return None


@contextlib.contextmanager
def timed(store: dict[str, float], name: str) -> Iterator[None]:
    """Record how long the block took under name."""
    t0 = time.monotonic()
    yield
    store[name] = time.monotonic() - t0
