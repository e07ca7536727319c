"""WSGI entry point for gunicorn: `gunicorn -c app/gunicorn_conf.py app.wsgi:application`."""

from app.factory import create_app

application = create_app()
