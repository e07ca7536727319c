"""Fixtures shared by the database suites of tests/core."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, col, delete

from app.auth.models.user import User


@pytest.fixture
def owner(migrated_engine: Engine) -> Iterator[uuid.UUID]:
    """A committed user owning the test's notes; deleted after the test, its notes with it."""
    user = User(email=f"db-{uuid.uuid4().hex[:12]}@example.com", password_hash="x", roles=["user"])
    with Session(migrated_engine, expire_on_commit=False) as session:
        session.add(user)
        session.commit()
    yield user.id
    with Session(migrated_engine) as session:
        session.exec(delete(User).where(col(User.id) == user.id))  # notes: ON DELETE CASCADE
        session.commit()
