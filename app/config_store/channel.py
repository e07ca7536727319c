"""The Redis pub/sub channel announcing a new config generation.

The message is only a hint ("generation N exists"): PostgreSQL stays the source of
truth, and a process that missed a message catches up by polling the generation row.
"""

from __future__ import annotations

import logging
from typing import Final

import redis
from redis.exceptions import RedisError

CHANNEL: Final = "sapi:config:generation"

log = logging.getLogger("structured_api.config")


def announce(client: redis.Redis, generation: int) -> bool:
    """Publish `generation`; False (logged, never raised) when Redis is unreachable."""
    try:
        client.publish(CHANNEL, str(generation))
    except RedisError as exc:
        # Polling picks the change up within CONFIG_POLL_INTERVAL; a write must not fail.
        log.warning("config announce failed: %s", type(exc).__name__)
        return False
    return True


def parse(payload: object) -> int | None:
    """The generation in a pub/sub message payload, or None if it is not one."""
    if isinstance(payload, bytes):
        payload = payload.decode("ascii", "replace")
    if isinstance(payload, str) and payload.isdigit():
        return int(payload)
    return None
