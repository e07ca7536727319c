"""PostgreSQL below Flask: the engine, its pool and the deadlines of every wait.

Flask-free and below `app.core` in the layers (pyproject.toml), so the operator and
Celery build the same engine; the Flask side, sessions per request, is app/core/db.py.
"""
