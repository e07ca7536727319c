"""Identity and access: who the caller is, and what they may do.

* `identify.py` - the pipeline stage: a cheap JWT / API-key parse into a `Caller`
  (`caller.py`), no database; revocation is read with the rate limiter's round trip
  (`gates.py`).
* `decorators.py` - `require_auth` / `require_roles` on views; `state.py` the per-app
  `AuthState`; `extension.py` wires it into the app (`init_app`, beat tasks).
* tokens and keys: `tokens.py` (access JWTs), `keys.py` (signing keys, JWKS), `opaque.py`
  (refresh tokens, API keys), `revocation.py` (denylist), `apikey_cache.py`,
  `passwords.py` (argon2id), `throttle.py` (login/register limits).
* models and services: `models/` (users, API keys, sessions and refresh tokens),
  `users.py`, `sessions.py`, `api_keys.py`.
* views: `views.py` (`/v1/auth/*`), `admin_views.py` (`/v1/admin/users`), `wellknown.py`
  (JWKS); `tasks.py` (Celery housekeeping); `cli.py` (`flask users`, `flask api-keys`).

See docs/auth.md. Nothing is imported here: the operator imports `caller.py` without Flask.
"""
