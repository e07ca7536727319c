"""What a config write must satisfy before it is stored: name, spec, provider origin.

Shared by every front door (admin API, operator, CLI) through app/config_store/service.py.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from typing import Any, Final

from pydantic import BaseModel, ValidationError

from app.config_store.models import ConfigObject
from app.core import egress
from app.core.errors import NotFound, ValidationFailed
from app.core.errors.exceptions import pydantic_errors
from app.core.specs import KINDS, AIProviderSpec

_NAME: Final = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def spec_model(kind: str) -> type[BaseModel]:
    """The spec model of `kind`; `NotFound` for a kind the store does not hold."""
    model: type[BaseModel] | None = KINDS.get(kind)  # type: ignore[assignment]
    if model is None:
        raise NotFound(f"No config kind {kind!r}.", details={"kinds": sorted(KINDS)})
    return model


def validate_spec(kind: str, spec: Mapping[str, Any] | BaseModel) -> BaseModel:
    """Validate `spec` as `kind`; 422 with `spec.`-prefixed field paths on failure."""
    model = spec_model(kind)
    raw = spec.model_dump(mode="json") if isinstance(spec, BaseModel) else spec
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        errors, required = pydantic_errors(exc)
        for error in errors:
            error["field"] = "spec" if error["field"] == "__root__" else f"spec.{error['field']}"
        raise ValidationFailed(
            errors=errors, required_fields=[f"spec.{r}" for r in required]
        ) from None


def check_base_url(spec: BaseModel, allowed_http_hosts: Collection[str]) -> None:
    """Refuse an AIProvider `baseURL` the egress policy does not allow (422)."""
    assert isinstance(spec, AIProviderSpec)
    problem = egress.policy_problem(str(spec.baseURL), allowed_http_hosts) if spec.baseURL else None
    if problem is not None:
        raise ValidationFailed(
            errors=[{"field": "spec.baseURL", "message": problem, "type": "url_refused"}]
        )


def origin_changed(row: ConfigObject | None, spec: BaseModel) -> bool:
    """Would this write send the row's stored key to another scheme, host or port?"""
    if row is None or not isinstance(spec, AIProviderSpec):
        return False
    before = row.spec.get("baseURL")
    return egress.origin(str(before) if before else None) != spec.origin()


def check_name(name: str) -> None:
    """Refuse a name that is not an RFC 1123 label, as Kubernetes would (422)."""
    if not (len(name) <= 63 and _NAME.fullmatch(name)):
        raise ValidationFailed(
            errors=[
                {
                    "field": "name",
                    "message": "must be an RFC 1123 label: lowercase letters, digits and "
                    "'-', at most 63 characters, starting and ending alphanumeric",
                    "type": "string_pattern_mismatch",
                }
            ]
        )


def normalised(model: BaseModel) -> dict[str, Any]:
    """The stored JSON of a validated spec (defaults filled, unset optionals left out)."""
    return model.model_dump(mode="json", exclude_none=True)
