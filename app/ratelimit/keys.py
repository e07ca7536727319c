"""Who shares a budget: the key grammar `user|apiKey|ip|role|global|header:<name>`.

* `user`: the account (a user, or the user owning an API key); anonymous callers fall
  back to their IP, so an unauthenticated flood cannot share one bucket with nobody.
* `apiKey`: the API key; callers without one fall back to `user`, then IP.
* `ip`: the client address as seen after the trusted proxies (`TRUSTED_PROXIES`); IPv6
  clients by their `/RATELIMIT_IPV6_PREFIX` network (`app.core.client_ip.bucket`).
* `role`: everyone holding the role the rule matched on (first of the rule's roles the
  caller holds, else the caller's first role, else `anonymous`).
* `global`: one bucket for every caller.
* `header:<name>`: the header's value (hashed: values are client-controlled and may be
  long or secret); requests without the header fall back to their IP.
"""

from __future__ import annotations

import hashlib
import time
from typing import Final, Protocol

from app.auth.caller import Caller
from app.hotstore.slots import tag
from app.ratelimit.model import ANONYMOUS_ROLE, CompiledLimit, CompiledRule

#: Prefix of every rate-limit key (`sapi:rl:{<subject>}:<policy>:<rule>:<limit>`). The
#: subject is the key's hash tag: on a Redis Cluster one caller's limits and revocation
#: keys (`{u:<id>}`, app/auth/revocation.py) share a slot, so its script call is one
#: EVALSHA on one node (app/hotstore/slots.py, app/ratelimit/slots.py).
KEY_PREFIX: Final = "sapi:rl:"
#: Shadow policies count would-be rejections per minute under this prefix
#: (`sapi:rl-shadow:{<policy>}:<minute>`).
SHADOW_PREFIX: Final = "sapi:rl-shadow:"
#: Shadow counters outlive the hour `shadowRejectsLastHour` reports, with margin.
SHADOW_TTL_SECONDS: Final = 3900
_MAX_HEADER_BYTES: Final = 1024


class HeaderLookup(Protocol):
    """Anything with a case-insensitive `get` (werkzeug `Headers`, a plain dict in jobs)."""

    def get(self, key: str, /) -> str | None:
        """The header's value, or None."""


def _hashed(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8", "replace")).hexdigest()[:24]


def subject(
    rule: CompiledRule,
    *,
    caller: Caller,
    ip: str,
    roles: frozenset[str],
    headers: HeaderLookup,
) -> str:
    """The bucket a request falls into for `rule`."""
    kind = rule.key_kind
    if kind == "apiKey" and caller.key_id:
        return "k:" + caller.key_id
    if kind in ("user", "apiKey") and caller.is_authenticated and caller.subject:
        return "u:" + caller.subject
    if kind == "global":
        return "g"
    if kind == "role":
        held = sorted(rule.roles & roles) if rule.roles else sorted(caller.roles)
        return "r:" + (held[0] if held else ANONYMOUS_ROLE)
    if kind == "header" and rule.header_name:
        value = headers.get(rule.header_name)
        if value:
            return "h:" + _hashed(value[:_MAX_HEADER_BYTES])
    return "ip:" + ip


def limit_key(rule: CompiledRule, limit: CompiledLimit, who: str) -> str:
    """The Redis key holding one limit's TAT for one subject."""
    return f"{KEY_PREFIX}{tag(who)}:{rule.policy}:{rule.name}:{limit.key_part}"


def shadow_key(policy: str, *, minute: int | None = None) -> str:
    """The per-minute counter of a shadow policy's would-be rejections."""
    if minute is None:
        minute = int(time.time() // 60)
    return f"{SHADOW_PREFIX}{tag(policy)}:{minute}"
