"""Brute-force protection for login and register: fixed-window counters in Redis.

Login counts every attempt *before* the password is checked, with one atomic script
call per attempt (`admit`): parallel guesses cannot all pass a check made before any
of them was counted, so a limit of L admits at most L password verifications. A
refused attempt is counted nowhere. Three counters (OWASP Authentication Cheat Sheet,
"Account lockout" and "Protect against automated attacks"):

* per (account, IP): the strict one, it slows a guesser on one account from one place;
* per account, all IPs: higher and shorter, against guessing from many IPs; since a
  refused attempt counts nowhere, one IP adds at most its pair limit to it, so locking
  the real owner out takes many IPs and lasts one short window;
* per IP, all accounts: against spraying one password over many accounts.

A successful login refunds its own attempt and clears its (account, IP) pair. Accounts
are keyed by the SHA-256 of the normalised email (no addresses in Redis). A blocked
attempt answers 429 with `Retry-After`, whether or not the account exists. A fixed
window is enough here: the limits are small and a 2x burst at a window edge still
leaves an online guesser hopeless. Register counts first too (`hit`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Final, cast

from redis import Redis

from app.core.errors import RateLimited

PREFIX: Final = "sapi:auth:throttle:"

# KEYS: counters; ARGV: limit and window of each, in turn. Answers 0 when the attempt is
# admitted (and counted on every counter), else the seconds until the fullest counter
# that refused it resets (nothing counted).
ADMIT_LUA: Final = """
local wait = 0
for i = 1, #KEYS do
  if tonumber(redis.call('GET', KEYS[i]) or '0') >= tonumber(ARGV[2 * i - 1]) then
    local ttl = redis.call('TTL', KEYS[i])
    if ttl < 1 then
      ttl = tonumber(ARGV[2 * i])
      redis.call('EXPIRE', KEYS[i], ttl)
    end
    if ttl > wait then wait = ttl end
  end
end
if wait > 0 then return wait end
for i = 1, #KEYS do
  if redis.call('INCR', KEYS[i]) == 1 then redis.call('EXPIRE', KEYS[i], ARGV[2 * i]) end
end
return 0
"""
# KEYS: ARGV[1] counters to refund one attempt on (never below 0, never recreated once
# expired), then counters to delete.
SUCCEEDED_LUA: Final = """
local refund = tonumber(ARGV[1])
for i = 1, #KEYS do
  if i <= refund then
    local n = tonumber(redis.call('GET', KEYS[i]) or '0')
    if n > 0 then redis.call('DECR', KEYS[i]) end
  else
    redis.call('DEL', KEYS[i])
  end
end
return 0
"""


@dataclass(frozen=True, slots=True)
class Counter:
    """One counter: its Redis key, limit and window."""

    key: str
    limit: int
    window: int


def account_key(action: str, email: str) -> str:
    """Counter key for one account (email hashed: no PII in Redis key names)."""
    return f"{PREFIX}{action}:acct:{hashlib.sha256(email.encode()).hexdigest()}"


def pair_key(action: str, email: str, ip: str) -> str:
    """Counter key for one account from one client IP bucket."""
    digest = hashlib.sha256(email.encode()).hexdigest()
    return f"{PREFIX}{action}:pair:{digest}:{ip}"


def ip_key(action: str, ip: str) -> str:
    """Counter key for one client IP bucket (`app.core.client_ip.bucket`: IPv6 per network)."""
    return f"{PREFIX}{action}:ip:{ip}"


def _too_many(wait: int) -> RateLimited:
    return RateLimited(
        "Too many attempts; retry later.", retry_after=wait, details={"retry_after": wait}
    )


def admit(redis: Redis, counters: list[Counter]) -> None:
    """Count one attempt on every counter, or raise `RateLimited` counting nothing.

    Check and count are one script call: call it before the expensive check it guards.
    """
    args: list[int] = []
    for c in counters:
        args += [c.limit, c.window]
    raw = redis.eval(ADMIT_LUA, len(counters), *[c.key for c in counters], *args)
    wait = int(cast(int, raw))
    if wait > 0:
        raise _too_many(wait)


def succeeded(redis: Redis, *, refund: list[Counter], clear: list[Counter]) -> None:
    """After an admitted attempt succeeded: refund it on `refund`, reset `clear`."""
    keys = [c.key for c in refund] + [c.key for c in clear]
    redis.eval(SUCCEEDED_LUA, len(keys), *keys, len(refund))


def hit(redis: Redis, counters: list[Counter]) -> None:
    """Count one attempt, or raise `RateLimited` once a limit is reached (register)."""
    admit(redis, counters)
