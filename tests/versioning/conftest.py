"""Declare an `ApiVersion` inside the test's transaction and load it into the snapshot."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from sqlmodel import Session

from app.core.config_store import Snapshot, config_store
from app.services import config as service

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
