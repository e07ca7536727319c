"""HTTP metrics: bounded labels (route templates), the /metrics endpoint and the off switch.

The scrape port of a gunicorn pod is tested in test_gunicorn_multiprocess.py; here the
in-app `/metrics`, which exists only with METRICS_ON_API_PORT.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client import REGISTRY, Counter, Gauge, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlmodel import Session

from app.core.observability import metrics
from app.core.warnings import warn
from app.factory import create_app
from app.settings import Settings
from tests.core.observability.conftest import sample
from tests.support.accounts import signed_in

NOTE_ROUTE = "/v1/notes/<uuid:note_id>"


def requests_total(route: str, method: str, status: str, version: str) -> float:
    """The HTTP request counter for one label set."""
    return sample(
        "sapi_http_requests_total", route=route, method=method, status=status, api_version=version
    )


def test_requests_are_counted_by_route_template_not_raw_path(
    client: FlaskClient, session: Session
) -> None:
    before = requests_total(NOTE_ROUTE, "GET", "404", "1.0")
    ids = [str(uuid.uuid4()) for _ in range(3)]
    me = signed_in(session)  # the notes example needs a signed-in user

    for note_id in ids:
        assert client.get(f"/v1/notes/{note_id}", headers=me).status_code == 404

    assert requests_total(NOTE_ROUTE, "GET", "404", "1.0") == before + 3
    exposition = generate_latest(REGISTRY).decode()
    assert not any(note_id in exposition for note_id in ids)


def test_request_duration_is_observed_with_status_class(client: FlaskClient) -> None:
    labels = {"route": "/livez", "method": "GET", "status_class": "2xx", "api_version": "none"}
    before = sample("sapi_http_request_duration_seconds_count", **labels)

    client.get("/livez")

    assert sample("sapi_http_request_duration_seconds_count", **labels) == before + 1
    assert sample("sapi_http_request_duration_seconds_sum", **labels) > 0


@pytest.mark.parametrize(
    ("path", "method"),
    [("/no/such/path/12345", "GET"), ("/no/such/path/67890", "POST"), ("/livez", "PURGE")],
    ids=["unknown-get", "unknown-post", "invented-method"],
)
def test_unmatched_requests_share_one_route_label(
    client: FlaskClient, path: str, method: str
) -> None:
    label_method = method if method in {"GET", "POST"} else "OTHER"
    status = "404" if path != "/livez" else "405"
    before = requests_total(metrics.UNMATCHED_ROUTE, label_method, status, "none")

    response = client.open(path, method=method)

    assert response.status_code == int(status)
    assert requests_total(metrics.UNMATCHED_ROUTE, label_method, status, "none") == before + 1


def test_in_progress_gauge_returns_to_its_value_after_a_request(client: FlaskClient) -> None:
    before = sample("sapi_http_requests_in_progress", method="GET")

    client.get("/livez")

    assert sample("sapi_http_requests_in_progress", method="GET") == before


def test_warnings_in_the_envelope_are_counted_by_code(app: Flask, client: FlaskClient) -> None:
    @app.get("/obs-test/warn")
    def _warns() -> dict[str, str]:
        warn("OBS_TEST_WARNING", "counted")
        return {"ok": "yes"}

    before = sample("sapi_warnings_total", code="OBS_TEST_WARNING", level="WARN")

    client.get("/obs-test/warn")

    assert sample("sapi_warnings_total", code="OBS_TEST_WARNING", level="WARN") == before + 1


@pytest.fixture
def metrics_on_api_port(settings: Settings) -> Iterator[Flask]:
    """An app that also serves GET /metrics on its own port (METRICS_ON_API_PORT=true)."""
    application = create_app(settings.model_copy(update={"metrics_on_api_port": True}))
    yield application
    application.extensions["config_store"].stop()
    application.extensions["db"].dispose()


def test_metrics_endpoint_serves_prometheus_text_when_asked(metrics_on_api_port: Flask) -> None:
    client = metrics_on_api_port.test_client()
    client.get("/livez")

    response = client.get("/metrics")

    assert response.status_code == 200
    assert response.content_type.startswith("text/plain; version=0.0.4")
    families = {f.name for f in text_string_to_metric_families(response.get_data(as_text=True))}
    assert {"sapi_http_requests", "sapi_http_request_duration_seconds"} <= families


def test_metrics_are_recorded_but_not_served_on_the_api_port_by_default(
    settings: Settings, client: FlaskClient
) -> None:
    before = requests_total("/livez", "GET", "200", "none")

    assert client.get("/livez").status_code == 200
    response = client.get("/metrics")

    assert settings.metrics_on_api_port is False
    assert response.status_code == 404
    assert response.json is not None and response.json["error"]["code"] == "RES_NOT_FOUND"
    assert requests_total("/livez", "GET", "200", "none") == before + 1


def test_metrics_disabled_registers_neither_hooks_nor_endpoint(settings: Settings) -> None:
    off = create_app(settings.model_copy(update={"metrics_enabled": False}))
    before = requests_total("/livez", "GET", "200", "none")

    with off.test_client() as client:
        assert client.get("/livez").status_code == 200
        assert client.get("/metrics").status_code == 404

    assert requests_total("/livez", "GET", "200", "none") == before
    assert off.extensions["observability"] == {"metrics": False, "tracing": False}
    off.extensions["db"].dispose()


def test_every_metric_has_labels_so_import_writes_no_multiprocess_file() -> None:
    # An unlabelled metric creates its value (and its mmap file) at import, before a
    # worker could wipe PROMETHEUS_MULTIPROC_DIR (metrics.py docstring).
    defined = [v for v in vars(metrics).values() if isinstance(v, Counter | Gauge | Histogram)]
    assert len(defined) >= 20
    assert [m._name for m in defined if not m._labelnames] == []


def test_gauges_name_a_multiprocess_mode_that_drops_dead_processes() -> None:
    gauges = [v for v in vars(metrics).values() if isinstance(v, Gauge)]
    assert {g._name: g._multiprocess_mode for g in gauges} == {
        "sapi_http_requests_in_progress": "livesum",
        "sapi_config_generation": "liveall",
        "sapi_ai_circuit_breaker_state": "livemax",
    }


@pytest.mark.parametrize(
    ("status", "expected"), [(200, "2xx"), (304, "3xx"), (429, "4xx"), (503, "5xx")]
)
def test_status_class_groups_codes_by_hundred(status: int, expected: str) -> None:
    assert metrics.status_class(status) == expected
