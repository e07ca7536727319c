"""Huge headers and request lines against a real gunicorn (app/gunicorn_conf.py).

gunicorn refuses them itself, before the app runs (its `limit_request_line` 4094,
`limit_request_fields` 100 and `limit_request_field_size` 8190 defaults, gunicorn docs
"Settings: Security"): gunicorn 27 answers 431 Request Header Fields Too Large (RFC 6585
section 5) or 414 URI Too Long (RFC 9110 section 15.5.15) in its own small HTML page,
not our JSON envelope; docs/chaos-and-fuzzing.md says so. Just under the limits, the app
answers with its envelope (e.g. a huge bearer token is a 401, never a 500).
"""

from __future__ import annotations

import http.client
import sys
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import ROOT
from tests.support.processes import ManagedProcess, child_env, free_port, wait_for

pytestmark = [pytest.mark.fuzz, pytest.mark.slow]

FIELD_LIMIT = 8190  # gunicorn's limit_request_field_size default


@pytest.fixture(scope="module")
def server(
    database_url: str,
    redis_url: str,
    migrated_engine: object,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, int]]:
    """gunicorn with the deployment's config file, one worker."""
    port = free_port()
    log_dir = tmp_path_factory.mktemp("huge-headers")
    (log_dir / "prom").mkdir()
    proc = ManagedProcess(
        name="gunicorn",
        args=[sys.executable, "-m", "gunicorn", "-c", "app/gunicorn_conf.py",
              "app.wsgi:application"],
        env=child_env(
            APP_ENV="test", DATABASE_URL=database_url, REDIS_URL=redis_url,
            GUNICORN_BIND=f"127.0.0.1:{port}", GUNICORN_WORKERS="1",
            PROMETHEUS_MULTIPROC_DIR=str(log_dir / "prom"),
        ),
        log_path=log_dir / "gunicorn.log",
        cwd=ROOT,
    ).start()  # fmt: skip

    def up() -> bool:
        proc.check_alive()
        try:
            return httpx.get(f"http://127.0.0.1:{port}/livez", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(up, timeout=60, interval=0.2, what="gunicorn")
    yield "127.0.0.1", port
    proc.stop()


def raw(server: tuple[str, int], path: str, headers: list[tuple[str, str]]) -> tuple[int, str, str]:
    """Status, Content-Type and body of one GET sent with exactly these headers."""
    conn = http.client.HTTPConnection(*server, timeout=10)
    try:
        conn.putrequest("GET", path, skip_accept_encoding=True)
        for name, value in headers:
            conn.putheader(name, value)
        conn.endheaders()
        response = conn.getresponse()
        return response.status, response.getheader("Content-Type") or "", response.read().decode()
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("path", "headers", "status"),
    [
        ("/livez", [("X-Big", "a" * (FIELD_LIMIT + 10))], 431),
        ("/livez", [(f"X-H{i}", "v") for i in range(101)], 431),
        ("/livez?" + "q=" + "a" * 5000, [], 414),
        (
            "/v1/auth/me",
            [("Authorization", "Bearer " + "a" * (FIELD_LIMIT + 10))],
            431,
        ),
    ],
    ids=["one-header-over-8190", "101-headers", "request-line-over-4094", "bearer-over-8190"],
)
def test_gunicorn_refuses_oversized_header_parts_itself_with_431_or_414(
    server: tuple[str, int], path: str, headers: list[tuple[str, str]], status: int
) -> None:
    got, content_type, body = raw(server, path, headers)
    assert got == status
    assert content_type.startswith("text/html")  # gunicorn's page: the app never ran
    assert "request_id" not in body


def test_a_huge_bearer_token_under_the_limit_is_a_401_envelope(server: tuple[str, int]) -> None:
    token = "Bearer " + "a" * (FIELD_LIMIT - 200)
    status, content_type, body = raw(server, "/v1/auth/me", [("Authorization", token)])
    assert status == 401 and content_type.startswith("application/json")
    assert '"AUTH_' in body and token[7:] not in body


def test_many_headers_under_the_limit_are_served(server: tuple[str, int]) -> None:
    status, _, body = raw(server, "/livez", [(f"X-H{i}", "v" * 1000) for i in range(90)])
    assert status == 200, body
