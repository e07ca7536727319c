"""Infrastructure every feature uses; imports no feature (a `make lint` contract).

`db.py` + `engine.py` (SQLModel sessions; the engine, Flask-free), `redis.py` +
`redis_client.py`, `errors/` (the code catalogue, exceptions, handlers), `responses.py`
(the envelope), `warnings.py`, `validation.py`, `openapi.py`, `request_context.py`,
`security.py`, `health.py` (readiness), `gates.py` (deferred Redis reads shared by two
stages), `client_ip.py`, `egress.py` (where providers may be called), `crypto.py`,
`models.py` (the base table model), `tasks/` (the Celery extension), `observability/`,
`specs/` (the custom resources' specs, shared with the operator), `flaskapp.py`.
"""
