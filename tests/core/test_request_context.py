"""Request ids: accepted when well formed, generated otherwise, echoed and logged."""

from __future__ import annotations

import json
import logging
import threading

import pytest
from flask.testing import FlaskClient

from app.core import request_context
from app.core.observability.logging import JsonFormatter, RequestContextFilter


def test_a_well_formed_incoming_request_id_is_echoed(client: FlaskClient) -> None:
    response = client.get("/livez", headers={"X-Request-ID": "req-2026.11:abc_DEF"})
    assert response.headers["X-Request-ID"] == "req-2026.11:abc_DEF"
    assert response.get_json()["meta"]["request_id"] == "req-2026.11:abc_DEF"


@pytest.mark.parametrize(
    "incoming", ["", "short", "has space in it", "x" * 200, "bad\"quote'id", "inj\r\nX: 1"]
)
def test_a_malformed_request_id_is_replaced(client: FlaskClient, incoming: str) -> None:
    response = client.get(
        "/livez", headers={"X-Request-ID": incoming} if "\n" not in incoming else {}
    )
    rid = response.headers["X-Request-ID"]
    assert rid != incoming and len(rid) == 32
    assert response.get_json()["meta"]["request_id"] == rid


def test_generated_request_ids_are_unique(client: FlaskClient) -> None:
    ids = {client.get("/livez").headers["X-Request-ID"] for _ in range(20)}
    assert len(ids) == 20


def test_access_log_line_is_json_with_the_request_id(
    client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="structured_api.access"):
        response = client.get("/livez", headers={"X-Request-ID": "trace-me-0001"})
    records = [r for r in caplog.records if r.name == "structured_api.access"]
    assert records, "no access log line"
    record = records[-1]
    RequestContextFilter().filter(record)
    line = json.loads(JsonFormatter().format(record))
    assert line["request_id"] == "trace-me-0001" == response.headers["X-Request-ID"]
    assert line["route"] == "/livez" and line["status"] == 200
    assert line["level"] == "INFO" and "duration_ms" in line


def test_error_responses_also_carry_the_request_id(client: FlaskClient) -> None:
    response = client.get("/nope", headers={"X-Request-ID": "missing-route-01"})
    assert response.status_code == 404
    assert response.headers["X-Request-ID"] == "missing-route-01"
    assert response.get_json()["meta"]["request_id"] == "missing-route-01"


def _made_by_logging(fields: dict[str, object]) -> logging.LogRecord:
    log = request_context.access_log
    return log.makeRecord(
        log.name, logging.INFO, request_context.__file__, 0, "request", (), None,
        "_echo_request_id", fields,
    )  # fmt: skip


def test_access_records_carry_what_logging_would_give_them() -> None:
    fields = {"request_id": "rid-00000001", "status": 200, "duration_ms": 0.5}
    made: list[logging.LogRecord] = []

    worker = threading.Thread(
        target=lambda: made.extend([request_context._access_record(fields)]), name="gthread-7"
    )
    worker.start()
    worker.join()
    ours, theirs = made[0], _made_by_logging(fields)

    timing = {"created", "msecs", "relativeCreated", "thread", "threadName"}
    assert {k: v for k, v in vars(ours).items() if k not in timing} == {
        k: v for k, v in vars(theirs).items() if k not in timing
    }
    assert ours.threadName == "gthread-7" and ours.thread == worker.ident
    assert abs(ours.created - theirs.created) < 5
    assert abs(ours.relativeCreated - theirs.relativeCreated) < 5000
    assert 0 <= ours.msecs < 1000
    assert json.loads(JsonFormatter().format(ours))["request_id"] == "rid-00000001"
