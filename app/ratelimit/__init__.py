"""Rate limiting: RateLimitPolicy specs compiled into matchers, one GCRA script per request.

* `compiler.py`, `model.py`, `matching.py` - policies of the config snapshot into rules;
* `service.py` (`RateLimiter`), `store.py` (the Redis script), `keys.py` (key shapes);
* `stage.py` - the pipeline stage and the response headers (`headers.py`);
* `tokens.py` - AI token budgets, reserve then settle; `report.py` + `views.py` -
  `GET /v1/limits/me`;
* `extension.py` - `init_app` at the factory's `[pipeline:ratelimit]` mark.

See docs/rate-limiting.md. Nothing is imported here: the operator reads `keys.py` without
Flask.
"""
