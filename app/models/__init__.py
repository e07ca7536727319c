"""Core table models. Every table module is imported here so Alembic sees it.

Extension tables live in `app/custom/<name>/models.py` and are found by
`app.custom.import_models()`.
"""

from app.models.ai import AIGeneration as AIGeneration
from app.models.api_key import ApiKey as ApiKey
from app.models.auth import AuthSession as AuthSession
from app.models.auth import RefreshToken as RefreshToken
from app.models.base import CoreModel, utcnow
from app.models.config import ConfigAudit, ConfigGeneration, ConfigObject
from app.models.jobs import AIJob as AIJob
from app.models.jobs import DeadLetter as DeadLetter
from app.models.jobs import IdempotencyKey as IdempotencyKey
from app.models.user import User as User

__all__ = ["ConfigAudit", "ConfigGeneration", "ConfigObject", "CoreModel", "utcnow"]
