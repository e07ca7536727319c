"""A bounded, steady load on the API that records every request and every accepted write.

Each client thread loops: write a note (`POST /v1/notes`, as the system's signed-in
user), read it back, and every third
turn submit an AI job (`POST /v1/ai/jobs` with an Idempotency-Key). The loop is paced
(`PACE_S` per turn) so the load stays the same whatever the faults do to latency, and
every request has a client timeout: a hang shows up as an outcome, not a stuck test.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final

import httpx

CLIENT_TIMEOUT_S: Final = 15.0
PACE_S: Final = 0.15  # one turn (2-3 requests) per client thread at most this often


@dataclass(frozen=True)
class Outcome:
    """One request: what, when (monotonic seconds), what came back."""

    op: str
    started: float
    elapsed: float
    status: int | None  # None: no HTTP answer (timeout, connection refused or reset)
    code: str | None  # the envelope's error.code, or the exception's class name
    resource: str | None = None  # the id a 2xx write returned

    @property
    def ok(self) -> bool:
        """A 2xx answer."""
        return self.status is not None and 200 <= self.status < 300


@dataclass
class Load:
    """Client threads against `url` until `stop()`; outcomes and accepted writes kept."""

    url: str
    token: str
    threads: int = 3
    outcomes: list[Outcome] = field(default_factory=list)
    notes: dict[str, str] = field(default_factory=dict)  # accepted note id -> title
    jobs: set[str] = field(default_factory=set)  # accepted job ids
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _pool: list[threading.Thread] = field(default_factory=list)

    def start(self) -> Load:
        """Start the client threads."""
        for n in range(self.threads):
            t = threading.Thread(target=self._client, name=f"chaos-client-{n}", daemon=True)
            t.start()
            self._pool.append(t)
        return self

    def stop(self) -> None:
        """Stop and join every client (each finishes its request first)."""
        self._stop.set()
        for t in self._pool:
            t.join(CLIENT_TIMEOUT_S * 3 + 5)
        assert not any(t.is_alive() for t in self._pool), "a client thread is stuck"

    def since(self, t0: float, ops: Iterable[str] | None = None) -> list[Outcome]:
        """Outcomes of requests started at or after monotonic time `t0`."""
        wanted = set(ops) if ops is not None else None
        with self._lock:
            return [
                o for o in self.outcomes if o.started >= t0 and (wanted is None or o.op in wanted)
            ]

    def _record(self, outcome: Outcome) -> None:
        with self._lock:
            self.outcomes.append(outcome)

    def _call(self, http: httpx.Client, op: str, method: str, path: str, **kw: Any) -> Outcome:
        started = time.monotonic()
        try:
            response = http.request(method, path, **kw)
        except httpx.HTTPError as exc:
            out = Outcome(op, started, time.monotonic() - started, None, type(exc).__name__)
            self._record(out)
            return out
        elapsed = time.monotonic() - started
        code, resource = None, None
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict):
            if isinstance(body.get("error"), dict):
                code = body["error"].get("code")
            if 200 <= response.status_code < 300 and isinstance(body.get("data"), dict):
                resource = body["data"].get("id")
        elif response.status_code != 304:
            code = "NOT_AN_ENVELOPE"
        out = Outcome(op, started, elapsed, response.status_code, code, resource)
        self._record(out)
        return out

    def _client(self) -> None:
        auth = {"Authorization": self.token}
        with httpx.Client(base_url=self.url, timeout=CLIENT_TIMEOUT_S) as http:
            turn = 0
            while not self._stop.is_set():
                began = time.monotonic()
                title = f"chaos {uuid.uuid4()}"
                write = self._call(
                    http, "write", "POST", "/v1/notes", json={"title": title}, headers=auth
                )
                if write.ok and write.resource:
                    with self._lock:
                        self.notes[write.resource] = title
                    self._call(http, "read", "GET", f"/v1/notes/{write.resource}", headers=auth)
                if turn % 3 == 0:
                    job = self._call(
                        http, "job", "POST", "/v1/ai/jobs",
                        json={"prompt": f"chaos turn {turn}", "model": "chaos-model"},
                        headers={**auth, "Idempotency-Key": str(uuid.uuid4())},
                    )  # fmt: skip
                    if job.ok and job.resource:
                        with self._lock:
                            self.jobs.add(job.resource)
                turn += 1
                self._stop.wait(max(0.0, PACE_S - (time.monotonic() - began)))
