"""Structured API: the Flask service and the shared core."""

from app.factory import create_app

__all__ = ["create_app"]
