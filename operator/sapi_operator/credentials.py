"""AIProvider keys: from what the Secret lookup found to a `CredentialCheck` (pure).

The key only ever exists in clear inside this process, between reading the Secret and
encrypting it (`app.core.crypto`); messages name Secrets and keys, never values.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

from app.core.crypto import Keyring
from app.core.specs import AIProviderSpec
from app.core.specs.ai_provider import ProviderType
from app.services.config import NO_CREDENTIAL, Credential
from sapi_operator.reconcile import SECRET_RETRY, CredentialCheck

FOUND: Final = "found"
MISSING: Final = "missing"
FORBIDDEN: Final = "forbidden"
ERROR: Final = "error"


@dataclass(frozen=True)
class SecretRead:
    """What reading a Secret returned: its base64 `data`, or why there is none."""

    state: Literal["found", "missing", "forbidden", "error"]
    data: Mapping[str, str] = field(default_factory=dict, repr=False)
    detail: str = ""


def secret_name(spec: AIProviderSpec) -> str | None:
    """The Secret a provider needs, or None when it needs no key."""
    if spec.type is ProviderType.ECHO or spec.credentialsSecretRef is None:
        return None
    return spec.credentialsSecretRef.name


def check(spec: AIProviderSpec, namespace: str, read: SecretRead | None) -> CredentialCheck:
    """Resolve the key named by `spec.credentialsSecretRef` from `read`."""
    ref = spec.credentialsSecretRef
    if secret_name(spec) is None or ref is None or read is None:
        return CredentialCheck(True, "NotRequired", "This provider needs no key.")
    where = f"Secret {ref.name!r} in namespace {namespace!r}"
    if read.state == MISSING:
        return CredentialCheck(
            False,
            "SecretNotFound",
            f"{where} does not exist. Create it (kubectl create secret generic {ref.name} "
            f"--from-literal={ref.key}=...); the operator picks it up by itself.",
        )
    if read.state == FORBIDDEN:
        return CredentialCheck(
            False,
            "SecretForbidden",
            f"The operator may not read {where}: grant it get/list/watch on secrets "
            "(the chart's operator Role).",
        )
    if read.state == ERROR:
        return CredentialCheck(
            False,
            "SecretUnreadable",
            f"Reading {where} failed ({read.detail}); retrying in {SECRET_RETRY:.0f} s.",
            retry_after=SECRET_RETRY,
        )
    if ref.key not in read.data:
        keys = ", ".join(sorted(read.data)) or "none"
        return CredentialCheck(
            False,
            "SecretKeyMissing",
            f"{where} has no key {ref.key!r} (it has: {keys}). Add it or fix "
            "spec.credentialsSecretRef.key.",
        )
    try:
        value = base64.b64decode(read.data[ref.key], validate=True).decode("utf-8").strip()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        value = ""
    if not value:
        return CredentialCheck(
            False,
            "SecretKeyEmpty",
            f"Key {ref.key!r} of {where} is empty or not UTF-8 text; put the API key in it.",
        )
    return CredentialCheck(
        True,
        "SecretResolved",
        f"Key {ref.key!r} of {where} is stored encrypted; changes to the Secret re-sync it.",
        plaintext=value,
    )


def stored_credential(result: CredentialCheck, ring: Keyring) -> Credential:
    """What the row should hold: the encrypted key, or no key at all."""
    if not result.valid or result.plaintext is None:
        return NO_CREDENTIAL
    return Credential(ring.encrypt(result.plaintext), ring.version(result.plaintext))
