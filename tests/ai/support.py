"""Helpers shared by the AI and job tests: simulator processes, providers, callers."""

from __future__ import annotations

import contextlib
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from flask import Flask
from sqlmodel import Session

from app.ai import credentials as ai_credentials
from app.ai.history import queue as history_queue
from app.auth.state import auth_state
from app.auth.tokens import issue_access_token
from app.config_store.extension import config_store
from app.config_store.service import Source, upsert_config
from tests.support.processes import ManagedProcess, ProcessError, child_env, free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Sim:
    """A provider simulator process and its control API."""

    process: ManagedProcess
    port: int

    @property
    def url(self) -> str:
        """Base URL (no path)."""
        return f"http://127.0.0.1:{self.port}"

    def _control(self, method: str, path: str, body: Any = None) -> Any:
        response = httpx.request(method, f"{self.url}/_control/{path}", json=body, timeout=5)
        response.raise_for_status()
        return response.json()

    def fault(self, kind: str, count: int = 1, **extra: Any) -> None:
        """Queue `count` faults of `kind` (e.g. retry_after=1, seconds=2, model=...)."""
        self._control("POST", "faults", {"faults": [{"kind": kind, "count": count, **extra}]})

    def reset(self) -> None:
        """No faults, any key accepted, no recorded requests."""
        self._control("DELETE", "faults")
        self._control("DELETE", "requests")
        self._control("PUT", "keys", {"keys": []})

    def accept_keys(self, *keys: str) -> None:
        """Only these API keys are accepted (others get 401)."""
        self._control("PUT", "keys", {"keys": list(keys)})

    def requests(self) -> list[dict[str, Any]]:
        """Requests received since the last reset."""
        found: list[dict[str, Any]] = self._control("GET", "requests")["requests"]
        return found


@contextlib.contextmanager
def run_sim(log_dir: Path, *, stream_delay: float = 0.0, name: str = "sim") -> Iterator[Sim]:
    """Start `python -m provider_sim` on a free port until the block ends."""
    port = free_port()
    args = [sys.executable, "-m", "provider_sim", "--port", str(port)]
    if stream_delay:
        args += ["--stream-delay", str(stream_delay)]
    process = ManagedProcess(
        name=f"provider simulator {name}",
        args=args,
        env=child_env(PYTHONPATH=str(ROOT / "scripts")),
        log_path=log_dir / f"{name}.log",
        stop_timeout=10,
    ).start()
    sim = Sim(process, port)

    def healthy() -> bool:
        process.check_alive()
        try:
            return httpx.get(f"{sim.url}/_control/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(healthy, timeout=30, what=process.name)
        yield sim
    finally:
        with contextlib.suppress(ProcessError):
            process.stop()


def provider_spec(
    sim: Sim | None,
    *,
    type: str = "OpenAICompatible",
    models: tuple[str, ...] = ("sim-small",),
    priority: int = 10,
    secret: bool = True,
    prices: tuple[str, str] = ("1.50", "6.00"),
    **extra: Any,
) -> dict[str, Any]:
    """An AIProvider spec pointing at `sim` in the wire format `type`."""
    spec: dict[str, Any] = {
        "type": type,
        "models": [
            {"name": m, "inputCostPer1M": prices[0], "outputCostPer1M": prices[1]} for m in models
        ],
        "priority": priority,
        "timeoutSeconds": 2,
        "maxRetries": 1,
    }
    if sim is not None and type != "Echo":
        base = sim.url
        spec["baseURL"] = base + "/v1" if type in ("OpenAICompatible", "OpenAI") else base
    if secret and type != "Echo":
        spec["credentialsSecretRef"] = {"name": "provider-key"}
    spec.update(extra)
    return spec


def install_provider(
    app: Flask,
    session: Session,
    name: str,
    spec: dict[str, Any],
    *,
    api_key: str | None = None,
    refresh: bool = True,
) -> None:
    """Store provider `name` (and its key, encrypted) in the test's transaction."""
    upsert_config(
        session=session, kind="AIProvider", name=name, spec=spec, source=Source.admin(),
        actor="test",
    )  # fmt: skip
    if api_key is not None:
        ai_credentials.store_credential(
            session=session,
            name=name,
            api_key=api_key,
            source=Source.admin(),
            actor="test",
            settings=app.extensions["settings"],
        )
    if refresh:
        config_store(app).refresh(session.connection())


def bearer(subject: str | None = None, roles: tuple[str, ...] = ("user",)) -> dict[str, str]:
    """An Authorization header of a fresh access token (current app's keys)."""
    state = auth_state()
    s = state.settings
    token, _ = issue_access_token(
        keyring=state.keyring,
        issuer=s.jwt_issuer,
        audience=s.jwt_audience,
        ttl=600,
        subject=subject or str(uuid.uuid4()),
        roles=list(roles),
        session_id=None,
    )
    return {"Authorization": f"Bearer {token}"}


def sse_events(raw: str) -> list[tuple[str, dict[str, Any]]]:
    """Parse our SSE body into (event, data) pairs."""
    import json

    out: list[tuple[str, dict[str, Any]]] = []
    for block in raw.strip().split("\n\n"):
        name, data = "message", ""
        for line in block.splitlines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data += line[6:]
        if data:
            out.append((name, json.loads(data)))
    return out


def written(app: Flask) -> int:
    """Write the history rows `app` queued (in the test's transaction); how many."""
    return history_queue.journal(app).drain()
