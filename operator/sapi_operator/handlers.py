"""The only module with Kopf handlers: thin, typed adapters onto `actions` and `drift`.

Error contract (nolar/kopf docs, "Errors"): an invalid spec writes `Ready=False` with the
reason and raises `PermanentError` (retried only when the resource changes); a conflict
or an outage writes `Ready=False` and raises `TemporaryError(delay=...)`; a missing
Secret is not an error of the handler (the row is kept without a key, `CredentialValid`
turns False, and the Secret watch re-runs the handler when it appears).

Run with `python -m sapi_operator` (settings from the environment) or
`kopf run -m sapi_operator.handlers`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import kopf

from app.core.crypto import CredentialKeyError
from app.settings import Settings
from sapi_operator import actions, crd, credentials, drift, routes
from sapi_operator.kube import KubeError
from sapi_operator.resources import (
    AI_MODEL_ROUTE_KIND,
    AI_PROVIDER_KIND,
    API_VERSION_KIND,
    GROUP,
    RATE_LIMIT_POLICY_KIND,
    RESOURCES,
    VERSION,
)
from sapi_operator.runtime import KOPF_PREFIX, Runtime

AIPROVIDERS = (GROUP, VERSION, "aiproviders")
AIMODELROUTES = (GROUP, VERSION, "aimodelroutes")
SECRETS = ("", "v1", "secrets")
APIVERSIONS = (GROUP, VERSION, "apiversions")
RATELIMITPOLICIES = (GROUP, VERSION, "ratelimitpolicies")


def configure(settings: kopf.OperatorSettings, app_settings: Settings) -> None:
    """Kopf settings from ours: storage, timeouts, scanning (see docs/operator.md)."""
    # Progress and last-handled spec in annotations: the status schema holds only what
    # the CRD declares (a status.kopf stanza would be pruned, nolar/kopf#574).
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=KOPF_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=KOPF_PREFIX)
    settings.persistence.finalizer = f"{GROUP}/config-row"
    # A stalled watch makes a zombie operator (nolar/kopf#1276): bound every stream.
    # An integer: the apiserver refuses `timeoutSeconds=300.0` (strconv.ParseInt).
    settings.watching.server_timeout = int(app_settings.operator_watch_timeout)
    settings.watching.client_timeout = app_settings.operator_watch_timeout + 30
    settings.watching.connect_timeout = 10
    settings.watching.inactivity_timeout = app_settings.operator_inactivity_timeout
    settings.networking.request_timeout = app_settings.operator_request_timeout
    settings.networking.connect_timeout = 10
    # No CRD/namespace discovery: the RBAC stays namespace-only (nolar/kopf#1184).
    settings.scanning.disabled = True
    # Watch only the Secrets that opted in as AI provider keys, filtered by the apiserver:
    # the data of every other Secret stays out of this process (sapi_operator/credentials.py).
    settings.watching.label_selectors[SECRETS] = credentials.OPT_IN_SELECTOR
    settings.execution.default_backoff = 5
    settings.posting.level = logging.WARNING


@kopf.on.startup()
async def start(
    settings: kopf.OperatorSettings, memo: kopf.Memo, logger: kopf.Logger, **_: Any
) -> None:
    """Open the store and API client, apply the CRDs (if asked), start the drift loop."""
    app_settings = memo.get("settings") or Settings()
    configure(settings, app_settings)
    try:
        runtime = await Runtime.start(app_settings)
    except CredentialKeyError as exc:
        # Nothing to retry: stop with the reason instead of looping on a bad setting.
        raise kopf.PermanentError(str(exc)) from exc
    memo["runtime"] = runtime
    if app_settings.operator_apply_crds:
        await apply_crds(runtime, logger)
    runtime.drift_task = asyncio.create_task(drift.run_forever(runtime), name="drift-check")


async def apply_crds(runtime: Runtime, logger: logging.Logger | kopf.Logger) -> None:
    """Server-side apply this version's CRDs (docs/operations.md, "CRD upgrades").

    Runs in the startup handler, so before Kopf watches anything and, with leader
    election, each time a replica starts leading: the CRDs served are those of the version
    that leads. Helm never upgrades `crds/`. A CRD that cannot be applied (no RBAC, CRD
    missing) is logged and left as it is: the resources of an older, compatible schema
    still reconcile.
    """
    for resource in RESOURCES:
        try:
            await runtime.kube.apply_crd(crd.crd_manifest(resource))
        except KubeError as exc:
            logger.error("CRD %s.%s not applied: %s", resource.plural, GROUP, exc)
        else:
            logger.info("CRD %s.%s applied", resource.plural, GROUP)


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    """Close what `start` opened."""
    runtime: Runtime | None = memo.get("runtime")
    if runtime is not None:
        await runtime.close()


@kopf.on.probe(id="driftCheckAgeSeconds")
def drift_check_age(memo: kopf.Memo, **_: Any) -> float:
    """Seconds since the last drift pass; fails the liveness probe when the loop is stuck."""
    runtime: Runtime = memo["runtime"]
    age = time.monotonic() - runtime.last_drift_check
    if age > 3 * runtime.settings.operator_drift_interval + 60:
        raise RuntimeError(f"drift check has not run for {age:.0f} s")
    return round(age, 1)


async def _reconcile(
    kind: str,
    memo: kopf.Memo,
    body: kopf.Body,
    patch: kopf.Patch,
    providers: kopf.Index[str, routes.ProviderView] | None = None,
) -> None:
    result = await actions.reconcile(memo["runtime"], kind, body, providers)
    patch.status.update(result.status)
    if result.permanent:
        raise kopf.PermanentError(result.outcome.message)
    if result.retry_after is not None:
        raise kopf.TemporaryError(
            result.status["conditions"][0]["message"], delay=result.retry_after
        )


async def _finalize(kind: str, memo: kopf.Memo, body: kopf.Body, logger: kopf.Logger) -> None:
    try:
        removed = await actions.finalize(memo["runtime"], kind, body)
    except actions.StoreUnavailable as exc:
        raise kopf.TemporaryError(f"config store unavailable ({exc}); retrying", delay=5) from exc
    logger.info("config row %s", "deleted" if removed else "already absent (or not ours)")


@kopf.on.resume(*APIVERSIONS)
@kopf.on.create(*APIVERSIONS)
@kopf.on.update(*APIVERSIONS)
async def reconcile_api_version(
    memo: kopf.Memo, body: kopf.Body, patch: kopf.Patch, **_: Any
) -> None:
    """Store an ApiVersion's lifecycle."""
    await _reconcile(API_VERSION_KIND, memo, body, patch)


@kopf.on.delete(*APIVERSIONS)
async def delete_api_version(
    memo: kopf.Memo, body: kopf.Body, logger: kopf.Logger, **_: Any
) -> None:
    """Remove the ApiVersion's row."""
    await _finalize(API_VERSION_KIND, memo, body, logger)


@kopf.on.resume(*RATELIMITPOLICIES)
@kopf.on.create(*RATELIMITPOLICIES)
@kopf.on.update(*RATELIMITPOLICIES)
async def reconcile_rate_limit_policy(
    memo: kopf.Memo, body: kopf.Body, patch: kopf.Patch, **_: Any
) -> None:
    """Store a RateLimitPolicy."""
    await _reconcile(RATE_LIMIT_POLICY_KIND, memo, body, patch)


@kopf.on.delete(*RATELIMITPOLICIES)
async def delete_rate_limit_policy(
    memo: kopf.Memo, body: kopf.Body, logger: kopf.Logger, **_: Any
) -> None:
    """Remove the RateLimitPolicy's row."""
    await _finalize(RATE_LIMIT_POLICY_KIND, memo, body, logger)


@kopf.on.resume(*AIPROVIDERS)
@kopf.on.create(*AIPROVIDERS)
@kopf.on.update(*AIPROVIDERS)
async def reconcile_ai_provider(
    memo: kopf.Memo, body: kopf.Body, patch: kopf.Patch, **_: Any
) -> None:
    """Store an AIProvider and its key (encrypted)."""
    await _reconcile(AI_PROVIDER_KIND, memo, body, patch)


@kopf.on.delete(*AIPROVIDERS)
async def delete_ai_provider(
    memo: kopf.Memo, body: kopf.Body, logger: kopf.Logger, **_: Any
) -> None:
    """Remove the AIProvider's row (and with it the encrypted key)."""
    await _finalize(AI_PROVIDER_KIND, memo, body, logger)


@kopf.on.resume(*AIMODELROUTES)
@kopf.on.create(*AIMODELROUTES)
@kopf.on.update(*AIMODELROUTES)
async def reconcile_ai_model_route(
    memo: kopf.Memo,
    body: kopf.Body,
    patch: kopf.Patch,
    providers_by_name: kopf.Index[str, routes.ProviderView] | None = None,
    **_: Any,
) -> None:
    """Store an AIModelRoute; its status says which targets do not resolve."""
    await _reconcile(AI_MODEL_ROUTE_KIND, memo, body, patch, providers_by_name)


@kopf.on.delete(*AIMODELROUTES)
async def delete_ai_model_route(
    memo: kopf.Memo, body: kopf.Body, logger: kopf.Logger, **_: Any
) -> None:
    """Remove the AIModelRoute's row."""
    await _finalize(AI_MODEL_ROUTE_KIND, memo, body, logger)


@kopf.index(*AIPROVIDERS)
def providers_by_name(
    namespace: str | None, name: str | None, body: kopf.Body, **_: Any
) -> dict[str | None, routes.ProviderView]:
    """AIProvider name -> what routes need of it (its models, whether it is Ready)."""
    return {name: routes.provider_view(namespace, body)}


@kopf.index(*AIMODELROUTES)
def routes_by_provider(
    namespace: str | None, name: str | None, spec: kopf.Spec, **_: Any
) -> dict[str, tuple[str, str, tuple[tuple[str, str], ...]]]:
    """AIProvider name -> each route naming it: (namespace, name, its targets)."""
    targets = routes.targets_of(spec)
    return {provider: (str(namespace), str(name), targets) for provider, _ in targets}


@kopf.on.event(*AIPROVIDERS)
async def provider_changed(
    *,
    type: str,
    name: str | None,
    memo: kopf.Memo,
    logger: kopf.Logger,
    providers_by_name: kopf.Index[str, routes.ProviderView] | None = None,
    routes_by_provider: kopf.Index[str, Any] | None = None,
    **_: Any,
) -> None:
    """An AIProvider appeared, changed (spec or status) or went: re-evaluate the routes
    that name it (sapi_operator/routes.py; unchanged digests patch nothing)."""
    if (
        name is None or providers_by_name is None or routes_by_provider is None
        or name not in routes_by_provider
    ):  # fmt: skip
        return
    try:
        nudged = await actions.nudge_routes(
            memo["runtime"], routes_by_provider[name], providers_by_name
        )
    except KubeError as exc:
        logger.warning("routes naming AIProvider %s not re-evaluated: %s", name, exc)
        return
    logger.debug("AIProvider %s %s: routes re-evaluated: %s", name, type or "listed", nudged)


@kopf.index(*AIPROVIDERS)
def provider_secrets(
    namespace: str | None, name: str | None, spec: kopf.Spec, **_: Any
) -> dict[tuple[str | None, str], str | None]:
    """(namespace, Secret name) -> the providers that read it."""
    ref = spec.get("credentialsSecretRef") or {}
    return {(namespace, str(ref["name"])): name} if ref.get("name") else {}


def _is_provider_secret(
    *,
    namespace: str | None,
    name: str,
    provider_secrets: kopf.Index[Any, Any] | None = None,
    **_: Any,
) -> bool:
    return provider_secrets is not None and (namespace, name) in provider_secrets


@kopf.on.event(
    *SECRETS,
    labels={credentials.OPT_IN_LABEL: credentials.OPT_IN_VALUE},
    when=_is_provider_secret,
)
async def secret_changed(
    *,
    type: str,
    body: kopf.Body,
    memo: kopf.Memo,
    logger: kopf.Logger,
    provider_secrets: kopf.Index[Any, Any] | None = None,
    **_: Any,
) -> None:
    """An opted-in Secret an AIProvider reads changed: nudge those providers to re-sync.

    Removing the label is seen as a deletion (the object leaves the watch's selector), so
    the providers re-sync and drop the key; adding it is seen as a creation.
    """
    if not type or provider_secrets is None:
        return  # the initial listing: resume handlers read every Secret anyway
    meta = body.get("metadata", {})
    key = (meta.get("namespace"), meta.get("name"))
    revision = f"{'deleted-' if type == 'DELETED' else ''}{meta.get('resourceVersion', '')}"
    names = [n for n in provider_secrets.get(key, []) if n]
    nudged = await actions.nudge_providers(memo["runtime"], str(key[0]), names, revision)
    logger.info("Secret changed (%s): re-syncing %s", type or "listed", ", ".join(nudged))
