"""The AI gateway: providers, routing, limits, history, streaming and background jobs.

* the gateway: `gateway.py` (retries, fallback, breakers: `retry.py`, `breaker.py`),
  `registry.py` (providers from the config snapshot), `providers/` (wire formats),
  `transport.py` (the guarded HTTP transport), `errors.py`, `types.py`;
* limits: `tokens.py` (estimates), `provider_limits.py`, `concurrency.py` (per-caller
  slots), `deadline.py` (stream deadline);
* requests: `generate.py` (`POST /v1/ai/generate`), `streaming.py` + `sse.py` (SSE),
  `models.py`, `views.py`, `admin_views.py` + `credentials.py` (provider keys);
* `history/` - redacted records (`records.py`), the Redis journal and its drainer;
* `jobs/` - `POST /v1/ai/jobs`: service, runs, Celery tasks, dead letters;
* `extension.py` (`init_app`), `cli.py` (`flask ai`, `flask dead-letters`).

See docs/ai.md and docs/jobs.md.
"""
