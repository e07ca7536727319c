"""The providers of one config generation, ready to call, ordered per model by priority.

Built from the snapshot's `AIProvider` entries the first time a generation is used in a
process: keys are decrypted here, in memory, and nowhere else (DESIGN.md section 2); a
new ciphertext (Secret rotated, operator re-synced) arrives as a new generation, so a
changed key is used from the next call on, without a restart (Envoy AI Gateway#1313).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field

import httpx

from app.config import Settings
from app.core.ai.errors import FailureKind
from app.core.ai.providers import Provider, build_provider
from app.core.config_store import AI_PROVIDER, ConfigEntry, Snapshot
from app.core.crypto import CredentialDecryptError, CredentialKeyError, keyring
from app.core.specs.ai_provider import AIProviderSpec, ProviderType

log = logging.getLogger("structured_api.ai")


@dataclass(frozen=True, slots=True)
class ProviderHandle:
    """One configured provider: callable, or the reason it cannot be called."""

    name: str
    spec: AIProviderSpec
    provider: Provider | None
    unusable: FailureKind | None = None
    credential_version: str | None = None


@dataclass(frozen=True)
class Registry:
    """Providers of one generation; `candidates(model)` in fallback order."""

    generation: int
    handles: Mapping[str, ProviderHandle]
    by_model: Mapping[str, tuple[ProviderHandle, ...]] = field(default_factory=dict)
    default_model: str | None = None

    def candidates(self, model: str) -> tuple[ProviderHandle, ...]:
        """Providers serving `model`, lowest `priority` first (then by name)."""
        return self.by_model.get(model, ())

    @property
    def models(self) -> list[str]:
        """Every model some provider serves."""
        return sorted(self.by_model)


class ClientPool:
    """One keep-alive `httpx.Client` per provider, reused across generations, per process."""

    def __init__(self) -> None:
        self._clients: dict[str, tuple[str, httpx.Client]] = {}
        self._pid = os.getpid()
        self._lock = threading.Lock()

    def get(self, name: str, base_url: str) -> httpx.Client:
        """The client of provider `name` (a new one if its base URL changed)."""
        with self._lock:
            if self._pid != os.getpid():
                # After fork: the parent's sockets are not ours; drop, never close, them.
                self._clients, self._pid = {}, os.getpid()
            held = self._clients.get(name)
            if held is not None and held[0] == base_url:
                return held[1]
            client = httpx.Client(
                limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
                follow_redirects=False,
            )
            self._clients[name] = (base_url, client)
            if held is not None:
                held[1].close()
            return client

    def close(self) -> None:
        """Close every client (tests, shutdown)."""
        with self._lock:
            for _, client in self._clients.values():
                client.close()
            self._clients = {}


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
            client = (
                None if spec.type is ProviderType.ECHO else clients.get(name, str(spec.baseURL))
            )
            provider = build_provider(
                name=name,
                spec=spec,
                api_key=key,
                client=client,
                connect_timeout=settings.ai_connect_timeout,
            )
        handles[name] = ProviderHandle(name, spec, provider, unusable, entry.credential_version)
    ordered = sorted(handles.values(), key=lambda h: (h.spec.priority, h.name))
    by_model: dict[str, list[ProviderHandle]] = {}
    for handle in ordered:
        for model in handle.spec.models:
            by_model.setdefault(model.name, []).append(handle)
    default = None
    if ordered:
        first = ordered[0].spec
        default = first.defaultModel or first.models[0].name
    return Registry(
        generation=snapshot.generation,
        handles=handles,
        by_model={m: tuple(hs) for m, hs in by_model.items()},
        default_model=default,
    )
