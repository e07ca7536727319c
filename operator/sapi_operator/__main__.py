"""`python -m sapi_operator`: the operator role of the image (flask-free).

Settings come from the environment like every other role (`app.settings.Settings`):
`OPERATOR_NAMESPACES` (empty = cluster-wide), `OPERATOR_LIVENESS_PORT`, `METRICS_PORT`,
`DATABASE_URL`, `REDIS_URL`, `SECRET_KEY` / `CREDENTIAL_ENCRYPTION_KEYS`, ...
"""

from __future__ import annotations

import logging

import kopf
from prometheus_client import start_http_server

from app.core.observability.logging import configure_logging
from app.settings import Settings

log = logging.getLogger("sapi_operator")


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
    kopf.run(
        clusterwide=not namespaces,
        namespaces=namespaces,
        # One replica (the chart's Deployment): no peering objects, no extra RBAC.
        standalone=True,
        liveness_endpoint=f"http://{settings.metrics_address}:{settings.operator_liveness_port}/healthz",
        memo=kopf.Memo(settings=settings),
    )


if __name__ == "__main__":
    main()
