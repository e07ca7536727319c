"""WSGI app for tests/auth/test_live_auth_races.py: the real app, its key fill pausable."""

from app.factory import create_app
from tests.auth.pause_fill import install

application = create_app()
install(application)
