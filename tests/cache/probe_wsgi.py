"""WSGI app for the cross-process cache tests: the real app plus the cache probe routes."""

from app.factory import create_app
from tests.cache.conftest import probe_blueprint

application = create_app()
application.register_blueprint(probe_blueprint(1))
