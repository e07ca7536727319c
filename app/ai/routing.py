"""Model routing: from the model a caller names to the targets that may answer, in order.

A public name is an `AIModelRoute` (app/core/specs/ai_route.py: ordered targets, optional
weights, roles) or a model some `AIProvider` lists (its providers by `priority`). Each
call gets its own order: weighted targets first, drawn by weight, then the rest as
declared. Targets whose wire format cannot honour a parameter the request sets are left
out (app/ai/capabilities.py); none left is 400 `AI_UNSUPPORTED_PARAMETER`.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

from app.ai.capabilities import can_embed, unsupported
from app.ai.registry import Registry, Target
from app.ai.types import ChatRequest
from app.core.errors import ApiError, ErrorCode


def public_targets(registry: Registry, model: str, roles: frozenset[str]) -> tuple[Target, ...]:
    """The targets of `model` for a caller with `roles`, ordered for this call.

    404 `AI_MODEL_NOT_FOUND` for an unknown name, a name without a usable target, or a
    route the caller's roles may not use (the same answer: names are not disclosed).
    """
    public = registry.public(model)
    if public is None or not public.targets or not public.allows(roles):
        raise ApiError(
            f"No configured provider serves model {model!r}.",
            code=ErrorCode.AI_MODEL_NOT_FOUND,
            details={"model": model, "models": [m.name for m in registry.visible(roles)]},
        )
    return ordered(public.targets)


def route(registry: Registry, request: ChatRequest, roles: frozenset[str]) -> tuple[Target, ...]:
    """The targets that may answer `request`, in the order to try them."""
    targets = public_targets(registry, request.model, roles)
    usable = tuple(t for t in targets if unsupported(t.handle.spec.type, request) is None)
    if not usable:
        param = unsupported(targets[0].handle.spec.type, request)
        raise unsupported_error(request.model, str(param), targets)
    return usable


def route_embeddings(registry: Registry, model: str, roles: frozenset[str]) -> tuple[Target, ...]:
    """The targets of `model` that have an embeddings endpoint (400 when none has)."""
    targets = public_targets(registry, model, roles)
    usable = tuple(t for t in targets if can_embed(t.handle.spec.type))
    if not usable:
        raise unsupported_error(model, "model", targets, what="embeddings")
    return usable


def ordered(targets: Iterable[Target]) -> tuple[Target, ...]:
    """Weighted targets first, in a random order drawn by weight (Efraimidis and Spirakis,
    "Weighted random sampling with a reservoir", 2006: key u^(1/w), largest first), then
    the others in declared order. Without weights: the declared order."""
    listed = tuple(targets)
    weighted = [t for t in listed if t.weight]
    if not weighted:
        return listed
    drawn = sorted(weighted, key=lambda t: random.random() ** (1.0 / (t.weight or 1)), reverse=True)
    return (*drawn, *(t for t in listed if not t.weight))


def unsupported_error(
    model: str, param: str, targets: tuple[Target, ...], *, what: str = "this parameter"
) -> ApiError:
    """400 `AI_UNSUPPORTED_PARAMETER`: no target of `model` can honour `param`."""
    kinds = sorted({t.handle.spec.type.value for t in targets})
    return ApiError(
        f"Model {model!r} cannot honour {param!r}: its providers ({', '.join(kinds)}) do not "
        f"support {what}. Remove it or choose another model.",
        code=ErrorCode.AI_UNSUPPORTED_PARAMETER,
        details={"model": model, "param": param, "provider_types": kinds},
    )
