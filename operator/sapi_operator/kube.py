"""The operator's thin I/O layer to the Kubernetes API, beyond what Kopf does itself.

Kopf watches, patches its own objects and serialises handlers per object; this client
only reads Secrets, lists resources for the drift check, nudges an AIProvider when its
Secret changes, and writes usage figures into `.status`. Credentials come from the pod's
service account, else from the kubeconfig (`KUBECONFIG`), as Kopf finds them too.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any, Final

from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.config.config_exception import ConfigException

from app.config import Settings
from sapi_operator.credentials import ERROR, FORBIDDEN, FOUND, MISSING, SecretRead
from sapi_operator.resources import GROUP, VERSION, Kind

log = logging.getLogger("sapi_operator.kube")
MERGE_PATCH: Final = "application/merge-patch+json"


class KubeError(Exception):
    """The Kubernetes API refused or failed a call the operator needed."""


class Kube:
    """Async calls to the apiserver with a per-call timeout."""

    def __init__(self, api: client.ApiClient, timeout: float) -> None:
        self.api = api
        self.timeout = timeout
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)

    @classmethod
    async def connect(cls, settings: Settings) -> Kube:
        """A client from the in-cluster service account, else from the kubeconfig."""
        configuration = client.Configuration()
        try:
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        except ConfigException:
            await config.load_kube_config(client_configuration=configuration)
        return cls(client.ApiClient(configuration), settings.operator_request_timeout)

    async def close(self) -> None:
        """Close the HTTP session."""
        await self.api.close()

    async def read_secret(self, namespace: str, name: str) -> SecretRead:
        """The Secret's data, or why it cannot be had (never raises for 403/404)."""
        try:
            secret = await self.core.read_namespaced_secret(
                name, namespace, _request_timeout=self.timeout
            )
        except ApiException as exc:
            if exc.status == 404:
                return SecretRead(MISSING)
            if exc.status == 403:
                return SecretRead(FORBIDDEN)
            return SecretRead(ERROR, detail=f"HTTP {exc.status}")
        except (OSError, TimeoutError) as exc:
            return SecretRead(ERROR, detail=type(exc).__name__)
        return SecretRead(FOUND, data=dict(secret.data or {}))

    async def list_objects(self, resource: Kind, namespaces: Iterable[str]) -> list[dict[str, Any]]:
        """Every object of `resource` in `namespaces` (all namespaces when empty)."""
        wanted = list(namespaces)
        try:
            if not wanted:
                found = await self.custom.list_cluster_custom_object(
                    GROUP, VERSION, resource.plural, _request_timeout=self.timeout
                )
                return list(found.get("items", []))
            items: list[dict[str, Any]] = []
            for namespace in wanted:
                found = await self.custom.list_namespaced_custom_object(
                    GROUP, VERSION, namespace, resource.plural, _request_timeout=self.timeout
                )
                items.extend(found.get("items", []))
            return items
        except (ApiException, OSError, TimeoutError) as exc:
            raise KubeError(f"list {resource.plural}: {_describe(exc)}") from exc

    async def get_object(self, resource: Kind, namespace: str, name: str) -> dict[str, Any] | None:
        """One object, or None if it is gone."""
        try:
            found: dict[str, Any] = await self.custom.get_namespaced_custom_object(
                GROUP, VERSION, namespace, resource.plural, name, _request_timeout=self.timeout
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise KubeError(f"get {resource.plural}/{name}: {_describe(exc)}") from exc
        except (OSError, TimeoutError) as exc:
            raise KubeError(f"get {resource.plural}/{name}: {_describe(exc)}") from exc
        return found

    async def annotate(
        self, resource: Kind, namespace: str, name: str, annotations: dict[str, str]
    ) -> None:
        """Merge `annotations` into an object's metadata (404 ignored: it is gone)."""
        body = {"metadata": {"annotations": annotations}}
        await self._patch(resource, namespace, name, body, status=False)

    async def patch_status(
        self, resource: Kind, namespace: str, name: str, status: dict[str, Any]
    ) -> None:
        """Merge `status` into the status subresource (404 ignored)."""
        await self._patch(resource, namespace, name, {"status": status}, status=True)

    async def _patch(
        self, resource: Kind, namespace: str, name: str, body: dict[str, Any], *, status: bool
    ) -> None:
        args = (GROUP, VERSION, namespace, resource.plural, name, body)
        options: dict[str, Any] = {
            "_content_type": MERGE_PATCH,
            "_request_timeout": self.timeout,
        }
        try:
            if status:
                await self.custom.patch_namespaced_custom_object_status(*args, **options)
            else:
                await self.custom.patch_namespaced_custom_object(*args, **options)
        except ApiException as exc:
            if exc.status != 404:
                raise KubeError(f"patch {resource.plural}/{name}: {_describe(exc)}") from exc
        except (OSError, TimeoutError) as exc:
            raise KubeError(f"patch {resource.plural}/{name}: {_describe(exc)}") from exc


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ApiException):
        return f"HTTP {exc.status} {exc.reason}"
    return type(exc).__name__
