"""Which targets of an AIModelRoute resolve, against the AIProviders the operator watches.

    views = {"openai-main": [ProviderView("team-a", frozenset({"gpt-4o-mini"}), True)]}
    unresolved(spec, views)   # -> [{"provider": "azure-east", "model": "...", "reason": ...}]

A target resolves when an AIProvider of that name exists (in any namespace the operator
watches: provider names are unique across namespaces in the config store), lists the
target's model among its `models`, and is Ready for its current generation (stored,
with a usable key). The API skips a target that does not resolve (app/ai/registry.py):
the route's status names each one, and its conditions say so (docs/operator.md).

Providers change without the route changing: the handlers keep an index of providers
and of the routes that name each one, and on every AIProvider event set the route's
`TARGETS_REVISION` annotation to a digest of what its targets resolve to. A changed
digest is a changed annotation, which makes Kopf run the route's update handler; an
unchanged one is a no-op patch.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

#: Annotation the AIProvider watcher sets on a route so Kopf re-evaluates its targets.
TARGETS_REVISION: Final = "structured-api.io/targets-revision"

PROVIDER_NOT_FOUND: Final = "ProviderNotFound"
MODEL_NOT_OFFERED: Final = "ModelNotOffered"
PROVIDER_NOT_READY: Final = "ProviderNotReady"
#: Shown in a condition message at most; `status.unresolvedTargets` lists them all.
_NAMED: Final = 5


@dataclass(frozen=True)
class ProviderView:
    """What a route needs to know of one AIProvider resource."""

    namespace: str
    models: frozenset[str]
    ready: bool


def provider_view(namespace: str | None, body: Mapping[str, Any]) -> ProviderView:
    """The view of an AIProvider body: its model names and whether it is Ready for its
    current generation (and not being deleted)."""
    meta = body.get("metadata") or {}
    spec = body.get("spec") or {}
    models = frozenset(
        str(m["name"]) for m in spec.get("models") or [] if isinstance(m, Mapping) and m.get("name")
    )
    status = body.get("status") or {}
    ready = not meta.get("deletionTimestamp") and any(
        c.get("type") == "Ready"
        and c.get("status") == "True"
        and c.get("observedGeneration") == meta.get("generation")
        for c in status.get("conditions") or []
    )
    return ProviderView(str(namespace or ""), models, bool(ready))


def targets_of(spec: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """(provider, model) of each target, in order."""
    return tuple(
        (str(t.get("provider", "")), str(t.get("model", "")))
        for t in spec.get("targets") or []
        if isinstance(t, Mapping)
    )


def unresolved(
    targets: Iterable[tuple[str, str]], providers: Mapping[str, Iterable[ProviderView]]
) -> list[dict[str, str]]:
    """Each target that does not resolve, in order, with why."""
    out = []
    for provider, model in targets:
        views = list(providers.get(provider) or ())
        if not views:
            reason = PROVIDER_NOT_FOUND
        elif not any(model in v.models for v in views):
            reason = MODEL_NOT_OFFERED
        elif not any(v.ready and model in v.models for v in views):
            reason = PROVIDER_NOT_READY
        else:
            continue
        out.append({"provider": provider, "model": model, "reason": reason})
    return out


def revision(missing: Sequence[Mapping[str, str]]) -> str:
    """A short digest of what a route's targets resolve to (the annotation's value)."""
    raw = json.dumps(list(missing), sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(raw).hexdigest()[:16]


def describe(missing: Sequence[Mapping[str, str]]) -> str:
    """`provider/model (Reason)`, for condition messages (the first few)."""
    named = ", ".join(f"{m['provider']}/{m['model']} ({m['reason']})" for m in missing[:_NAMED])
    more = f" and {len(missing) - _NAMED} more" if len(missing) > _NAMED else ""
    return named + more
