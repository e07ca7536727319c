"""Bare Flask plus the one Redis call the pipeline requires per request: the floor of our row.

The same GET as bare_flask.py, and before it the rate limiter's real GCRA script
(app/ratelimit/gcra.lua) for one limit of one key, sent the way our limiter sends it
(`ThreadCommands`: a connection the calling thread owns, no pool checkout). No JWT,
metrics, logs, headers or envelope. bench/run.py serves it under the same gunicorn as
every other row: the distance from bare Flask to this row is what one round trip costs by
itself; the distance from here to ours is the rest of our pipeline. REDIS_URL as usual.
"""

import os

import redis
from flask import Flask, jsonify

from app.hotstore.commands import ThreadCommands
from app.ratelimit.store import SCRIPT

application = Flask(__name__)
_client = redis.Redis.from_url(os.environ["REDIS_URL"], socket_timeout=0.2)
_command = ThreadCommands(_client)
_SHA = _client.script_load(SCRIPT)
# 1 limit, no shadow counter, no gate; 1,000,000 requests a second, consumed.
_ARGS = ("EVALSHA", _SHA, 1, "bench:floor:{global}", 1, 3900, 0, 0.001, 1000.0, 1, 0, 1)


@application.before_request
def limit():  # type: ignore[no-untyped-def]
    """One script call, its reply read (and, like a limiter, looked at)."""
    _, rows = _command(*_ARGS)
    if not rows[0][0]:
        return jsonify(error="rate limited"), 429
    return None


@application.get("/ping")
def ping():  # type: ignore[no-untyped-def]
    """A JSON answer, as small as the others'."""
    return jsonify(pong=True)
