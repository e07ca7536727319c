"""Every Prometheus metric the platform exports, defined once so names never drift.

Subsystems import the objects from here (`from app.core.observability import metrics`)
instead of declaring their own, so the chart's alerts and dashboard can be checked
against one list (tests/chart/test_rules.py). Conventions (prometheus.io/docs/practices/
naming): `sapi_` prefix, base units (`_seconds`, `_usd`), `_total` on counters, and
only bounded labels: route *templates*, policy/provider/model/task names that come from
configuration, and small fixed vocabularies for outcomes. Never a raw path, user id,
key or request id.

Every metric carries at least one label. A labelled metric writes nothing until its
first `.labels(...)` call, so importing this module creates no files in
`PROMETHEUS_MULTIPROC_DIR`; the dir can be wiped after import (Celery's `worker_init`).
Gauges name their `multiprocess_mode` explicitly (prometheus/client_python docs,
"Multiprocess Mode"): `live*` modes drop the series of dead processes.
"""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter, Gauge, Histogram

#: Label values that close a vocabulary; subsystems pass these, not free text.
UNMATCHED_ROUTE: Final = "<unmatched>"
NO_VERSION: Final = "none"

# Latency buckets: sub-millisecond cached hits to the 60 s gunicorn timeout.
HTTP_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# AI calls are slower: seconds to minutes (provider timeout is at most 600 s).
AI_BUCKETS: Final = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)
TASK_BUCKETS: Final = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0)
FAST_BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5)

# --- HTTP (recorded by app/core/observability/__init__.py) -------------------------------

HTTP_REQUESTS: Final = Counter(
    "sapi_http_requests_total",
    "HTTP requests answered, by route template, method, status code and API version.",
    ["route", "method", "status", "api_version"],
)
HTTP_DURATION: Final = Histogram(
    "sapi_http_request_duration_seconds",
    "Time from the first before_request hook to the response, by route template.",
    # status_class (2xx..5xx) instead of the code keeps buckets x labels bounded.
    ["route", "method", "status_class", "api_version"],
    buckets=HTTP_BUCKETS,
)
HTTP_IN_PROGRESS: Final = Gauge(
    "sapi_http_requests_in_progress",
    "Requests being served right now, by HTTP method.",
    ["method"],
    multiprocess_mode="livesum",
)
WARNINGS: Final = Counter(
    "sapi_warnings_total",
    "Warnings added to response envelopes, by warning code and level.",
    ["code", "level"],
)

# --- Rate limiting (app/ratelimit) ---------------------------------------------------

#: outcome: allowed | rejected | shadow_rejected | fail_open | fail_closed | exempt
RATELIMIT_DECISIONS: Final = Counter(
    "sapi_ratelimit_decisions_total",
    "Rate-limit decisions by policy, rule and outcome (shadow and fail-open included).",
    ["policy", "rule", "outcome"],
)
RATELIMIT_CHECK_DURATION: Final = Histogram(
    "sapi_ratelimit_check_duration_seconds",
    "Time of one rate-limit check (the Redis script round trip), by outcome.",
    ["outcome"],
    buckets=FAST_BUCKETS,
)

# --- Response cache (app/cache) ------------------------------------------------------

#: result: hit | miss | not_modified | bypass | error
CACHE_REQUESTS: Final = Counter(
    "sapi_cache_requests_total",
    "Response-cache lookups by cache name and result.",
    ["cache", "result"],
)
CACHE_INVALIDATIONS: Final = Counter(
    "sapi_cache_invalidations_total",
    "Cache entries (or namespaces) invalidated by writes, by cache name.",
    ["cache"],
)

# --- Runtime config snapshot (app/config_store) --------------------------------------

CONFIG_GENERATION: Final = Gauge(
    "sapi_config_generation",
    "Generation of the config snapshot this process serves (one series per live process).",
    # role: api | worker | operator; the pid label is added by multiprocess mode.
    ["role"],
    multiprocess_mode="liveall",
)
#: outcome: ok | error ; trigger: pubsub | poll | startup
CONFIG_RELOADS: Final = Counter(
    "sapi_config_reloads_total",
    "Config snapshot reloads by trigger and outcome.",
    ["trigger", "outcome"],
)

# --- AI gateway (app/ai) --------------------------------------------------------------

#: outcome: success | error | timeout | rate_limited | budget_exceeded | breaker_open
AI_REQUESTS: Final = Counter(
    "sapi_ai_requests_total",
    "Calls to AI providers by provider, model and outcome.",
    ["provider", "model", "outcome"],
)
#: kind: input | output
AI_TOKENS: Final = Counter(
    "sapi_ai_tokens_total",
    "Tokens consumed by provider, model and kind.",
    ["provider", "model", "kind"],
)
AI_COST: Final = Counter(
    "sapi_ai_cost_usd_total",
    "Spend in US dollars by provider and model (from the AIProvider prices).",
    ["provider", "model"],
)
AI_DURATION: Final = Histogram(
    "sapi_ai_request_duration_seconds",
    "Duration of one provider call (to the last token when streaming).",
    ["provider", "model"],
    buckets=AI_BUCKETS,
)
AI_TTFT: Final = Histogram(
    "sapi_ai_time_to_first_token_seconds",
    "Time to the first streamed token by provider and model.",
    ["provider", "model"],
    buckets=AI_BUCKETS,
)
#: reason: error | timeout | rate_limited | breaker_open
AI_FALLBACKS: Final = Counter(
    "sapi_ai_fallbacks_total",
    "Requests moved from one provider to the next, by both providers and the reason.",
    ["from_provider", "to_provider", "reason"],
)
#: 0 closed, 1 half-open, 2 open (the worst state any live process sees).
AI_BREAKER_STATE: Final = Gauge(
    "sapi_ai_circuit_breaker_state",
    "Circuit breaker state per provider: 0 closed, 1 half-open, 2 open.",
    ["provider"],
    multiprocess_mode="livemax",
)
AI_TOKENS_ESTIMATED: Final = Counter(
    "sapi_ai_tokens_estimated_total",
    "Tokens counted by estimate because the provider reported no usage (subset of "
    "sapi_ai_tokens_total).",
    ["provider", "model"],
)
#: side: client (the caller went away) | provider (the provider failed mid-stream)
AI_STREAM_ENDS: Final = Counter(
    "sapi_ai_stream_interruptions_total",
    "Streams that ended before the provider finished, by the side that ended them "
    "(provider, client, or deadline: AI_STREAM_MAX_SECONDS).",
    ["side"],
)
#: outcome: succeeded | failed | cancelled | dead
AI_JOBS: Final = Counter(
    "sapi_ai_jobs_total",
    "Background AI jobs finished, by outcome.",
    ["outcome"],
)
BREAKER_CLOSED: Final = 0
BREAKER_HALF_OPEN: Final = 1
BREAKER_OPEN: Final = 2

# --- Celery (app/core/observability/celery.py records outcomes via signals) ---------------

#: outcome: success | failure | retry | revoked | rejected
CELERY_TASKS: Final = Counter(
    "sapi_celery_tasks_total",
    "Celery task executions by task name and outcome.",
    ["task", "outcome"],
)
CELERY_TASK_RETRIES: Final = Counter(
    "sapi_celery_task_retries_total",
    "Retries scheduled by task name.",
    ["task"],
)
CELERY_TASK_DURATION: Final = Histogram(
    "sapi_celery_task_duration_seconds",
    "Run time of one task execution by task name.",
    ["task"],
    buckets=TASK_BUCKETS,
)
CELERY_DEAD_LETTERS: Final = Counter(
    "sapi_celery_dead_letters_total",
    "Tasks moved to the dead-letter store after their last retry, by task name.",
    ["task"],
)
#: Exposed by the worker's metrics server at scrape time (LLEN on the broker queues).
CELERY_QUEUE_LENGTH_NAME: Final = "sapi_celery_queue_length"
#: Exposed by the worker's metrics server at scrape time (the AI history journal in Redis).
AI_HISTORY_BACKLOG_NAME: Final = "sapi_ai_history_backlog"

# --- Operator (sapi_operator) --------------------------------------------------------------

#: kind: ApiVersion | RateLimitPolicy | AIProvider ; outcome: success | temporary_error |
#: permanent_error
OPERATOR_RECONCILES: Final = Counter(
    "sapi_operator_reconciles_total",
    "Reconciliations by resource kind and outcome.",
    ["kind", "outcome"],
)
OPERATOR_RECONCILE_DURATION: Final = Histogram(
    "sapi_operator_reconcile_duration_seconds",
    "Duration of one reconciliation by resource kind.",
    ["kind"],
    buckets=TASK_BUCKETS,
)
OPERATOR_DRIFT_REPAIRS: Final = Counter(
    "sapi_operator_drift_repairs_total",
    "Rows or objects found different from their resource and put back, by kind.",
    ["kind"],
)


def status_class(status: int) -> str:
    """`2xx`-style class of an HTTP status code."""
    return f"{status // 100}xx"


#: Every metric family name the code exports (the queue gauge comes from a collector).
def exported_names() -> frozenset[str]:
    """Names a PromQL query may use: families plus their `_total/_bucket/...` series."""
    names: set[str] = {CELERY_QUEUE_LENGTH_NAME, AI_HISTORY_BACKLOG_NAME}
    for value in globals().values():
        if isinstance(value, Counter):
            names.add(value._name + "_total")
        elif isinstance(value, Histogram):
            base = value._name
            names.update({base + "_bucket", base + "_sum", base + "_count"})
        elif isinstance(value, Gauge):
            names.add(value._name)
    return frozenset(names)
