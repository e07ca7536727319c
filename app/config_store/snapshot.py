"""The immutable config snapshot a process serves: a generation and validated specs.

A snapshot is built once (in the watcher thread) and never changed; a reload builds a
new one and swaps the reference, so a request holding a snapshot sees one consistent
generation for its whole life without any lock.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

from pydantic import BaseModel, ValidationError

from app.core.specs import KINDS, AIProviderSpec, ApiVersionSpec, RateLimitPolicySpec

log = logging.getLogger("structured_api.config")

API_VERSION: Final = "ApiVersion"
RATE_LIMIT_POLICY: Final = "RateLimitPolicy"
AI_PROVIDER: Final = "AIProvider"
AI_MODEL_ROUTE: Final = "AIModelRoute"


@dataclass(frozen=True, slots=True)
class ConfigEntry:
    """One validated object of the snapshot."""

    kind: str
    name: str
    spec: BaseModel
    source: str
    generation: int
    source_namespace: str | None = None
    source_uid: str | None = None
    status: Mapping[str, Any] = field(default_factory=dict)
    # Ciphertext only; `repr=False` keeps it out of logs and tracebacks.
    credential_ciphertext: str | None = field(default=None, repr=False)
    credential_version: str | None = None


@dataclass(frozen=True, slots=True)
class InvalidRow:
    """A stored row the current code refuses (e.g. written by a newer release)."""

    kind: str
    name: str
    errors: tuple[str, ...]


def _frozen(entries: Mapping[str, Mapping[str, ConfigEntry]]) -> Mapping[str, Any]:
    return MappingProxyType({kind: MappingProxyType(dict(entries.get(kind, {}))) for kind in KINDS})


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Generation `generation` of the runtime config, as this process serves it."""

    generation: int
    entries: Mapping[str, Mapping[str, ConfigEntry]]
    loaded_at: float = field(default_factory=time.time)
    loaded: bool = True
    invalid: tuple[InvalidRow, ...] = ()
    _by_major: Mapping[int, ConfigEntry] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "entries", _frozen(self.entries))
        by_major: dict[int, ConfigEntry] = {}
        for entry in self.entries[API_VERSION].values():
            assert isinstance(entry.spec, ApiVersionSpec)
            by_major.setdefault(entry.spec.major, entry)
        object.__setattr__(self, "_by_major", MappingProxyType(by_major))

    def of_kind(self, kind: str) -> Mapping[str, ConfigEntry]:
        """Entries of one kind by name."""
        return self.entries[kind]

    def specs(self, kind: str) -> dict[str, BaseModel]:
        """Validated specs of one kind by name."""
        return {name: e.spec for name, e in self.entries[kind].items()}

    @property
    def api_versions(self) -> dict[str, ApiVersionSpec]:
        """`ApiVersion` specs by object name."""
        return {n: e.spec for n, e in self.entries[API_VERSION].items()}  # type: ignore[misc]

    @property
    def rate_limit_policies(self) -> dict[str, RateLimitPolicySpec]:
        """`RateLimitPolicy` specs by object name."""
        return {n: e.spec for n, e in self.entries[RATE_LIMIT_POLICY].items()}  # type: ignore[misc]

    @property
    def ai_providers(self) -> dict[str, AIProviderSpec]:
        """`AIProvider` specs by object name."""
        return {n: e.spec for n, e in self.entries[AI_PROVIDER].items()}  # type: ignore[misc]

    def api_version(self, major: int) -> ApiVersionSpec | None:
        """The lifecycle declared for `/v{major}`, if any."""
        entry = self._by_major.get(major)
        return entry.spec if entry is not None else None  # type: ignore[return-value]


EMPTY: Final = Snapshot(generation=0, entries={}, loaded_at=0.0, loaded=False)


def build_snapshot(
    generation: int, rows: Iterable[Mapping[str, Any]], *, loaded_at: float | None = None
) -> Snapshot:
    """Validate stored rows into a snapshot; rows the code refuses are set aside, not fatal.

    One bad row (say, written by a newer release with a field this one does not know)
    must not take every other policy and version down with it.
    """
    entries: dict[str, dict[str, ConfigEntry]] = {kind: {} for kind in KINDS}
    invalid: list[InvalidRow] = []
    for row in rows:
        kind, name = row["kind"], row["name"]
        model: type[BaseModel] | None = KINDS.get(kind)  # type: ignore[assignment]
        if model is None:
            invalid.append(InvalidRow(kind, name, ("unknown kind",)))
            continue
        try:
            spec = model.model_validate(row["spec"])
        except ValidationError as exc:
            errors = tuple(
                f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                for e in exc.errors(include_url=False, include_input=False)
            )
            invalid.append(InvalidRow(kind, name, errors))
            continue
        entries[kind][name] = ConfigEntry(
            kind=kind,
            name=name,
            spec=spec,
            source=row["source"],
            generation=int(row["generation"]),
            source_namespace=row.get("source_namespace"),
            source_uid=row.get("source_uid"),
            status=MappingProxyType(dict(row.get("status") or {})),
            credential_ciphertext=row.get("credential_ciphertext"),
            credential_version=row.get("credential_version"),
        )
    for bad in invalid:
        log.warning("config row %s/%s skipped: %s", bad.kind, bad.name, "; ".join(bad.errors))
    return Snapshot(
        generation=generation,
        entries=entries,
        loaded_at=time.time() if loaded_at is None else loaded_at,
        invalid=tuple(invalid),
    )
