"""Extension point: a team's own endpoints, models and services, without editing core.

Each sub-package of `app.custom` is an extension. It may contain:

* `models.py`  - SQLModel tables (Alembic autogenerate finds them via `import_models`);
* `services.py` - keyword-only service functions raising `app.core.errors` exceptions;
* `views.py`   - a `bp` Blueprint whose routes use `@operation(...)` so they are
  validated and appear in the OpenAPI document of their version;
* `__init__.py` - optionally `def init_app(app): ...` for anything else.

Extensions load in name order. Set `CUSTOM_EXTENSIONS_DISABLED=1`-style switches in
your own extension if you need them; core never imports an extension by name.
See `app/custom/notes/` for a small working example and `docs/extending.md`.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterator
from types import ModuleType

from flask import Flask


def extensions() -> Iterator[str]:
    """Dotted names of every extension package, in name order."""
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.ispkg and not info.name.startswith("_"):
            yield f"{__name__}.{info.name}"


def _optional(module: str) -> ModuleType | None:
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name != module:
            raise  # a real import error inside the extension must not be hidden
        return None


def import_models() -> None:
    """Import every extension's `models` module (for Alembic and the app)."""
    for name in extensions():
        _optional(f"{name}.models")


def init_app(app: Flask) -> None:
    """Register every extension's blueprint and run its `init_app`, if any."""
    import_models()
    for name in extensions():
        package = importlib.import_module(name)
        views = _optional(f"{name}.views")
        if views is not None and hasattr(views, "bp"):
            app.register_blueprint(views.bp)
        hook = getattr(package, "init_app", None)
        if callable(hook):
            hook(app)
