"""`python -m sapi_operator`: the operator role of the image (flask-free).

Settings come from the environment like every other role (`app.settings.Settings`):
`OPERATOR_NAMESPACES` (empty = cluster-wide), `OPERATOR_LIVENESS_PORT`, `METRICS_PORT`,
`DATABASE_URL`, `REDIS_URL`, `SECRET_KEY` / `CREDENTIAL_ENCRYPTION_KEYS`, ...

With `OPERATOR_LEADER_ELECTION=true` (the chart's default, several replicas) the process
first waits as a standby until it holds the Lease (sapi_operator/election.py), serving
/healthz meanwhile, and only then starts Kopf; it exits at once if it ever loses the Lease
(the kubelet restarts it as a standby), and releases it on SIGTERM so a standby takes
over without waiting for the Lease to expire.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import socket
from pathlib import Path
from typing import Any, Final

import kopf
from aiohttp import web
from prometheus_client import Gauge, start_http_server

from app.core.observability.logging import configure_logging
from app.settings import Settings
from sapi_operator.election import Elector, Timing
from sapi_operator.kube import Kube

log = logging.getLogger("sapi_operator")

#: 1 in the replica that holds the Lease and reconciles, 0 in a standby.
LEADER: Final = Gauge(
    "sapi_operator_leader",
    "1 if this operator replica holds the leader-election Lease and reconciles",
    ["identity"],
)
#: Exit status of a replica that lost its Lease (it must stop reconciling at once).
EXIT_LOST_LEASE: Final = 3
SERVICE_ACCOUNT_NAMESPACE: Final = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


class KopfRecordFilter(logging.Filter):
    """Keeps Kopf's per-object log records small: the object, not the whole settings."""

    def filter(self, record: logging.LogRecord) -> bool:
        ref = record.__dict__.pop("k8s_ref", None)
        if isinstance(ref, dict):
            record.object = f"{ref.get('kind')} {ref.get('namespace')}/{ref.get('name')}"
        record.__dict__.pop("settings", None)
        record.__dict__.pop("k8s_skip", None)
        return True


def configure_operator_logging(settings: Settings) -> None:
    """The app's JSON logging, trimmed for Kopf (no settings dumps, no probe access lines)."""
    configure_logging(settings)
    for handler in logging.getLogger().handlers:
        handler.addFilter(KopfRecordFilter())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def lease_namespace(settings: Settings) -> str:
    """The Lease's namespace: the setting, else the pod's own (its service account's)."""
    if settings.operator_lease_namespace:
        return settings.operator_lease_namespace
    with contextlib.suppress(OSError):
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
    raise SystemExit("OPERATOR_LEADER_ELECTION needs OPERATOR_LEASE_NAMESPACE outside a pod")


async def _standby_health(settings: Settings, elector: Elector) -> web.AppRunner:
    """/healthz of a standby (Kopf serves it once this replica leads)."""

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"leader": False, "holder": elector.holder or None})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, settings.metrics_address, settings.operator_liveness_port).start()
    return runner


async def run_elected(settings: Settings, **kopf_args: Any) -> None:
    """Wait for the Lease, then run Kopf while holding it (see the module doc)."""
    identity = settings.operator_identity or f"{socket.gethostname()}-{secrets.token_hex(3)}"
    timing = Timing(
        settings.operator_lease_duration,
        settings.operator_lease_renew_deadline,
        settings.operator_lease_retry_period,
    )
    LEADER.labels(identity).set(0)
    kube = await Kube.connect(settings)
    elector = Elector(
        kube,
        namespace=lease_namespace(settings),
        name=settings.operator_lease_name,
        identity=identity,
        timing=timing,
        on_change=lambda leading, _holder: LEADER.labels(identity).set(int(leading)),
    )
    log.info("leader election: %s waits for lease %s", identity, settings.operator_lease_name)
    health = await _standby_health(settings, elector)
    loop = asyncio.get_running_loop()
    acquiring = asyncio.ensure_future(elector.acquire())
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, acquiring.cancel)
    try:
        await acquiring
    except asyncio.CancelledError:
        log.info("operator stopped while standing by")
        await health.cleanup()
        await kube.close()
        return
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.remove_signal_handler(sig)  # Kopf installs its own (graceful stop)
    await health.cleanup()
    operating = asyncio.ensure_future(kopf.operator(**kopf_args))
    holding = asyncio.ensure_future(elector.hold())
    try:
        await asyncio.wait({operating, holding}, return_when=asyncio.FIRST_COMPLETED)
        if holding.done():
            # Another replica may take the Lease once it expires: stop reconciling now,
            # before that (renew deadline < lease duration), without a graceful shutdown.
            log.critical("leader election: lost lease %s; exiting", settings.operator_lease_name)
            logging.shutdown()
            os._exit(EXIT_LOST_LEASE)
        await operating  # Kopf stopped (SIGTERM) or failed: re-raise its error
    finally:
        holding.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await holding
        await elector.release()
        await kube.close()


def main() -> None:
    """Run the operator until SIGTERM/SIGINT."""
    settings = Settings()
    configure_operator_logging(settings)
    import sapi_operator.handlers  # noqa: F401  (registers the handlers with Kopf)

    if settings.metrics_enabled:
        start_http_server(settings.metrics_port, addr=settings.metrics_address)
    namespaces = settings.operator_namespaces
    log.info(
        "operator starting: %s, liveness on :%d, metrics on :%d",
        f"namespaces {', '.join(namespaces)}" if namespaces else "cluster-wide",
        settings.operator_liveness_port,
        settings.metrics_port,
    )
    kopf_args: dict[str, Any] = {
        "clusterwide": not namespaces,
        "namespaces": namespaces,
        # Never Kopf's peering: one replica, or one leader elected on a Lease (election.py).
        "standalone": True,
        "liveness_endpoint": (
            f"http://{settings.metrics_address}:{settings.operator_liveness_port}/healthz"
        ),
        "memo": kopf.Memo(settings=settings),
    }
    if settings.operator_leader_election:
        asyncio.run(run_elected(settings, **kopf_args))
    else:
        kopf.run(**kopf_args)


if __name__ == "__main__":
    main()
