"""A prompt cannot stall a worker (docs/ai.md "Limits on a generation"): redaction is
linear on any text and scans only what history keeps, and the prompt's total size is
bounded (413 `AI_PROMPT_TOO_LARGE`).
"""

from __future__ import annotations

import json
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any, Final

import httpx
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlmodel import Session, select

from app.ai.history.records import kept_text
from app.ai.models import AIGeneration
from app.settings import Settings
from tests.ai.adversarial import SHAPES
from tests.ai.live import LiveAI, live_ai
from tests.ai.support import bearer, install_provider, provider_spec
from tests.conftest import ROOT
from tests.support.processes import ProcessError, child_env, run_in_group, wait_for

CPU_BOUND: Final = 0.5  # seconds; linear work takes ~0.05, the old quadratic one minutes

# Runs in a child process: a regression is then a 60 s timeout, not a suite stuck for
# minutes inside one regex (which holds the GIL, so nothing in-process could stop it).
_MEASURE: Final = """
import json, time
from app.settings import Settings
from app.ai.history.records import _REDACTIONS, kept_text, redact
from tests.ai.adversarial import SHAPES
settings = Settings(app_env="test", ai_history_content="redacted")

def cpu(step, *args):
    started = time.process_time()
    step(*args)
    return time.process_time() - started

out = {}
for name, text in SHAPES.items():
    out[name] = {f"pattern {i}": cpu(p.sub, m, text) for i, (p, m) in enumerate(_REDACTIONS)}
    out[name]["redact"] = cpu(redact, text)
    out[name]["kept_text"] = cpu(kept_text, text, settings)
print(json.dumps(out))
"""


@pytest.mark.slow  # a child process
def test_redaction_takes_linear_time_on_adversarial_200k_character_texts() -> None:
    assert {len(text) for text in SHAPES.values()} == {200_000}
    try:
        done = run_in_group(
            [sys.executable, "-c", _MEASURE], timeout=60, env=child_env(PYTHONPATH=str(ROOT))
        )
    except ProcessError as exc:
        pytest.fail(f"redaction did not finish 10 texts of 200k characters in 60 s: {exc}")
    assert done.returncode == 0, done.stderr
    cpu: dict[str, dict[str, float]] = json.loads(done.stdout)
    slow = {
        f"{shape} / {step}": round(seconds, 3)
        for shape, steps in cpu.items()
        for step, seconds in steps.items()
        if seconds >= CPU_BOUND
    }
    assert not slow, slow


@pytest.mark.parametrize(
    "secret",
    [
        "sk-SECRETVALUE1234567",
        "Bearer SECRETVALUE1234567",
        "A1" * 20,
        "ann.lee+ai@example.co.uk",
        "+44 20 7946 0958",
    ],
)
@pytest.mark.parametrize("before_the_limit", [2, 6, 10])
def test_a_secret_cut_by_the_kept_length_is_still_masked(
    secret: str, before_the_limit: int
) -> None:
    settings = Settings(app_env="test", ai_history_content="redacted", ai_history_max_chars=100)
    prefix = (". " * 50)[: 100 - before_the_limit]  # nothing any pattern masks
    text = prefix + secret + " and then" * 1000

    kept = kept_text(text, settings)

    assert kept is not None and len(kept) == 100
    assert kept.startswith(prefix)
    # Without the margin the cut piece is too short for its pattern and stays readable.
    assert secret[:before_the_limit] not in kept[len(prefix) - 1 :], kept


# --- the prompt limit, in-process ------------------------------------------------------

LIMIT: Final = 1000


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The AI test settings with a small prompt limit."""
    return settings.model_copy(update={"ai_max_prompt_chars": LIMIT})


@pytest.fixture
def echo(app: Flask, session: Session) -> str:
    """An Echo provider; the model it serves."""
    install_provider(app, session, "echo", provider_spec(None, type="Echo", models=("echo-m",)))
    return "echo-m"


def _assert_too_large(response: Any, chars: int) -> None:
    assert response.status_code == 413, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    envelope = response.json
    assert envelope["success"] is False and envelope["data"] is None
    assert envelope["error"]["code"] == "AI_PROMPT_TOO_LARGE"
    assert envelope["error"]["details"] == {"prompt_chars": chars, "max_prompt_chars": LIMIT}
    assert envelope["meta"]["request_id"]


@pytest.mark.parametrize("streamed", [False, True])
def test_a_prompt_over_the_limit_is_413_ai_prompt_too_large(
    client: FlaskClient, session: Session, echo: str, streamed: bool
) -> None:
    user = str(uuid.uuid4())
    body = {"prompt": "x" * (LIMIT + 1), "model": echo, "stream": streamed}

    response = client.post("/v1/ai/generate", json=body, headers=bearer(user))

    _assert_too_large(response, LIMIT + 1)
    rows = session.exec(select(AIGeneration).where(AIGeneration.user_id == user)).all()
    assert rows == []  # refused before any provider call: nothing to record


def test_messages_count_together_against_the_limit(client: FlaskClient, echo: str) -> None:
    def messages(*sizes: int) -> dict[str, Any]:
        return {"model": echo, "messages": [{"role": "user", "content": "y" * n} for n in sizes]}

    over = client.post("/v1/ai/generate", json=messages(400, 400, 201), headers=bearer())
    at = client.post("/v1/ai/generate", json=messages(400, 400, 200), headers=bearer())

    _assert_too_large(over, 1001)
    assert at.status_code == 200, at.json


def test_a_job_over_the_limit_is_refused_at_submission(client: FlaskClient, echo: str) -> None:
    response = client.post(
        "/v1/ai/jobs", json={"prompt": "z" * (LIMIT + 5), "model": echo}, headers=bearer()
    )

    _assert_too_large(response, LIMIT + 5)


# --- a real worker ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def live(
    database_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveAI]:
    """gunicorn (1 worker, 4 threads) with the default limits and an Echo provider."""
    with live_ai(database_url, redis_url, tmp_path_factory.mktemp("prompt-limits")) as api:
        api.put_provider("echo", provider_spec(None, type="Echo", models=("echo-m",)))
        yield api


@pytest.mark.slow
@pytest.mark.parametrize("shape", ["email-local-part", "email-no-domain", "numbers"])
def test_an_adversarial_200k_prompt_neither_stalls_the_worker_nor_waits(
    live: LiveAI, shape: str
) -> None:
    user = f"u-{uuid.uuid4().hex[:12]}"
    finished = threading.Event()
    answer: list[httpx.Response] = []

    def big() -> None:
        try:
            body = {"prompt": SHAPES[shape], "model": "echo-m"}
            url, headers = f"{live.url}/v1/ai/generate", live.token(user)
            answer.append(httpx.post(url, json=body, headers=headers, timeout=20))
        finally:
            finished.set()

    worker = threading.Thread(target=big)
    started = time.monotonic()
    worker.start()
    livez: list[float] = []
    while True:  # the same worker's other threads, while the big prompt is in flight
        sent = time.monotonic()
        assert httpx.get(f"{live.url}/livez", timeout=20).status_code == 200
        livez.append(time.monotonic() - sent)
        if finished.wait(0.02):
            break
    worker.join()

    assert answer and answer[0].status_code == 200, answer and answer[0].text[:300]
    assert time.monotonic() - started < 10
    assert max(livez) < 1.0, livez
    wait_for(lambda: len(live.rows(user)) == 1, timeout=10, what="the history row")
    row = live.rows(user)[0]
    assert row.prompt_chars == 200_000 and row.prompt is not None
    assert 0 < len(row.prompt) <= live.settings.ai_history_max_chars  # redacted, then cut


@pytest.mark.slow
def test_a_prompt_over_the_default_limit_is_413_through_gunicorn(live: LiveAI) -> None:
    half = {"role": "user", "content": "w " * 75_000}  # 150k characters each
    response = httpx.post(
        f"{live.url}/v1/ai/generate", json={"messages": [half, half], "model": "echo-m"},
        headers=live.token("u-big"), timeout=20,
    )  # fmt: skip

    assert response.status_code == 413, response.text
    error = response.json()["error"]
    assert error["code"] == "AI_PROMPT_TOO_LARGE"
    assert error["details"] == {"prompt_chars": 300_000, "max_prompt_chars": 200_000}
