"""A limiter call whose keys span several Redis Cluster slots: consume per slot, refund.

A Cluster runs one script only on keys of one slot. Keys are tagged by the bucket's
subject (`sapi:rl:{u:42}:...`, app/ratelimit/keys.py), so a request whose limits all
share one subject (every rule keyed by the same user, API key or IP), together with its
revocation gates, is one EVALSHA as on a single Redis. A request that also hits a
shared bucket (a `global` or `role` rule, a shadow policy's counter) spans slots; then:

1. gates, if any, are read first (one read per slot): if one exists nothing is charged;
2. gcra.lua runs once per slot on that slot's limits, each group consuming only when
   its limits *in that slot* conform;
3. a group that conformed in one slot but not as a whole gets the permits it took back
   (gcra.lua's settle, cost -1), and shadow counters are counted here.

Never more admissions than GCRA allows; between steps 2 and 3 another request may see
one permit fewer than it should (under-admission by at most the requests refused in that
moment). docs/rate-limiting.md, "On a Redis Cluster".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import cast

from app.hotstore.slots import group_by_slot

Run = Callable[[Sequence[str], Sequence[float | int]], object]
Read = Callable[[Sequence[str]], list[bytes | None]]
Count = Callable[[str, int], None]
_ARGS = 5  # per limit: interval_ms, horizon_ms, cost, group, write
_CONSUME = 1
_SETTLE = 2


def evaluate_split(
    run: Run,
    read: Read,
    count: Count,
    keys: Sequence[str],
    args: Sequence[float | int],
    *,
    shadow_keys: Sequence[str],
    shadow_ttl: int,
    gates: Sequence[str],
) -> tuple[list[list[int]] | None, list[bytes | None]]:
    """gcra.lua's answer for keys over several slots: (rows, gate values) or (None, values)."""
    values: list[bytes | None] = []
    if gates:
        values = [v or None for v in read(gates)]
        if any(v is not None for v in values):
            return None, values
    rows: list[list[int]] = [[] for _ in keys]
    consumed: dict[int, set[int]] = {}  # group -> indices taken in a slot that conformed
    for indices in group_by_slot(keys).values():
        sub_args: list[float | int] = []
        for i in indices:
            sub_args.extend(args[i * _ARGS : (i + 1) * _ARGS])
        raw = run([keys[i] for i in indices], (len(indices), shadow_ttl, 0, *sub_args))
        sub_rows = cast(tuple[list[bytes], list[list[int]]], raw)[1]
        part: dict[int, list[int]] = {}
        for i, row in zip(indices, sub_rows, strict=True):
            rows[i] = [int(x) for x in row]
            part.setdefault(int(args[i * _ARGS + 3]), []).append(i)
        for group, members in part.items():
            if all(rows[i][0] for i in members):
                taken = [i for i in members if int(args[i * _ARGS + 4]) == _CONSUME]
                consumed.setdefault(group, set()).update(taken)
    verdict: dict[int, bool] = {}
    writes: set[int] = set()
    for i in range(len(keys)):
        group, write = int(args[i * _ARGS + 3]), int(args[i * _ARGS + 4])
        verdict[group] = verdict.get(group, True) and bool(rows[i][0])
        if write == _CONSUME:
            writes.add(group)
    refund = [i for g, ok in verdict.items() if not ok for i in sorted(consumed.get(g, ()))]
    for indices in group_by_slot([keys[i] for i in refund]).values():
        back = [refund[j] for j in indices]
        refund_args: list[float | int] = []
        for i in back:
            interval, horizon = args[i * _ARGS], args[i * _ARGS + 1]
            refund_args.extend((interval, horizon, -args[i * _ARGS + 2], 0, _SETTLE))
        run([keys[i] for i in back], (len(back), shadow_ttl, 0, *refund_args))
    for group in sorted(g for g, ok in verdict.items() if g > 0 and not ok and g in writes):
        count(shadow_keys[group - 1], shadow_ttl)
    return rows, values
