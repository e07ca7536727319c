"""AIProvider keys: from what the Secret lookup found to a `CredentialCheck` (pure).

The key only ever exists in clear inside this process, between reading the Secret and
encrypting it (`app.core.crypto`); messages name Secrets and keys, never values.

Which Secrets: RBAC cannot grant "the Secrets holding provider keys" (it has no label
selectors), and whoever may create an AIProvider names any Secret of its namespace. So the
operator reads only Secrets that opt in with `OPT_IN_LABEL` (the apiserver filters by it:
an unlabelled Secret's data never reaches this process) and never the release's own
Secrets (`OPERATOR_PROTECTED_SECRETS`), labelled or not. Messages never list a Secret's
keys: an AIProvider's status is readable by more people than the Secret.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

from app.config_store.service import NO_CREDENTIAL, Credential
from app.core.crypto import Keyring
from app.core.specs import AIProviderSpec
from app.core.specs.ai_provider import ProviderType
from sapi_operator.reconcile import SECRET_RETRY, CredentialCheck

#: The label a Secret carries to let the operator read it as provider keys.
OPT_IN_LABEL: Final = "structured-api.io/ai-credentials"
OPT_IN_VALUE: Final = "true"
#: Server-side selector of the Secret reads and of the Secret watch.
OPT_IN_SELECTOR: Final = f"{OPT_IN_LABEL}={OPT_IN_VALUE}"

FOUND: Final = "found"
MISSING: Final = "missing"
NOT_OPTED_IN: Final = "not-opted-in"
PROTECTED: Final = "protected"
FORBIDDEN: Final = "forbidden"
ERROR: Final = "error"


@dataclass(frozen=True)
class SecretRead:
    """What reading a Secret returned: its base64 `data`, or why there is none."""

    state: Literal["found", "missing", "not-opted-in", "protected", "forbidden", "error"]
    data: Mapping[str, str] = field(default_factory=dict, repr=False)
    detail: str = ""


def opted_in(labels: Mapping[str, str] | None) -> bool:
    """Does a Secret with these labels let the operator read it?"""
    return (labels or {}).get(OPT_IN_LABEL) == OPT_IN_VALUE


def is_protected(namespace: str, name: str, protected: Iterable[str]) -> bool:
    """Is `namespace/name` one of the release's own Secrets (`ns/name`, or `name` anywhere)?"""
    return any(p.strip() in (name, f"{namespace}/{name}") for p in protected)


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
    if read.state == PROTECTED:
        return CredentialCheck(
            False,
            "SecretProtected",
            f"{where} is one of this release's own Secrets (OPERATOR_PROTECTED_SECRETS) and "
            "is never read as a provider key, labelled or not. Put the API key in a Secret of "
            f"its own, labelled {OPT_IN_SELECTOR}, and name that one.",
        )
    if read.state == NOT_OPTED_IN:
        return CredentialCheck(
            False,
            "SecretNotOptedIn",
            f"{where} is not labelled {OPT_IN_SELECTOR}, so the operator does not read it. "
            "If it holds only AI provider keys, label it (kubectl label secret "
            f"{ref.name} -n {namespace} {OPT_IN_SELECTOR}); the operator picks it up.",
        )
    if read.state == MISSING:
        return CredentialCheck(
            False,
            "SecretNotFound",
            f"{where} does not exist. Create it (kubectl create secret generic {ref.name} "
            f"--from-literal={ref.key}=...) and label it {OPT_IN_SELECTOR}; the operator "
            "picks it up by itself.",
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
        # Its other keys stay unnamed (see the module docstring); whoever may read the
        # Secret sees them with `kubectl describe secret`.
        return CredentialCheck(
            False,
            "SecretKeyMissing",
            f"{where} has no key {ref.key!r}. Add it or fix spec.credentialsSecretRef.key "
            f"(kubectl describe secret {ref.name} lists its keys).",
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
