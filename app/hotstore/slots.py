"""Hash tags: the part of a key a Redis Cluster hashes, so related keys share one slot.

A Cluster runs a script only when all its keys map to one slot (redis.io, "Redis cluster
specification", "Hash tags"): only the text between the first `{` and the next `}` is
hashed. Every key a script reads together carries the same tag (`sapi:rl:{u:42}:...`
beside `sapi:auth:deny:jti:{u:42}:...`). On one Redis the braces are ordinary characters.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from redis.crc import key_slot


def tag(part: str) -> str:
    """`{part}`; a part that holds a brace is hashed first so the tag stays whole."""
    if "{" in part or "}" in part:
        part = "#" + hashlib.sha1(part.encode()).hexdigest()[:16]
    return "{" + part + "}"


def slot(key: str) -> int:
    """The Cluster slot of `key` (CRC16 of its hash tag, mod 16384)."""
    return int(key_slot(key.encode()))


def group_by_slot(keys: Sequence[str]) -> dict[int, list[int]]:
    """Indices of `keys` per slot, in first-seen order."""
    groups: dict[int, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(slot(key), []).append(i)
    return groups


def one_slot(keys: Sequence[str]) -> bool:
    """True when every key maps to the same slot (one script call may hold them all)."""
    return len({slot(k) for k in keys}) <= 1
