"""Carry one version's operations into the next: same view functions, new URL prefix.

Used by `app/api/v2/__init__.py`. A carried-over route is registered again with the same
view function (so `@require_auth`, scopes, `@operation` validation and documentation come
with it), the same rule options, and an endpoint name in the new version's namespace
(`v1.auth.login` -> `v2.auth.login`), so `url_for`, metrics and `operationId`s stay
unique per version. See docs/versioning.md.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator
from typing import Any, Final, NamedTuple

from flask import Flask
from flask.sansio.blueprints import BlueprintSetupState
from werkzeug.routing import Rule

_CONVERTER: Final = re.compile(r"<(?:[a-z]+(?:\([^)]*\))?:)?(?P<name>\w+)>")
_IMPLICIT: Final = frozenset({"HEAD", "OPTIONS"})
#: Per-blueprint callbacks Flask keys by blueprint name. A carried route's endpoint moves
#: to another blueprint name, so hooks like these would silently not follow it.
_HOOK_REGISTRIES: Final = (
    "before_request_funcs",
    "after_request_funcs",
    "teardown_request_funcs",
    "url_value_preprocessors",
    "url_default_functions",
    "error_handler_spec",
)


class Op(NamedTuple):
    """One operation as the changelog names it: method and path relative to `/v{n}`."""

    method: str
    path: str  # OpenAPI style: `/notes/{note_id}`

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


def openapi_path(rule: str) -> str:
    """A werkzeug rule in OpenAPI form: `/notes/<uuid:note_id>` -> `/notes/{note_id}`."""
    return _CONVERTER.sub(lambda m: "{" + m["name"] + "}", rule)


def operations(rule: Rule, prefix: str) -> Iterator[Op]:
    """The operations one rule serves, relative to the version `prefix` (`/v1`)."""
    path = openapi_path(rule.rule[len(prefix) :])
    for method in sorted((rule.methods or set()) - _IMPLICIT):
        yield Op(method, path)


def source_rules(app: Flask, source: str) -> list[Rule]:
    """Every rule of blueprint `source` and the blueprints nested in it."""
    return [r for r in app.url_map.iter_rules() if r.endpoint.startswith(source + ".")]


def _refuse_blueprint_hooks(app: Flask, source: str) -> None:
    # The source's own hooks are version-specific (its `g.api_version` marker); hooks of
    # a nested blueprint (`v1.auth`) are behaviour the copy would lose: fail at start-up
    # and make whoever added one decide (register it on the new version too, or move it
    # into a decorator on the views).
    for registry in _HOOK_REGISTRIES:
        hooks: dict[str | None, Any] = getattr(app, registry)
        nested = [name for name in hooks if name and name.startswith(source + ".") and hooks[name]]
        if nested:
            raise RuntimeError(
                f"Blueprint(s) {nested} have {registry}; carried-over routes would not get "
                "them. Decide in app/api/v2/__init__.py (see docs/versioning.md)."
            )


def carry_over(state: BlueprintSetupState, *, source: str, skip: Collection[Op]) -> list[Op]:
    """Register every operation of `source` under `state`'s blueprint, except `skip`.

    The source blueprint must be registered first (app/factory.py registers v1, then v2).
    Returns the operations carried over, in URL-map order.
    """
    app: Flask = state.app  # type: ignore[assignment]
    if source not in app.blueprints:
        raise RuntimeError(f"Register the {source!r} blueprint before {state.name!r}.")
    prefix = (app.blueprints[source].url_prefix or "").rstrip("/")
    _refuse_blueprint_hooks(app, source)
    carried: list[Op] = []
    for rule in source_rules(app, source):
        ops = [op for op in operations(rule, prefix) if op not in skip]
        if not ops:
            continue
        endpoint = rule.endpoint[len(source) + 1 :]
        options: dict[str, Any] = {"methods": [op.method for op in ops]}
        if rule.defaults:
            options["defaults"] = dict(rule.defaults)
        if rule.strict_slashes is not None:
            options["strict_slashes"] = rule.strict_slashes
        state.add_url_rule(
            rule.rule[len(prefix) :],
            endpoint=endpoint,
            view_func=app.view_functions[rule.endpoint],
            **options,
        )
        carried += ops
    return carried
