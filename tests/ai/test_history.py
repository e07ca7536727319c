"""`GET /v1/ai/history`: the caller's own records, paginated, filtered, redacted by setting."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlmodel import Session, select

from app.ai.dead_letters.models import DeadLetter
from app.ai.history import queue as history_queue
from app.ai.history import records as ai_history
from app.ai.models import AIGeneration
from app.core.models import utcnow
from app.settings import Settings
from tests.ai.support import Sim, bearer, install_provider, provider_spec, written

KEY = "sk-history-0123456789abcdef"
SENSITIVE = "mail bob@example.com card 4111 1111 1111 1111 key sk-abcdefghijklmnop ok"


@pytest.fixture
def provider(app: Flask, session: Session, sim: Sim) -> Sim:
    """One provider serving sim-small and sim-large."""
    install_provider(
        app, session, "primary", provider_spec(sim, models=("sim-small", "sim-large")), api_key=KEY
    )
    return sim


def generate(client: FlaskClient, user: str, **body: object) -> None:
    client.post("/v1/ai/generate", json={"prompt": "p", **body}, headers=bearer(user))


def history(client: FlaskClient, user: str, query: str = "") -> dict:  # type: ignore[type-arg]
    written(client.application)  # history is written behind the answers (docs/ai.md)
    response = client.get(f"/v1/ai/history{query}", headers=bearer(user))
    assert response.status_code == 200, response.json
    data: dict = response.json["data"]  # type: ignore[type-arg,index]
    return data


def test_history_lists_only_the_callers_own_records_newest_first(
    client: FlaskClient, provider: Sim
) -> None:
    alice, bob = str(uuid.uuid4()), str(uuid.uuid4())
    for word in ("one", "two", "three"):
        generate(client, alice, prompt=word)
    generate(client, bob)

    mine = history(client, alice)["data"]
    theirs = history(client, bob)["data"]

    assert len(mine) == 3 and len(theirs) == 1
    assert [r["response"] for r in mine] == ["echo: three", "echo: two", "echo: one"]
    assert {r["id"] for r in mine}.isdisjoint({r["id"] for r in theirs})


def test_pages_follow_the_cursor_without_gaps_or_repeats(
    client: FlaskClient, provider: Sim
) -> None:
    user = str(uuid.uuid4())
    for i in range(5):
        generate(client, user, prompt=f"n{i}")

    first = history(client, user, "?limit=2")
    second = history(client, user, f"?limit=2&cursor={first['next_cursor']}")
    third = history(client, user, f"?limit=2&cursor={second['next_cursor']}")

    ids = [r["id"] for page in (first, second, third) for r in page["data"]]
    assert len(ids) == len(set(ids)) == 5
    assert third["next_cursor"] is None


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("?model=sim-large", 1),
        ("?stream=true", 1),
        ("?outcome=error", 1),
        ("?outcome=success", 3),
        ("?provider=primary", 3),
        ("?provider=other", 0),
    ],
)
def test_filters_narrow_the_list(
    client: FlaskClient, provider: Sim, query: str, expected: int
) -> None:
    user = str(uuid.uuid4())
    generate(client, user)
    generate(client, user, model="sim-large")
    client.post(
        "/v1/ai/generate", json={"prompt": "s", "stream": True}, headers=bearer(user)
    ).get_data()
    provider.fault("500", count=5)
    generate(client, user)

    assert len(history(client, user, query)["data"]) == expected


def test_a_forged_cursor_is_422(client: FlaskClient) -> None:
    response = client.get("/v1/ai/history?cursor=bm90LWEtY3Vyc29y", headers=bearer())
    assert response.status_code == 422


@pytest.mark.parametrize(
    ("mode", "kept"),
    [
        ("none", None),
        ("redacted", "mail [email] card [number] key [secret] ok"),
        ("full", SENSITIVE),
    ],
)
def test_history_keeps_prompts_as_the_setting_says(
    app: Flask, client: FlaskClient, provider: Sim, mode: str, kept: str | None
) -> None:
    settings: Settings = app.extensions["settings"]
    app.extensions["settings"] = settings.model_copy(update={"ai_history_content": mode})
    user = str(uuid.uuid4())
    app.extensions["ai_gateway"].settings = app.extensions["settings"]

    client.post("/v1/ai/generate", json={"prompt": SENSITIVE}, headers=bearer(user))

    record = history(client, user)["data"][0]
    assert record["prompt"] == kept
    assert record["prompt_chars"] == len(SENSITIVE)


def test_records_older_than_the_retention_are_purged(
    session: Session, client: FlaskClient, provider: Sim
) -> None:
    user = str(uuid.uuid4())
    generate(client, user, prompt="old")
    generate(client, user, prompt="new")
    written(client.application)
    old = session.exec(select(AIGeneration).where(AIGeneration.response == "echo: old")).one()
    old.created_at = utcnow() - timedelta(days=31)
    session.add(old)
    session.flush()

    removed = ai_history.purge(session=session, older_than_days=30)

    assert removed == 1
    assert [r["response"] for r in history(client, user)["data"]] == ["echo: new"]


def test_a_row_postgresql_refuses_goes_to_the_dead_letter_store_and_the_rest_are_written(
    app: Flask, session: Session
) -> None:
    journal = history_queue.journal(app)
    owner = ai_history.Owner(owner="user:dl", user_id="dl", api_key_id=None)
    rows = [
        ai_history.row(settings=app.extensions["settings"], owner=owner, model="m",
                       provider="p", outcome="success", prompt=f"p{i}", response="r")
        for i in range(3)
    ]  # fmt: skip
    rows[1]["outcome"] = "exploded"  # violates ck_ai_generation_outcome
    for values in rows:
        assert journal.push(history_queue.encode(values))

    assert written(app) == 3

    stored = session.exec(select(AIGeneration).where(AIGeneration.user_id == "dl")).all()
    assert sorted(r.prompt or "" for r in stored) == ["p0", "p2"]
    letter = session.exec(
        select(DeadLetter).where(DeadLetter.task_name == history_queue.WRITE_TASK)
    ).one()
    assert letter.subject == f"ai_generation:{rows[1]['id']}"
    assert letter.task_args == [history_queue.encode(rows[1])]  # replay writes it again
    assert journal.backlog() == 0


def test_a_record_written_twice_is_stored_once_and_is_no_dead_letter(
    app: Flask, session: Session
) -> None:
    # A drainer killed after its COMMIT but before it dropped its batch: the batch comes
    # back and is written again, next to records never written.
    journal = history_queue.journal(app)
    owner = ai_history.Owner(owner="user:twice", user_id="twice", api_key_id=None)
    first, second = (
        ai_history.row(settings=app.extensions["settings"], owner=owner, model="m",
                       provider="p", outcome="success", prompt=p, response="r")
        for p in ("first", "second")
    )  # fmt: skip
    journal.push(history_queue.encode(first))
    assert written(app) == 1
    for values in (second, first):
        journal.push(history_queue.encode(values))

    assert written(app) == 2

    stored = session.exec(select(AIGeneration).where(AIGeneration.user_id == "twice")).all()
    assert sorted(r.prompt or "" for r in stored) == ["first", "second"]
    letters = select(DeadLetter).where(DeadLetter.task_name == history_queue.WRITE_TASK)
    assert session.exec(letters).all() == []


def test_a_journaled_record_carries_every_column_it_fills_by_name(app: Flask) -> None:
    owner = ai_history.Owner(owner="user:c", user_id="c", api_key_id=None)
    values = ai_history.row(settings=app.extensions["settings"], owner=owner, model="m",
                            provider=None, outcome="error", prompt="p", response=None)  # fmt: skip
    table = {c.name for c in AIGeneration.__table__.columns}  # type: ignore[attr-defined]

    assert tuple(values) == ai_history.COLUMNS
    assert set(ai_history.COLUMNS) <= table


def test_records_are_journaled_as_compact_json_whatever_they_hold(app: Flask) -> None:
    # orjson writes records; what it refuses (an integer beyond 64 bits) goes through the
    # standard library.
    journal = history_queue.journal(app)
    journal.background = False
    owner = ai_history.Owner(owner="user:enc", user_id="enc", api_key_id=None)
    settings = app.extensions["settings"]
    for prompt, tokens in (("plain", 3), ("naïve \u00e9t\u00e9 \U0001f600", 3), ("big", 2**70)):
        values = history_queue.encode(
            ai_history.row(settings=settings, owner=owner, model="m", provider="p",
                           outcome="success", prompt=prompt, response="r", input_tokens=tokens)
        )  # fmt: skip
        assert journal.push(values)
        raw = journal.client.rpop(journal.pending_key)
        assert json.loads(raw) == values
        assert b", " not in raw and b'": ' not in raw  # compact
