"""Per-request cost of access-token and API-key verification against an unauthenticated
request, in the same run, with the project's full app and pipeline.

    uv run python bench/auth_cost.py                      # 3 passes x 2000 requests
    uv run python bench/auth_cost.py --requests 500 --passes 1 --json out.json
    uv run python bench/auth_cost.py --no-limiter       # rate-limit stage off

Driven in-process through the WSGI interface by Flask's test client, on two tiny routes
that touch nothing else: `/bench/public` (no decorator) and `/bench/protected`
(`require_auth(scopes=["profile:read"])`). Scenarios:

    anonymous            no credential, public route (the baseline)
    anonymous+redis      no credential, a public route doing one Redis GET: the price of
                         the one round trip every authenticated request makes
    jwt-identify-only    Bearer JWT on the public route: identify() alone
    jwt                  Bearer JWT on the protected route: identify + authorize
    jwt-first-sight      same with a token this process has not verified yet (the key
                         ring caches verified tokens, so `jwt` mostly skips parsing)
    api-key              X-API-Key on the protected route, resolved from the Redis cache
    api-key-cold         same, cache entry deleted before each request: the PostgreSQL path
    rejected-jwt         a forged JWT on the protected route (401 envelope)
    fje-public/fje-jwt   bare Flask + Flask-JWT-Extended (HS256, no denylist), for scale

By default the rate-limit stage runs as in production (a default limit too high to
reject anything), so every request pays its one Redis call and a JWT's revocation keys
ride along in it; `--no-limiter` turns the stage off to show auth's own round trip.
Scenarios are interleaved pass by pass (the machine is shared) and every request is
timed on its own, in wall-clock and in CPU time; the table gives medians (and the
wall p99) in microseconds and the deltas against `anonymous`. Below it, the pieces
alone: signature + claims check, the revocation MGET, the API-key cache script.
PostgreSQL and Redis come from the wheels (scripts/devstack) unless DATABASE_URL /
REDIS_URL are set. Not a test: docs/auth.md records a run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]

from bench.observability_cost import services  # noqa: E402

PUBLIC = "/bench/public"
PROTECTED = "/bench/protected"
REDIS_ROUTE = "/bench/redis"


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def build(
    urls: dict[str, str], *, limiter: bool = True
) -> tuple[dict[str, Callable[[], int]], dict[str, Callable[[], Any]]]:
    """The app, a user with a token and a key, and one callable per scenario."""
    os.environ.update(urls)
    from flask import Flask
    from flask_jwt_extended import JWTManager, create_access_token, jwt_required

    from app.auth import api_keys as key_service
    from app.auth import sessions as auth_service
    from app.auth import users as user_service
    from app.auth.apikey_cache import CACHE_PREFIX
    from app.auth.decorators import require_auth
    from app.auth.opaque import digest
    from app.auth.revocation import check_access_token
    from app.auth.state import auth_state
    from app.auth.tokens import issue_access_token, verify_access_token
    from app.core.db import session_scope
    from app.core.responses import ok
    from app.factory import create_app
    from app.settings import Settings

    overrides: dict[str, Any] = {"app_env": "test", "log_level": "WARNING"}
    if "rate_limit_default_enabled" in Settings.model_fields:
        overrides["rate_limit_default_enabled"] = limiter
        overrides["rate_limit_default_requests"] = 10_000_000  # never rejects
    settings = Settings(**overrides)
    app: Flask = create_app(settings)

    @require_auth(scopes=["profile:read"])
    def protected() -> Any:
        return ok({"ok": True})

    app.add_url_rule(PUBLIC, "bench_public", lambda: ok({"ok": True}))
    app.add_url_rule(PROTECTED, "bench_protected", protected)

    def one_redis_get() -> Any:
        auth_state().redis.get("sapi:bench:nothing")
        return ok({"ok": True})

    app.add_url_rule(REDIS_ROUTE, "bench_redis", one_redis_get)

    with app.app_context():
        state = auth_state()
        with session_scope() as session:
            user = user_service.create_user(
                session=session,
                auth=state,
                email=f"bench-{time.time_ns()}@example.com",
                password="bench-" + os.urandom(12).hex(),
            )
            tokens = auth_service.start_session(
                session=session, auth=state, user=user, ip="127.0.0.1", user_agent="bench"
            )
            _, key = key_service.create_api_key(
                session=session, auth=state, user_id=user.id, name="bench", scopes=["profile:read"]
            )
    cache_key = CACHE_PREFIX + digest(key)
    redis = state.redis
    client = app.test_client()
    jwt_h = {"Authorization": f"Bearer {tokens.access_token}"}
    forged = tokens.access_token[:-4] + (
        "AAAA" if not tokens.access_token.endswith("AAAA") else "BBBB"
    )

    def cold() -> int:
        redis.delete(cache_key)
        return 0

    fresh_h: dict[str, str] = {}

    def forget_verified() -> None:
        # The key ring caches verified tokens (tokens.verify_access_token): a token the
        # process has not seen yet pays parsing and the signature check.
        getattr(state.keyring, "verified", {}).clear()

    def mint() -> None:
        token, _ = issue_access_token(
            keyring=state.keyring,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            ttl=settings.access_token_ttl,
            subject=str(user.id),
            roles=user.roles,
            session_id=str(tokens.session_id),
        )
        fresh_h["Authorization"] = f"Bearer {token}"

    bare = Flask("fje")
    bare.config["JWT_SECRET_KEY"] = os.urandom(32).hex()
    JWTManager(bare)
    bare.add_url_rule("/public", "public", lambda: {"ok": True})
    bare.add_url_rule("/protected", "protected", jwt_required()(lambda: {"ok": True}))
    with bare.app_context():
        fje_token = create_access_token(identity="bench")
    bare_client = bare.test_client()

    scenarios: dict[str, Callable[[], int]] = {
        "anonymous": lambda: client.get(PUBLIC).status_code,
        "anonymous+redis": lambda: client.get(REDIS_ROUTE).status_code,
        "jwt-identify-only": lambda: client.get(PUBLIC, headers=jwt_h).status_code,
        "jwt": lambda: client.get(PROTECTED, headers=jwt_h).status_code,
        "jwt-first-sight": lambda: client.get(PROTECTED, headers=fresh_h).status_code,
        "api-key": lambda: client.get(PROTECTED, headers={"X-API-Key": key}).status_code,
        "api-key-cold": lambda: client.get(PROTECTED, headers={"X-API-Key": key}).status_code,
        "rejected-jwt": lambda: (
            client.get(PROTECTED, headers={"Authorization": f"Bearer {forged}"}).status_code
        ),
        "fje-public": lambda: bare_client.get("/public").status_code,
        "fje-jwt": lambda: (
            bare_client.get(
                "/protected", headers={"Authorization": f"Bearer {fje_token}"}
            ).status_code
        ),
    }
    scenarios["api-key-cold"].before = cold  # type: ignore[attr-defined]
    scenarios["jwt-first-sight"].before = mint  # type: ignore[attr-defined]
    s = settings
    claims = verify_access_token(
        tokens.access_token,
        keyring=state.keyring,
        issuer=s.jwt_issuer,
        audience=s.jwt_audience,
        leeway=s.jwt_leeway_seconds,
    )

    def verify() -> Any:
        return verify_access_token(
            tokens.access_token,
            keyring=state.keyring,
            issuer=s.jwt_issuer,
            audience=s.jwt_audience,
            leeway=s.jwt_leeway_seconds,
        )

    def verify_first_sight() -> Any:
        return verify()

    verify_first_sight.before = forget_verified  # type: ignore[attr-defined]
    pieces: dict[str, Callable[[], Any]] = {
        "verify_access_token, first sight": verify_first_sight,
        "verify_access_token, seen before": verify,
        "revocation check (1 Redis MGET)": lambda: check_access_token(redis, claims),
        "API-key cache lookup (1 Lua call)": lambda: state.api_keys.lookup(digest(key)),
    }
    expected = {"rejected-jwt": 401}
    for name, call in scenarios.items():
        before = getattr(call, "before", None)
        if before:
            before()
        status = call()
        assert status == expected.get(name, 200), (name, status)
    return scenarios, pieces


def measure(call: Callable[[], Any], requests: int) -> tuple[list[float], list[float]]:
    """Wall-clock and CPU microseconds per call, each call timed alone.

    CPU time (this thread's, CLOCK_THREAD_CPUTIME_ID) excludes waiting for Redis or
    PostgreSQL and time spent descheduled, so it stays meaningful on a loaded machine.
    """
    before = getattr(call, "before", None)
    wall, cpu = [], []
    for _ in range(requests):
        if before:
            before()
        started, started_cpu = time.perf_counter(), time.thread_time()
        call()
        cpu.append((time.thread_time() - started_cpu) * 1e6)
        wall.append((time.perf_counter() - started) * 1e6)
    return wall, cpu


def main(argv: Sequence[str] | None = None) -> int:
    """Run every scenario interleaved and print the table."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per scenario/pass")
    parser.add_argument("--passes", type=int, default=3, help="interleaved passes")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--no-limiter", action="store_true", help="rate-limit stage off")
    args = parser.parse_args(argv)

    with services() as urls:
        scenarios, pieces = build(urls, limiter=not args.no_limiter)
        for call in scenarios.values():  # warm up: imports, first-request paths, caches
            measure(call, min(200, args.requests))
        wall: dict[str, list[float]] = {name: [] for name in scenarios}
        cpu: dict[str, list[float]] = {name: [] for name in scenarios}
        for _ in range(args.passes):
            for name, call in scenarios.items():
                w, c = measure(call, args.requests)
                wall[name] += w
                cpu[name] += c
        piece_samples = {name: measure(fn, args.requests) for name, fn in pieces.items()}

    rows = []
    for name in scenarios:
        ref = "fje-public" if name.startswith("fje") else "anonymous"
        median, ref_median = statistics.median(wall[name]), statistics.median(wall[ref])
        cpu_median, ref_cpu = statistics.median(cpu[name]), statistics.median(cpu[ref])
        rows.append(
            {
                "scenario": name,
                "median_us": round(median, 1),
                "p99_us": round(_percentile(wall[name], 0.99), 1),
                "delta_us": round(median - ref_median, 1),
                "cpu_us": round(cpu_median, 1),
                "cpu_delta_us": round(cpu_median - ref_cpu, 1),
            }
        )
    piece_rows = [
        {
            "piece": name,
            "median_us": round(statistics.median(w), 1),
            "cpu_us": round(statistics.median(c), 1),
        }
        for name, (w, c) in piece_samples.items()
    ]
    total = args.requests * args.passes
    stage = "off" if args.no_limiter else "on"
    print(f"\nauth cost: {total} requests per scenario, {args.passes} interleaved passes, ", end="")
    print(f"rate-limit stage {stage}\n")
    head = ("scenario", "wall us", "p99 us", "wall delta", "cpu us", "cpu delta")
    print(f"{head[0]:<20}" + "".join(f"{h:>11}" for h in head[1:]))
    for r in rows:
        print(
            f"{r['scenario']:<20}{r['median_us']:>11}{r['p99_us']:>11}{r['delta_us']:>+11}"
            f"{r['cpu_us']:>11}{r['cpu_delta_us']:>+11}"
        )
    print("\n(medians; deltas against anonymous, fje-* rows against fje-public)\n")
    print(f"{'piece alone':<40}{'wall us':>11}{'cpu us':>11}")
    for p in piece_rows:
        print(f"{p['piece']:<40}{p['median_us']:>11}{p['cpu_us']:>11}")
    if args.json:
        args.json.write_text(json.dumps({"scenarios": rows, "pieces": piece_rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
