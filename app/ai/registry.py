"""The providers of one config generation, ready to call, ordered per model by priority.

Built from the snapshot's `AIProvider` entries the first time a generation is used in a
process: keys are decrypted here, in memory, and nowhere else (docs/architecture.md); a
new ciphertext (Secret rotated, operator re-synced) arrives as a new generation, so a
changed key is used from the next call on, without a restart (Envoy AI Gateway#1313).
"""

from __future__ import annotations

import logging
import os
import threading
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx

from app.ai.errors import FailureKind
from app.ai.providers import Provider, build_provider
from app.ai.transport import GuardedTransport
from app.config_store.snapshot import AI_MODEL_ROUTE, AI_PROVIDER, ConfigEntry, Snapshot
from app.core.crypto import CredentialDecryptError, CredentialKeyError, keyring
from app.core.specs.ai_provider import AIProviderSpec, ModelPrice, ProviderType
from app.core.specs.ai_route import AIModelRouteSpec
from app.settings import Settings

log = logging.getLogger("structured_api.ai")


@dataclass(frozen=True, slots=True)
class ProviderHandle:
    """One configured provider: callable, or the reason it cannot be called."""

    name: str
    spec: AIProviderSpec
    provider: Provider | None
    unusable: FailureKind | None = None
    credential_version: str | None = None


@dataclass(frozen=True, slots=True)
class Target:
    """One provider model that can answer for a public name, at that model's price."""

    handle: ProviderHandle
    model: str
    price: ModelPrice
    weight: int | None = None

    @property
    def name(self) -> str:
        """The provider's name."""
        return self.handle.name


@dataclass(frozen=True, slots=True)
class PublicModel:
    """A model name callers send: an `AIModelRoute`, or a model some provider lists."""

    name: str
    targets: tuple[Target, ...]
    roles: frozenset[str] = frozenset()
    route: str | None = None
    description: str | None = None

    def allows(self, roles: frozenset[str]) -> bool:
        """True when a caller with `roles` may use the name."""
        return not self.roles or bool(self.roles & roles)


@dataclass(frozen=True)
class Registry:
    """Providers and public model names of one generation."""

    generation: int
    handles: Mapping[str, ProviderHandle]
    by_model: Mapping[str, PublicModel] = field(default_factory=dict)
    default_model: str | None = None
    #: Route name -> why some of its targets (or its name) are not served.
    route_problems: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def candidates(self, model: str) -> tuple[Target, ...]:
        """Targets of `model` in declared order (providers: lowest `priority` first)."""
        found = self.by_model.get(model)
        return found.targets if found is not None else ()

    def public(self, model: str) -> PublicModel | None:
        """The public model `model`, if defined."""
        return self.by_model.get(model)

    @property
    def models(self) -> list[str]:
        """Every public model name."""
        return sorted(self.by_model)

    def visible(self, roles: frozenset[str]) -> list[PublicModel]:
        """The public models a caller with `roles` may use, by name."""
        return [m for _, m in sorted(self.by_model.items()) if m.targets and m.allows(roles)]


class ClientPool:
    """One keep-alive httpx transport per provider, reused across generations, per process.

    A transport, not an `httpx.Client`: the client's per-call layers (URL merging, cookie
    jar, auth and redirect hooks) cost ~0.3 ms of CPU per call and none of them apply
    (no cookies kept between providers' answers, redirects never followed). Proxies from
    the environment (`HTTPS_PROXY`, `ALL_PROXY`, `NO_PROXY`), which a client would honour,
    are resolved here once per base URL. httpx's own retries stay 0 (its default).
    """

    def __init__(self) -> None:
        self._transports: dict[str, tuple[str, httpx.HTTPTransport]] = {}
        self._pid = os.getpid()
        self._lock = threading.Lock()

    def get(self, name: str, base_url: str) -> httpx.HTTPTransport:
        """The transport of provider `name` (a new one if its base URL changed)."""
        with self._lock:
            if self._pid != os.getpid():
                # After fork: the parent's sockets are not ours; drop, never close, them.
                self._transports, self._pid = {}, os.getpid()
            held = self._transports.get(name)
            if held is not None and held[0] == base_url:
                return held[1]
            transport = GuardedTransport(
                limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
                proxy=_environment_proxy(base_url),
            )
            self._transports[name] = (base_url, transport)
            if held is not None:
                held[1].close()
            return transport

    def close(self) -> None:
        """Close every transport (tests, shutdown)."""
        with self._lock:
            for _, transport in self._transports.values():
                transport.close()
            self._transports = {}


def _environment_proxy(base_url: str) -> str | None:
    """The proxy the environment names for `base_url` (None: direct, or NO_PROXY says so)."""
    url = urlsplit(base_url)
    proxies = urllib.request.getproxies()
    proxy = proxies.get(url.scheme) or proxies.get("all")
    if not proxy or urllib.request.proxy_bypass(url.hostname or ""):
        return None
    return proxy


def _api_key(entry: ConfigEntry, settings: Settings) -> tuple[str | None, FailureKind | None]:
    spec = entry.spec
    assert isinstance(spec, AIProviderSpec)
    if spec.type is ProviderType.ECHO:
        return None, None
    if entry.credential_ciphertext is None:
        # No Secret named: a keyless server (Ollama, vLLM). Named but not stored yet: unusable.
        return None, (FailureKind.NO_CREDENTIAL if spec.credentialsSecretRef else None)
    try:
        return keyring(settings).decrypt(entry.credential_ciphertext), None
    except (CredentialDecryptError, CredentialKeyError):
        log.warning(
            "AI provider %s: stored credential does not decrypt with the configured keys",
            entry.name,
        )
        return None, FailureKind.NO_CREDENTIAL


def build_registry(snapshot: Snapshot, *, settings: Settings, clients: ClientPool) -> Registry:
    """The registry of `snapshot`'s providers."""
    handles: dict[str, ProviderHandle] = {}
    for name, entry in snapshot.of_kind(AI_PROVIDER).items():
        spec = entry.spec
        assert isinstance(spec, AIProviderSpec)
        key, unusable = _api_key(entry, settings)
        provider = None
        if unusable is None:
            transport = (
                None if spec.type is ProviderType.ECHO else clients.get(name, str(spec.baseURL))
            )
            provider = build_provider(
                name=name,
                spec=spec,
                api_key=key,
                transport=transport,
                connect_timeout=settings.ai_connect_timeout,
                allowed_http_hosts=settings.ai_allowed_http_hosts,
            )
        handles[name] = ProviderHandle(name, spec, provider, unusable, entry.credential_version)
    ordered = sorted(handles.values(), key=lambda h: (h.spec.priority, h.name))
    served: dict[str, list[Target]] = {}
    for handle in ordered:
        for price in handle.spec.models:
            served.setdefault(price.name, []).append(Target(handle, price.name, price))
    by_model = {name: PublicModel(name, tuple(ts)) for name, ts in served.items()}
    problems = _add_routes(snapshot, handles, by_model)
    for route, found in problems.items():
        log.warning("AIModelRoute %s: %s", route, "; ".join(found))
    default = None
    if ordered:
        first = ordered[0].spec
        default = first.defaultModel or first.models[0].name
    return Registry(
        generation=snapshot.generation,
        handles=handles,
        by_model=by_model,
        default_model=default,
        route_problems=problems,
    )


def _add_routes(
    snapshot: Snapshot, handles: Mapping[str, ProviderHandle], by_model: dict[str, PublicModel]
) -> dict[str, tuple[str, ...]]:
    """Add each `AIModelRoute` (by object name; a route replaces a provider model of the
    same name, the first route of a name wins); what could not be resolved, per route."""
    problems: dict[str, tuple[str, ...]] = {}
    claimed: set[str] = set()
    for name, entry in sorted(snapshot.of_kind(AI_MODEL_ROUTE).items()):
        spec = entry.spec
        assert isinstance(spec, AIModelRouteSpec)
        found: list[str] = []
        if spec.model in claimed:
            problems[name] = (f"model {spec.model!r} is already routed by another AIModelRoute",)
            continue
        targets: list[Target] = []
        for target in spec.targets:
            handle = handles.get(target.provider)
            price = handle.spec.model(target.model) if handle is not None else None
            if handle is None:
                found.append(f"AIProvider {target.provider!r} does not exist")
            elif price is None or price.name != target.model:
                found.append(f"AIProvider {target.provider!r} lists no model {target.model!r}")
            else:
                targets.append(Target(handle, target.model, price, target.weight))
        claimed.add(spec.model)
        by_model[spec.model] = PublicModel(
            spec.model, tuple(targets), frozenset(spec.roles), name, spec.description
        )
        if found:
            problems[name] = tuple(found)
    return problems
