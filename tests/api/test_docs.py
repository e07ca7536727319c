"""`/docs`: the interactive docs page works offline, in a real browser.

The browser tests serve the app on a loopback port and load `/docs` in Debian's headless
Chromium. Chromium's NetLog records every request and TCP connection the browser made, so
"no request off-box" is checked on what happened, not on what the HTML promises. The
browser's own background services (update checks, sign-in) are pointed at a dead proxy on
loopback and refused, so even those never leave the machine.
"""

from __future__ import annotations

import json
import re
import shutil
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from urllib.request import urlopen

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine

from app.api.docs import ASSETS
from app.core import db
from app.core.security import DOCS_CSP
from app.factory import API_VERSIONS, create_app
from app.settings import Settings
from tests.support.processes import LOOPBACK, LiveServer, run_in_group, serve_in_thread

CHROMIUM_TIMEOUT = 90.0
WINDOW = (1280, 1400)
MAJORS = sorted(API_VERSIONS)
# Operations of v1 that must render whatever else it grows: a probe and the extension example.
MUST_RENDER_V1 = {("get", "/readyz"), ("get", "/v1/notes"), ("post", "/v1/notes")}
ABSOLUTE_URL = re.compile(r"https?://", re.IGNORECASE)
# Attributes through which a page loads something (not links a person may click).
LOADING_ATTRIBUTES = frozenset({"src", "srcset", "poster", "data", "action", "formaction"})


def chromium_binary() -> str:
    """Debian's chromium; its absence is a broken environment, so the test fails."""
    path = shutil.which("chromium")
    if path is None:
        pytest.fail(
            "chromium is not installed: `apt-get install -y --no-install-recommends chromium` "
            "(.ci/run installs it); browser tests never skip",
            pytrace=False,
        )
    return path


def chromium_args(profile: Path, *extra: str) -> list[str]:
    """Headless Chromium that talks to loopback only and renders for up to 10 s of page time."""
    return [
        chromium_binary(),
        "--headless",
        "--no-sandbox",  # root in a container: the setuid sandbox is unavailable
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=10000",
        # Loopback bypasses a proxy implicitly; everything else hits a closed loopback port
        # and no host name is ever resolved.
        "--proxy-server=127.0.0.1:9",
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
        "--enable-logging=stderr",
        "--v=0",
        *extra,
    ]


@dataclass(frozen=True)
class Render:
    """What one headless load of /docs produced."""

    major: int
    dom: str
    stderr: str
    netlog: dict[str, Any]
    served: list[str]
    origin: str
    documented: set[tuple[str, str]]

    def events(self, *names: str) -> Iterator[dict[str, Any]]:
        """NetLog events of the given types."""
        types = self.netlog["constants"]["logEventTypes"]
        wanted = {types[n] for n in names}
        # Begin/end pairs: only some carry parameters; normalise so callers can index.
        return (
            {**e, "params": e.get("params", {})}
            for e in self.netlog["events"]
            if e["type"] in wanted
        )

    def page_requests(self) -> list[str]:
        """URLs the page itself requested (its top-level site partitions the request)."""
        site = f"http://{LOOPBACK} http://{LOOPBACK}"
        return [
            e["params"]["url"]
            for e in self.events("URL_REQUEST_START_JOB")
            if "url" in e["params"] and e["params"].get("network_isolation_key") == site
        ]

    def console(self) -> list[str]:
        """The page's console messages, from Chromium's log."""
        return [line for line in self.stderr.splitlines() if ":CONSOLE" in line]


@pytest.fixture(scope="module")
def docs_app(database_url: str, redis_url: str, migrated_engine: Engine) -> Iterator[Flask]:
    """The app as a server process builds it: from settings, on a migrated database."""
    app = create_app(Settings(app_env="test", database_url=database_url, redis_url=redis_url))
    yield app
    # Background parts other subsystems may start while serving (e.g. a config watcher).
    store = app.extensions.get("config_store")
    if store is not None:
        store.stop()
    app.extensions[db.EXTENSION].dispose()


@pytest.fixture(scope="module")
def live(docs_app: Flask) -> Iterator[LiveServer]:
    """The app on a loopback port."""
    with serve_in_thread(docs_app) as server:
        yield server


@pytest.fixture(scope="module", params=MAJORS, ids=[f"v{m}" for m in MAJORS])
def render(
    request: pytest.FixtureRequest, live: LiveServer, tmp_path_factory: pytest.TempPathFactory
) -> Render:
    """Load `/docs?version=N` once per version in headless Chromium, with a NetLog."""
    major: int = request.param
    tmp = tmp_path_factory.mktemp(f"chromium-v{major}")
    netlog = tmp / "netlog.json"
    live.requests.clear()
    result = run_in_group(
        chromium_args(
            tmp / "profile",
            f"--log-net-log={netlog}",
            "--dump-dom",
            f"{live.url}/docs?version={major}",
        ),
        timeout=CHROMIUM_TIMEOUT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return Render(
        major=major,
        dom=result.stdout,
        stderr=result.stderr,
        netlog=json.loads(netlog.read_text()),
        served=list(live.requests),
        origin=live.url,
        documented=documented_operations(live, major),
    )


def documented_operations(live: LiveServer, major: int) -> set[tuple[str, str]]:
    """(method, path) of every operation in the served `/v{major}/openapi.json`."""
    with urlopen(f"{live.url}/v{major}/openapi.json", timeout=10) as response:
        spec = json.load(response)
    return {(method, path) for path, item in spec["paths"].items() for method in item}


class _Elements(HTMLParser):
    """Collects every start tag with its attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def parse(html: str) -> list[tuple[str, dict[str, str | None]]]:
    """(tag, attributes) of every element."""
    parser = _Elements()
    parser.feed(html)
    return parser.tags


def is_loopback_or_relative(url: str) -> bool:
    """True for relative URLs, fragments, data: URIs and http(s) URLs on loopback."""
    parts = urlsplit(url.strip())
    if parts.scheme in ("", "data", "blob"):
        return True
    return parts.scheme in ("http", "https") and parts.hostname in (LOOPBACK, "localhost")


@pytest.mark.browser
@pytest.mark.slow
def test_docs_page_renders_every_operation_of_the_chosen_version(render: Render) -> None:
    blocks: set[tuple[str, str]] = set()
    method = ""
    for tag, attrs in parse(render.dom):
        classes = (attrs.get("class") or "").split()
        if tag == "div" and "opblock" in classes:
            method = next(c.removeprefix("opblock-") for c in classes if c != "opblock")
        if tag == "span" and "opblock-summary-path" in classes:
            blocks.add((method, attrs.get("data-path") or ""))

    assert "Failed to load API definition" not in render.dom
    assert render.documented
    if render.major == 1:
        assert render.documented >= MUST_RENDER_V1
    assert blocks == render.documented, render.dom[-2000:]
    assert f"Structured API v{render.major}" in render.dom
    for major, version in API_VERSIONS.items():
        assert f"v{major} ({version})" in render.dom  # the definition picker lists them all


@pytest.mark.browser
@pytest.mark.slow
def test_docs_page_loads_every_asset_from_the_app(render: Render) -> None:
    requested = render.page_requests()

    assert requested, "the NetLog recorded no page request"
    assert all(url.startswith(render.origin + "/") for url in requested), requested
    assert {f"/docs/assets/{name}" for name in ASSETS} <= set(render.served)
    assert {"/docs", "/docs/init.js"} <= set(render.served)
    documents = {p for p in render.served if p.endswith("/openapi.json")}
    assert documents == {f"/v{render.major}/openapi.json"}


@pytest.mark.browser
@pytest.mark.slow
def test_browser_makes_no_connection_off_box(render: Render) -> None:
    addresses = [
        e["params"]["address"]
        for e in render.events("TCP_CONNECT_ATTEMPT")
        if "address" in e["params"]
    ]
    resolved = [
        e["params"]["host"]
        for e in render.events("HOST_RESOLVER_MANAGER_REQUEST")
        if e["params"].get("host")
    ]

    assert addresses, "the NetLog recorded no TCP connection at all"
    assert all(a.rsplit(":", 1)[0] == LOOPBACK for a in addresses), addresses
    # `~notfound` is the sinkhole of --host-resolver-rules: answered locally, no DNS query.
    assert all(urlsplit(h).hostname in (LOOPBACK, "~notfound") for h in resolved), resolved
    # Requests by the page itself never name another host, even one that would fail.
    page = render.page_requests()
    assert all(urlsplit(u).hostname == LOOPBACK for u in page), page


@pytest.mark.browser
@pytest.mark.slow
def test_rendered_dom_loads_nothing_from_another_origin(render: Render) -> None:
    offenders = []
    for tag, attrs in parse(render.dom):
        for name, value in attrs.items():
            loads = name in LOADING_ATTRIBUTES or (tag == "link" and name == "href")
            if loads and value and not is_loopback_or_relative(value):
                offenders.append((tag, name, value))

    assert offenders == []


@pytest.mark.browser
@pytest.mark.slow
def test_docs_page_logs_no_script_error_or_csp_violation(render: Render) -> None:
    bad = [
        line
        for line in render.console()
        if re.search(r"Uncaught|Refused to|Content Security Policy|Failed to load", line)
    ]

    assert bad == []


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


@pytest.mark.browser
@pytest.mark.slow
def test_docs_page_screenshot_is_a_rendered_page(
    live: LiveServer, tmp_path_factory: pytest.TempPathFactory
) -> None:
    tmp = tmp_path_factory.mktemp("screenshot")
    shot = tmp / "docs.png"

    result = run_in_group(
        chromium_args(
            tmp / "profile",
            f"--window-size={WINDOW[0]},{WINDOW[1]}",
            "--hide-scrollbars",
            f"--screenshot={shot}",
            live.url + "/docs",
        ),
        timeout=CHROMIUM_TIMEOUT,
    )

    assert result.returncode == 0, result.stderr[-3000:]
    data = shot.read_bytes()
    assert png_size(data) == WINDOW
    # A blank page of this size compresses to a few KB; the rendered UI is ~100 KB.
    assert len(data) > 30_000, f"screenshot is suspiciously small ({len(data)} bytes): {shot}"


# Without a browser: what the server hands out for /docs.


def test_docs_html_references_only_app_served_urls(client: FlaskClient) -> None:
    response = client.get("/docs")

    assert response.status_code == 200
    assert response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    assert not ABSOLUTE_URL.search(html)
    refs = [
        value
        for _, attrs in parse(html)
        for name, value in attrs.items()
        if name in ("src", "href") and value
    ]
    assert refs and all(r.startswith("/docs/") for r in refs), refs


def test_docs_page_is_served_with_a_same_origin_csp(client: FlaskClient) -> None:
    response = client.get("/docs")

    assert response.headers["Content-Security-Policy"] == DOCS_CSP
    assert "script-src 'self'" in DOCS_CSP


def test_docs_init_script_lists_every_version_document(client: FlaskClient) -> None:
    response = client.get("/docs/init.js")

    assert response.status_code == 200
    assert response.mimetype == "text/javascript"
    script = response.get_data(as_text=True)
    assert not ABSOLUTE_URL.search(script)
    assert "validatorUrl: null" in script  # the default validator badge loads a remote image
    for major, version in API_VERSIONS.items():
        assert f'"/v{major}/openapi.json"' in script
        assert f"v{major} ({version})" in script


@pytest.mark.parametrize("name", sorted(ASSETS))
def test_every_swagger_asset_is_served_from_the_wheel(client: FlaskClient, name: str) -> None:
    response = client.get(f"/docs/assets/{name}")

    assert response.status_code == 200
    assert len(response.get_data()) > 100
    assert response.cache_control.max_age == 86400
    response.close()


def test_stylesheet_pulls_no_remote_resource(client: FlaskClient) -> None:
    css = client.get("/docs/assets/swagger-ui.css").get_data(as_text=True)

    urls = re.findall(r"url\(\s*['\"]?([^'\")]*)", css)
    assert urls and all(is_loopback_or_relative(u) for u in urls)
    assert "@import" not in css


@pytest.mark.parametrize("name", ["index.html", "swagger-ui.js.map", "..%2Fconfig.py", "x"])
def test_unlisted_asset_is_a_404_envelope(client: FlaskClient, name: str) -> None:
    response = client.get(f"/docs/assets/{name}")

    assert response.status_code == 404
    body = response.get_json()
    assert body["success"] is False
    assert body["error"]["code"] == "RES_NOT_FOUND"


@pytest.mark.parametrize("path", ["/docs", "/docs/init.js", "/v1/openapi.json"])
def test_disabling_docs_removes_every_docs_route(settings: Settings, path: str) -> None:
    disabled = create_app(settings.model_copy(update={"docs_enabled": False}))

    response = disabled.test_client().get(path)

    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "RES_NOT_FOUND"
