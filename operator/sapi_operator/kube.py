"""The operator's thin I/O layer to the Kubernetes API, beyond what Kopf does itself.

Kopf watches, patches its own objects and serialises handlers per object; this client
only reads Secrets, lists resources for the drift check, nudges an AIProvider when its
Secret changes, and writes usage figures into `.status`. It speaks plain HTTP through
aiohttp (Kopf's own transport) with the credentials Kopf's own login helpers find: the
pod's service account, else the kubeconfig. No generated client library: importing
kubernetes_asyncio alone cost ~3 s of CPU per operator start.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import ssl
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlencode

import aiohttp
import kopf

from app.settings import Settings
from sapi_operator.credentials import (
    ERROR,
    FORBIDDEN,
    FOUND,
    MISSING,
    NOT_OPTED_IN,
    OPT_IN_SELECTOR,
    SecretRead,
)
from sapi_operator.resources import GROUP, VERSION, Kind

log = logging.getLogger("sapi_operator.kube")
MERGE_PATCH: Final = "application/merge-patch+json"
#: Server-side apply (JSON is YAML): Kubernetes docs, "Server-Side Apply".
APPLY_PATCH: Final = "application/apply-patch+yaml"
#: The field manager of what the operator applies (its CRDs).
FIELD_MANAGER: Final = "structured-api-operator"
#: An object as the apiserver's PartialObjectMetadata (meta.k8s.io/v1): for a Secret, its
#: name and labels without its data.
PARTIAL_METADATA: Final = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"


class KubeError(Exception):
    """The Kubernetes API refused or failed a call the operator needed."""


class LeaseConflict(Exception):
    """The Lease changed since it was read (HTTP 409): another candidate wrote first."""


class _Status(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"HTTP {status} {reason}")
        self.status = status


def _pem(data: str | bytes) -> bytes:
    raw = data.encode() if isinstance(data, str) else data
    return raw if raw.lstrip().startswith(b"-----") else base64.b64decode(raw)


def _ssl_context(info: kopf.ConnectionInfo, scratch: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(
        cafile=str(info.ca_path) if info.ca_path else None,
        cadata=_pem(info.ca_data).decode() if info.ca_data else None,
    )
    if info.insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    cert, key = info.certificate_path, info.private_key_path
    if info.certificate_data and info.private_key_data:
        # ssl loads client certificates from files only (as Kopf's own client does).
        cert, key = scratch / "client.crt", scratch / "client.key"
        cert.write_bytes(_pem(info.certificate_data))
        key.write_bytes(_pem(info.private_key_data))
        key.chmod(0o600)
    if cert and key:
        context.load_cert_chain(str(cert), str(key))
    return context


def _login() -> kopf.ConnectionInfo:
    settings = kopf.OperatorSettings()
    info = kopf.login_with_service_account(settings=settings) or kopf.login_with_kubeconfig(
        settings=settings
    )
    if info is None:
        raise KubeError("no Kubernetes credentials: no service account and no kubeconfig")
    return info


class Kube:
    """Async calls to the apiserver with a per-call timeout."""

    def __init__(self, timeout: float) -> None:
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self._scratch = tempfile.TemporaryDirectory(prefix="sapi-operator-")
        self._session: aiohttp.ClientSession | None = None
        self._server = ""
        self._lock = asyncio.Lock()

    @classmethod
    async def connect(cls, settings: Settings) -> Kube:
        """A client logged in like Kopf: service account first, else the kubeconfig."""
        kube = cls(settings.operator_request_timeout)
        await kube._relogin()
        return kube

    async def _relogin(self) -> None:
        # Service-account tokens are rotated by the kubelet: re-read them on a 401.
        info = _login()
        headers = {"Accept": "application/json"}
        if info.token:
            headers["Authorization"] = f"{info.scheme or 'Bearer'} {info.token}"
        auth = aiohttp.BasicAuth(info.username, info.password or "") if info.username else None
        connector = aiohttp.TCPConnector(ssl=_ssl_context(info, Path(self._scratch.name)))
        old, self._session = (
            self._session,
            aiohttp.ClientSession(
                connector=connector, headers=headers, auth=auth, timeout=self.timeout
            ),
        )
        self._server = str(info.server).rstrip("/")
        if old is not None:
            await old.close()

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()
        self._scratch.cleanup()

    async def _call(
        self, method: str, path: str, body: Any = None, accept: str = "", content_type: str = ""
    ) -> Any:
        for attempt in (1, 2):
            assert self._session is not None
            patch_type = content_type or MERGE_PATCH
            headers = {"Content-Type": patch_type} if method == "PATCH" else {}
            if accept:
                headers["Accept"] = accept
            async with self._session.request(
                method, self._server + path, json=body, headers=headers
            ) as resp:
                if resp.status == 401 and attempt == 1:
                    async with self._lock:
                        await self._relogin()
                    continue
                if resp.status >= 400:
                    raise _Status(resp.status, resp.reason or "")
                return await resp.json()
        raise AssertionError("unreachable")

    async def read_secret(self, namespace: str, name: str) -> SecretRead:
        """An opted-in Secret's data, or why there is none (never raises for 403/404).

        The apiserver applies the opt-in label (a list by name and label): the data of a
        Secret without it never reaches this process. Only when nothing matched is the
        Secret's metadata (no data) read, to tell "absent" from "not opted in".
        """
        base = f"/api/v1/namespaces/{namespace}/secrets"
        query = urlencode(
            {"fieldSelector": f"metadata.name={name}", "labelSelector": OPT_IN_SELECTOR}
        )
        try:
            found = await self._call("GET", f"{base}?{query}")
            for secret in found.get("items") or []:
                return SecretRead(FOUND, data=dict(secret.get("data") or {}))
            await self._call("GET", f"{base}/{name}", accept=PARTIAL_METADATA)
        except _Status as exc:
            if exc.status == 404:
                return SecretRead(MISSING)
            if exc.status == 403:
                return SecretRead(FORBIDDEN)
            return SecretRead(ERROR, detail=str(exc))
        except (aiohttp.ClientError, TimeoutError) as exc:
            return SecretRead(ERROR, detail=type(exc).__name__)
        return SecretRead(NOT_OPTED_IN)

    def _path(self, resource: Kind, namespace: str | None = None, name: str = "") -> str:
        scope = f"/namespaces/{namespace}" if namespace else ""
        suffix = f"/{name}" if name else ""
        return f"/apis/{GROUP}/{VERSION}{scope}/{resource.plural}{suffix}"

    async def list_objects(self, resource: Kind, namespaces: Iterable[str]) -> list[dict[str, Any]]:
        """Every object of `resource` in `namespaces` (all namespaces when empty)."""
        items: list[dict[str, Any]] = []
        try:
            scopes: list[str | None] = [*namespaces] or [None]
            for namespace in scopes:
                found = await self._call("GET", self._path(resource, namespace))
                items.extend(found.get("items", []))
        except (_Status, aiohttp.ClientError, TimeoutError) as exc:
            raise KubeError(f"list {resource.plural}: {_describe(exc)}") from exc
        return items

    async def get_object(self, resource: Kind, namespace: str, name: str) -> dict[str, Any] | None:
        """One object, or None if it is gone."""
        try:
            found: dict[str, Any] = await self._call("GET", self._path(resource, namespace, name))
        except _Status as exc:
            if exc.status == 404:
                return None
            raise KubeError(f"get {resource.plural}/{name}: {exc}") from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise KubeError(f"get {resource.plural}/{name}: {_describe(exc)}") from exc
        return found

    async def annotate(
        self, resource: Kind, namespace: str, name: str, annotations: dict[str, str]
    ) -> None:
        """Merge `annotations` into an object's metadata (404 ignored: it is gone)."""
        await self._patch(
            self._path(resource, namespace, name), {"metadata": {"annotations": annotations}}
        )

    async def patch_status(
        self, resource: Kind, namespace: str, name: str, status: dict[str, Any]
    ) -> None:
        """Merge `status` into the status subresource (404 ignored)."""
        await self._patch(self._path(resource, namespace, name) + "/status", {"status": status})

    async def _patch(self, path: str, body: dict[str, Any]) -> None:
        try:
            await self._call("PATCH", path, body)
        except _Status as exc:
            if exc.status != 404:
                raise KubeError(f"patch {path}: {exc}") from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise KubeError(f"patch {path}: {_describe(exc)}") from exc

    # -- the leader-election Lease (sapi_operator/election.py) ---------------------------------

    @staticmethod
    def _lease_path(namespace: str, name: str = "") -> str:
        suffix = f"/{name}" if name else ""
        return f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases{suffix}"

    async def get_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The Lease, or None if it does not exist."""
        try:
            found: dict[str, Any] = await self._call("GET", self._lease_path(namespace, name))
        except _Status as exc:
            if exc.status == 404:
                return None
            raise KubeError(f"get lease {namespace}/{name}: {exc}") from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise KubeError(f"get lease {namespace}/{name}: {_describe(exc)}") from exc
        return found

    async def create_lease(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        """Create the Lease; `LeaseConflict` if another candidate created it first."""
        return await self._write_lease("POST", self._lease_path(namespace), body)

    async def replace_lease(
        self, namespace: str, name: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        """PUT the Lease read earlier (its resourceVersion makes the write conditional)."""
        return await self._write_lease("PUT", self._lease_path(namespace, name), body)

    async def _write_lease(self, method: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            written: dict[str, Any] = await self._call(method, path, body)
        except _Status as exc:
            if exc.status == 409:
                raise LeaseConflict(path) from exc
            raise KubeError(f"{method} {path}: {exc}") from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise KubeError(f"{method} {path}: {_describe(exc)}") from exc
        return written

    # -- the operator's own CRDs (handlers.start) -----------------------------------------------

    async def apply_crd(self, manifest: dict[str, Any]) -> None:
        """Server-side apply one CRD as the operator's field manager, taking over its fields."""
        name = manifest["metadata"]["name"]
        query = urlencode({"fieldManager": FIELD_MANAGER, "force": "true"})
        path = f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}?{query}"
        try:
            await self._call("PATCH", path, manifest, content_type=APPLY_PATCH)
        except _Status as exc:
            raise KubeError(f"apply crd {name}: {exc}") from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise KubeError(f"apply crd {name}: {_describe(exc)}") from exc


def _describe(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, _Status) else type(exc).__name__
