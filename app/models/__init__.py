"""Core table models. Every table module is imported here so Alembic sees it.

Extension tables live in `app/custom/<name>/models.py` and are found by
`app.custom.import_models()`.
"""

from app.models.base import CoreModel, utcnow

__all__ = ["CoreModel", "utcnow"]
