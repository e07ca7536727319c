"""The limiter: current compiled policies + the store; one decision per request."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from flask import Flask

from app.auth.caller import Caller, effective_roles
from app.core.observability import metrics
from app.core.specs.rate_limit import RateLimitPolicySpec
from app.hotstore.slots import one_slot
from app.ratelimit import keys
from app.ratelimit.compiler import DefaultLimit, compile_policies
from app.ratelimit.headers import LimitState
from app.ratelimit.leases import LeaseBook
from app.ratelimit.matching import Matcher
from app.ratelimit.model import ANONYMOUS_ROLE, CompiledLimit, CompiledRule, Plan
from app.ratelimit.store import LimiterStore, Row, StoreUnavailable

log = logging.getLogger("structured_api.ratelimit")

ENFORCED: Final = 0  # script group of the enforced limits; shadow policies are 1..n
_REQUEST: Final = 1  # write flag: consume when the whole group conforms
_CHECK: Final = 0  # write flag: only look (token budgets at request time, peeks)
CONFIG_STORE: Final = "config_store"  # app.extensions key of app/config_store


class PolicySnapshot(Protocol):
    """What the limiter reads from the config store's snapshot."""

    @property
    def generation(self) -> int:
        """Config generation."""

    @property
    def rate_limit_policies(self) -> Mapping[str, RateLimitPolicySpec]:
        """Validated policies by name."""


@dataclass(frozen=True, slots=True)
class StaticPolicies:
    """A fixed set of policies (no config store: CLI tools, unit tests, benchmarks)."""

    generation: int = 0
    rate_limit_policies: Mapping[str, RateLimitPolicySpec] = field(default_factory=dict)


_EMPTY: Final = StaticPolicies()


def _no_policies() -> PolicySnapshot:
    return _EMPTY


@dataclass(slots=True)
class Decision:
    """The outcome of one check, kept on `g` for the response headers."""

    allowed: bool
    states: list[LimitState]
    policy_header: str
    degraded: bool = False
    rejected: LimitState | None = None
    rejected_rule: CompiledRule | None = None
    gated: bool = False  # a gate key existed: nothing was charged
    gate_values: list[bytes | None] | None = None  # None: Redis unreachable

    @property
    def retry_after(self) -> int:
        """Whole seconds before the request would be admitted (at least 1)."""
        if self.rejected is None:
            return 1
        return max(1, math.ceil(self.rejected.retry_ms / 1000))


def _leasable(plan: Plan) -> bool:
    """Leases only for enforced request limits: no shadow counts, no budget peeks."""
    if plan.shadow or not plan.enforced:
        return False
    return all(not r.token_limits and not r.money_limits for r in plan.enforced)


def caller_roles(caller: Caller) -> frozenset[str]:
    """Roles rules match on: the caller's roles with their hierarchy, or `anonymous`."""
    if not caller.is_authenticated:
        return frozenset({ANONYMOUS_ROLE})
    return effective_roles(caller.roles)


class _Call:
    """Keys and arguments of one script call, with what each row stands for."""

    __slots__ = ("args", "keys", "layout", "shadow_keys")

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.args: list[float | int] = []
        self.layout: list[tuple[CompiledRule, CompiledLimit, int]] = []
        self.shadow_keys: list[str] = []

    def add(
        self,
        rule: CompiledRule,
        limit: CompiledLimit,
        who: str,
        *,
        cost: float,
        group: int,
        write: int,
    ) -> None:
        self.keys.append(keys.limit_key(rule, limit, who))
        self.args.extend((limit.interval_ms, limit.horizon_ms, cost, group, write))
        self.layout.append((rule, limit, group))


class RateLimiter:
    """Compiled policies for the current config generation plus the Redis store."""

    def __init__(
        self,
        *,
        store: LimiterStore,
        default: DefaultLimit | None,
        snapshot: Callable[[], PolicySnapshot] | None = None,
        leases: LeaseBook | None = None,
    ) -> None:
        self.store = store
        self.leases = leases
        self.default = default
        self.snapshot = snapshot
        self._matcher: Matcher | None = None
        self._lock = threading.Lock()
        self._counters: dict[tuple[str, str, str], Any] = {}
        self._timers: dict[str, Any] = {}
        self._extensions: dict[str, Any] | None = None

    # -- policies ----------------------------------------------------------------------

    def bind_config_store(self, app: Flask) -> None:
        """Read policies from `app`'s config store, once the factory has created it."""
        self._extensions = app.extensions

    def _resolve_source(self) -> Callable[[], PolicySnapshot]:
        store = self._extensions.get(CONFIG_STORE) if self._extensions is not None else None
        if store is None:
            return _no_policies
        # Precompile in the watcher thread as soon as a generation is installed, so the
        # first request of a new generation does not pay for compilation.
        store.subscribe(self.install)
        source: Callable[[], PolicySnapshot] = store.current
        return source

    def matcher(self) -> Matcher:
        """Matcher for the current generation; recompiles (once) when it changed."""
        if self.snapshot is None:
            self.snapshot = self._resolve_source()
        snap = self.snapshot()
        current = self._matcher
        if current is not None and current.generation == snap.generation:
            return current
        return self.install(snap)

    def install(self, snap: PolicySnapshot) -> Matcher:
        """Compile `snap`'s policies unless a matcher for that generation exists."""
        with self._lock:
            current = self._matcher
            if current is not None and current.generation == snap.generation:
                return current
            compiled = compile_policies(
                snap.rate_limit_policies, generation=snap.generation, default=self.default
            )
            for name, error in compiled.errors.items():
                log.error("rate-limit policy %s not enforced: %s", name, error)
            self._matcher = Matcher(compiled)
            return self._matcher

    # -- checks ------------------------------------------------------------------------

    def _timer(self, outcome: str) -> Any:
        child = self._timers.get(outcome)
        if child is None:
            child = self._timers[outcome] = metrics.RATELIMIT_CHECK_DURATION.labels(outcome)
        return child

    def _count(self, rule: CompiledRule, outcome: str) -> None:
        key = (rule.policy, rule.name, outcome)
        child = self._counters.get(key)
        if child is None:
            child = self._counters[key] = metrics.RATELIMIT_DECISIONS.labels(*key)
        child.inc()

    def check(
        self,
        plan: Plan,
        *,
        caller: Caller,
        ip: str,
        roles: frozenset[str],
        headers: keys.HeaderLookup,
        gates: Sequence[str] = (),
    ) -> Decision:
        """Check and consume every limit of `plan` in one script call.

        `gates` are read first in the same call: if one exists nothing is charged and the
        decision is `gated` (see app/auth/gates.py).
        """
        call = _Call()
        for rule in plan.enforced:
            who = keys.subject(rule, caller=caller, ip=ip, roles=roles, headers=headers)
            for lim in rule.request_limits:
                call.add(rule, lim, who, cost=1, group=ENFORCED, write=_REQUEST)
            for lim in (*rule.token_limits, *rule.money_limits):  # an exhausted budget
                call.add(rule, lim, who, cost=1, group=ENFORCED, write=_CHECK)  # refuses it
        for group, rules in enumerate(plan.shadow, start=1):
            call.shadow_keys.append(keys.shadow_key(rules[0].policy))
            for rule in rules:
                who = keys.subject(rule, caller=caller, ip=ip, roles=roles, headers=headers)
                for lim in rule.request_limits:
                    call.add(rule, lim, who, cost=1, group=group, write=_REQUEST)
                for lim in (*rule.token_limits, *rule.money_limits):
                    call.add(rule, lim, who, cost=1, group=group, write=_CHECK)
        if not call.keys and not gates:
            for rule in plan.exempted:
                self._count(rule, "exempt")
            return Decision(allowed=True, states=[], policy_header="")
        started = time.perf_counter()
        if self.leases is not None and not gates and _leasable(plan) and self._one_call(call):
            leased = self._leased(plan, call, started)
            if leased is not None:
                return leased
        try:
            rows, gate_values = self.store.evaluate_gated(
                call.keys,
                call.args,
                shadow_keys=call.shadow_keys,
                shadow_ttl=keys.SHADOW_TTL_SECONDS,
                gates=gates,
            )
        except StoreUnavailable:
            return self._degraded(plan, started)
        if rows is None:
            return Decision(
                allowed=True, states=[], policy_header="", gated=True, gate_values=gate_values
            )
        for rule in plan.exempted:
            self._count(rule, "exempt")
        decision = self._decide(plan, call, rows, started)
        decision.gate_values = gate_values
        return decision

    def _one_call(self, call: _Call) -> bool:
        """True when lease.lua can take the call's keys at once (one Cluster slot)."""
        return not self.store.hot.cluster or one_slot(call.keys)

    def _leased(self, plan: Plan, call: _Call, started: float) -> Decision | None:
        """The decision from a lease (app/ratelimit/leases.py); None: ask per request."""
        book = self.leases
        assert book is not None
        key = tuple(call.keys)
        lease = book.take(key)
        if lease is None:
            limits = [lim for _, lim, _ in call.layout]
            want = book.want(key, limits)
            if want <= 1:
                return None
            try:
                granted, lease = book.grant(key, call.keys, limits, want)
            except StoreUnavailable:
                return self._degraded(plan, started)
            if granted == 0:
                rows = [(int(not retry), rem, reset, retry) for rem, reset, retry in lease.rows]
                self._count_exempted(plan)
                return self._decide(plan, call, rows, started)
        # "remaining": what Redis had left at the grant plus what this lease still holds.
        states = [
            LimitState(lim, remaining + lease.left, book.reset_ms(lease, reset_ms))
            for (_, lim, _), (remaining, reset_ms, _) in zip(call.layout, lease.rows, strict=True)
        ]
        # No timer: the histogram times round trips; the decision counter counts this one.
        self._count_exempted(plan)
        for rule in plan.enforced:
            self._count(rule, "allowed")
        return Decision(allowed=True, states=states, policy_header=plan.policy_header)

    def _count_exempted(self, plan: Plan) -> None:
        for rule in plan.exempted:
            self._count(rule, "exempt")

    def _degraded(self, plan: Plan, started: float) -> Decision:
        outcome = "fail_closed" if plan.fail_closed else "fail_open"
        self._timer(outcome).observe(time.perf_counter() - started)
        for rule in plan.enforced:
            self._count(rule, outcome)
        return Decision(
            allowed=not plan.fail_closed, states=[], policy_header="", degraded=bool(plan.enforced)
        )

    def _decide(self, plan: Plan, call: _Call, rows: list[Row], started: float) -> Decision:
        states: list[LimitState] = []
        rejected: LimitState | None = None
        rejected_rule: CompiledRule | None = None
        failed_shadow: set[tuple[str, str]] = set()
        for (rule, lim, group), (conforms, remaining, reset_ms, retry_ms) in zip(
            call.layout, rows, strict=True
        ):
            state = LimitState(lim, remaining, reset_ms, retry_ms)
            if group == ENFORCED:
                if lim.unit == "requests":
                    states.append(state)
                if not conforms and (rejected is None or retry_ms > rejected.retry_ms):
                    rejected, rejected_rule = state, rule
            elif not conforms:
                failed_shadow.add((rule.policy, rule.name))
        outcome = "allowed" if rejected is None else "rejected"
        self._timer(outcome).observe(time.perf_counter() - started)
        for rule in plan.enforced:
            if rejected is None:
                self._count(rule, "allowed")
            elif rule is rejected_rule:
                self._count(rule, "rejected")
        for rules in plan.shadow:
            for rule in rules:
                failed = (rule.policy, rule.name) in failed_shadow
                self._count(rule, "shadow_rejected" if failed else "allowed")
        return Decision(
            allowed=rejected is None,
            states=states,
            policy_header=plan.policy_header,
            rejected=rejected,
            rejected_rule=rejected_rule,
        )
