"""Every table of every feature, imported so SQLModel's metadata (and Alembic) sees them.

Features keep their tables in their own package (`app/<feature>/models.py`); extension
tables live in `app/custom/<name>/models.py` and are found by `app.custom.import_models()`.
"""

from app.ai.dead_letters.models import DeadLetter as DeadLetter
from app.ai.jobs.models import AIJob as AIJob
from app.ai.jobs.models import IdempotencyKey as IdempotencyKey
from app.ai.models import AIGeneration as AIGeneration
from app.auth.models.api_key import ApiKey as ApiKey
from app.auth.models.session import AuthSession as AuthSession
from app.auth.models.session import RefreshToken as RefreshToken
from app.auth.models.user import User as User
from app.config_store.models import ConfigAudit as ConfigAudit
from app.config_store.models import ConfigGeneration as ConfigGeneration
from app.config_store.models import ConfigObject as ConfigObject
from app.core.models import CoreModel as CoreModel
