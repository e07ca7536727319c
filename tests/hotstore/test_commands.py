"""`ThreadCommands` (app/hotstore/commands.py) against a real Redis: single commands and
pipelines on the calling thread's own connection."""

from __future__ import annotations

import uuid

import pytest
import redis
from redis.exceptions import ResponseError

from app.hotstore.commands import ThreadCommands


@pytest.fixture
def client(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url)


def test_a_pipeline_runs_every_command_and_gives_the_replies_in_order(client: redis.Redis) -> None:
    key = f"t:pipe:{uuid.uuid4()}"
    commands = ThreadCommands(client)

    replies = commands.pipeline(("RPUSH", key, "a"), ("RPUSH", key, "b"), ("LLEN", key))

    assert replies == [1, 2, 2]
    assert client.lrange(key, 0, -1) == [b"a", b"b"]


def test_an_error_reply_takes_its_place_and_the_connection_stays_in_step(
    client: redis.Redis,
) -> None:
    text, listed = f"t:pipe:{uuid.uuid4()}", f"t:pipe:{uuid.uuid4()}"
    client.set(text, "a string")
    commands = ThreadCommands(client)

    replies = commands.pipeline(("ZREM", text, "m"), ("RPUSH", listed, "x"))

    assert isinstance(replies[0], ResponseError) and "WRONGTYPE" in str(replies[0])
    assert replies[1] == 1
    # The next command reads its own reply, not a leftover of the pipeline.
    assert commands("LLEN", listed) == 1
    assert commands.pipeline(("GET", text)) == [b"a string"]
