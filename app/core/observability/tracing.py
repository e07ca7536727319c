"""OpenTelemetry tracing: one provider per process, installed after fork.

`BatchSpanProcessor` owns a thread, so the provider is built in the process that will
use it (OTel docs, "Working with fork process models"): gunicorn's `post_fork`, Celery's
`worker_process_init` (prefork) or `worker_init` (solo/threads), or `init_app` for a
process that never forks. Instrumentations are installed earlier (at app creation):
they resolve the global provider lazily through the API's proxy tracer, so spans made
after the provider is set go to it.

The exporter and its endpoint come from the standard `OTEL_EXPORTER_OTLP_*` variables,
read by the OTLP exporter itself (opentelemetry.io/docs/specs/otel/protocol/exporter/).
"""

from __future__ import annotations

import logging
import os
from typing import Any, Final

from flask import Flask
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    ParentBased,
    Sampler,
    TraceIdRatioBased,
)
from sqlalchemy import Engine

from app.settings import Settings

log = logging.getLogger(__name__)

#: Probe and scrape paths make a span per second per pod and tell nothing.
EXCLUDED_URLS: Final = "livez,readyz,metrics"
_ENGINE_FLAG: Final = "_sapi_otel_instrumented"

_deferred = False


def build_sampler(name: str, ratio: float) -> Sampler:
    """The sampler named like `OTEL_TRACES_SAMPLER` (OTel SDK environment spec)."""
    samplers: dict[str, Sampler] = {
        "always_on": ALWAYS_ON,
        "always_off": ALWAYS_OFF,
        "traceidratio": TraceIdRatioBased(ratio),
        "parentbased_always_on": ParentBased(ALWAYS_ON),
        "parentbased_always_off": ParentBased(ALWAYS_OFF),
        "parentbased_traceidratio": ParentBased(TraceIdRatioBased(ratio)),
    }
    try:
        return samplers[name]
    except KeyError:
        raise ValueError(f"unknown OTEL_TRACES_SAMPLER {name!r}") from None


def defer_provider() -> None:
    """Tell `init_app` not to build the provider here: a fork follows (Celery prefork)."""
    global _deferred
    _deferred = True


def provider_is_installed() -> bool:
    """True when the global tracer provider is an SDK provider (ours or a test's)."""
    return isinstance(trace.get_tracer_provider(), TracerProvider)


def install_provider(settings: Settings) -> bool:
    """Build and set the process-wide provider; False when disabled or one already exists.

    A second `set_tracer_provider` is ignored with a warning (OTel API), so an existing
    SDK provider, e.g. the in-memory one a test session installs first, is kept.
    """
    if not settings.tracing_enabled or provider_is_installed():
        return False
    resource = Resource.create(
        {
            "service.name": settings.otel_service_name or settings.app_name,
            "service.namespace": "structured-api",
            "deployment.environment.name": settings.app_env.value,
        }
    )
    provider = TracerProvider(
        resource=resource,
        sampler=build_sampler(settings.otel_traces_sampler, settings.otel_traces_sampler_arg),
    )
    exporter = _exporter(settings.otel_traces_exporter)
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    log.debug("tracing provider installed in pid %d", os.getpid())
    return True


def _exporter(name: str) -> Any:
    if name == "none":
        return None
    if name == "console":
        return ConsoleSpanExporter()
    if name == "otlp":
        # Imported here: the protobuf stack costs ~100 ms and only tracing processes need it.
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    raise ValueError(f"unknown OTEL_TRACES_EXPORTER {name!r}")


def instrument_app(app: Flask, settings: Settings) -> None:
    """Trace Flask requests of `app`, its SQLAlchemy engine, Redis, httpx and Celery."""
    from opentelemetry.instrumentation.flask import FlaskInstrumentor

    FlaskInstrumentor().instrument_app(app, excluded_urls=EXCLUDED_URLS)  # type: ignore[no-untyped-call]
    engine = app.extensions.get("db")
    if isinstance(engine, Engine):
        instrument_engine(engine)
    _instrument_libraries()
    if not _deferred:
        install_provider(settings)


def instrument_engine(engine: Engine) -> None:
    """Trace statements of one engine (idempotent)."""
    if getattr(engine, _ENGINE_FLAG, False):
        return
    from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
    from opentelemetry.instrumentation.sqlalchemy.version import __version__
    from opentelemetry.metrics import get_meter

    # The public SQLAlchemyInstrumentor is a process-wide singleton that takes one engine;
    # every app (and test) has its own engine, so attach the same EngineTracer it would.
    tracer = trace.get_tracer("opentelemetry.instrumentation.sqlalchemy", __version__)
    usage = get_meter(
        "opentelemetry.instrumentation.sqlalchemy", __version__
    ).create_up_down_counter("db.client.connections.usage", unit="connections")
    EngineTracer(tracer, engine, usage)  # type: ignore[no-untyped-call]
    setattr(engine, _ENGINE_FLAG, True)


def _instrument_libraries() -> None:
    """Process-wide instrumentations (each is a singleton that patches its library once)."""
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    instrumentors: tuple[Any, ...] = (
        RedisInstrumentor(),
        HTTPXClientInstrumentor(),
        CeleryInstrumentor(),  # type: ignore[no-untyped-call]
    )
    for instrumentor in instrumentors:
        if not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument()


def shutdown() -> None:
    """Flush and stop the provider (end of a worker process); no-op without one."""
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        provider.shutdown()
