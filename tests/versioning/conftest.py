"""Declare an `ApiVersion` in the test's transaction; callers with roles, tokens, API keys."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from sqlmodel import Session

from app.auth import api_keys
from app.auth import sessions as auth_service
from app.auth.models.user import User
from app.auth.state import auth_state
from app.config_store import service
from app.config_store.extension import config_store
from app.config_store.snapshot import Snapshot

Declare = Callable[..., Snapshot]


@pytest.fixture
def declare(app: Flask, session: Session) -> Declare:
    """`declare(name, **spec)`: upsert an ApiVersion and refresh the app's snapshot."""

    def factory(name: str, **spec: Any) -> Snapshot:
        service.upsert_config(
            session=session,
            kind="ApiVersion",
            name=name,
            spec=spec,
            source=service.Source.admin(),
            actor="test",
        )
        return config_store(app).refresh(session.connection())

    return factory


Headers = Callable[..., dict[str, str]]


@pytest.fixture
def bearer_for(session: Session) -> Headers:
    """`bearer_for(*roles)`: an Authorization header of a new user with `roles`."""

    def factory(*roles: str) -> dict[str, str]:
        user = User(
            email=f"v-{secrets.token_hex(6)}@example.com", password_hash="x", roles=list(roles)
        )
        session.add(user)
        session.commit()
        tokens = auth_service.start_session(
            session=session, auth=auth_state(), user=user, ip="127.0.0.1", user_agent="pytest"
        )
        return {"Authorization": f"Bearer {tokens.access_token}"}

    return factory


@pytest.fixture
def api_key_for(session: Session) -> Headers:
    """`api_key_for(*scopes, roles=("user",))`: an X-API-Key header holding `scopes`."""

    def factory(*scopes: str, roles: tuple[str, ...] = ("user",)) -> dict[str, str]:
        user = User(
            email=f"k-{secrets.token_hex(6)}@example.com", password_hash="x", roles=list(roles)
        )
        session.add(user)
        session.commit()
        _, key = api_keys.create_api_key(
            session=session, auth=auth_state(), user_id=user.id, name="v", scopes=list(scopes)
        )
        return {"X-API-Key": key}

    return factory
