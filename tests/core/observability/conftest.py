"""One process-wide TracerProvider with an in-memory exporter, and helpers to read metrics.

OTel allows one `set_tracer_provider` per process (a second is ignored with a warning),
so the provider is installed once for the session and the exporter is cleared per test
(OpenTelemetry's fork-process model docs). `tracing.install_provider` sees it and keeps it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import REGISTRY

_EXPORTER = InMemorySpanExporter()


@pytest.fixture(scope="session")
def session_exporter() -> InMemorySpanExporter:
    """Install the session's provider (once) and return its exporter."""
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        # Another test installed a provider first (set_tracer_provider works once per
        # process): export its spans to our exporter too.
        current.add_span_processor(SimpleSpanProcessor(_EXPORTER))
    else:
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
        trace.set_tracer_provider(provider)
    return _EXPORTER


@pytest.fixture
def spans(session_exporter: InMemorySpanExporter) -> Iterator[InMemorySpanExporter]:
    """The in-memory exporter, emptied before and after the test."""
    session_exporter.clear()
    yield session_exporter
    session_exporter.clear()


def sample(name: str, **labels: str) -> float:
    """Current value of one sample of this process's default registry (0 when absent)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture(autouse=True, scope="module")
def _uninstrument_libraries_after_module() -> Iterator[None]:
    """Undo the process-wide Redis/httpx/Celery patches a traced app installs.

    They outlive the app that installed them; later test modules (other subsystems) must
    not run with them, e.g. Celery's publish hook rewriting a task's `traceparent`.
    """
    yield
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    for instrumentor in (RedisInstrumentor(), HTTPXClientInstrumentor(), CeleryInstrumentor()):
        if instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.uninstrument()
