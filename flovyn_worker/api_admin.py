"""The REST calls on tenants and credentials, workers and definitions, and promises:
one method per endpoint, typed answers (see ``api_executions``)."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any, cast

from flovyn_server.models.discovery import (
    Definition,
    DefinitionList,
    Health,
    WorkerDetail,
    WorkerInfo,
    WorkerList,
)
from flovyn_server.models.tenants import ApiKeyAnswer, TenantAnswer, WorkerTokenAnswer
from flovyn_server.models.workflows import PromiseAnswer

from .api_executions import follow_cursor
from .serde import to_jsonable
from .transport import Transport, quote_segment

_UNSET: Any = object()


def _tenant_path(slug: str) -> str:
    return f"/api/tenants/{quote_segment(slug)}"


class AdminApi:
    """Tenants and credentials: ``create_tenant`` and ``update_tenant`` need the
    server's admin key; the others also take the tenant's own API key."""

    _transport: Transport

    async def health(self) -> Health:
        """``GET /_/health``: no credentials needed."""
        return cast(Health, await self._transport.request("GET", "/_/health", root=True))

    async def create_tenant(
        self,
        name: str,
        slug: str,
        *,
        tier: str | None = None,
        region: str | None = None,
        retention_seconds: int | None = None,
    ) -> TenantAnswer:
        """``POST /api/tenants`` (admin key); 409 when the slug is taken."""
        body: dict[str, Any] = {"name": name, "slug": slug}
        for field, value in (
            ("tier", tier),
            ("region", region),
            ("retentionSeconds", retention_seconds),
        ):
            if value is not None:
                body[field] = value
        answer = await self._transport.request("POST", "/api/tenants", body, root=True)
        return cast(TenantAnswer, answer)

    async def get_tenant(self, slug: str | None = None) -> TenantAnswer:
        """``GET /api/tenants/{slug}``; the client's own tenant by default."""
        path = _tenant_path(slug) if slug else self._transport.prefix
        return cast(TenantAnswer, await self._transport.request("GET", path, root=True))

    async def update_tenant(
        self, slug: str, *, retention_seconds: int | None = _UNSET
    ) -> TenantAnswer:
        """``PATCH /api/tenants/{slug}`` (admin key): the settings given; a retention
        of None goes back to the server's default."""
        body = {} if retention_seconds is _UNSET else {"retentionSeconds": retention_seconds}
        answer = await self._transport.request("PATCH", _tenant_path(slug), body, root=True)
        return cast(TenantAnswer, answer)

    async def create_api_key(self, display_name: str, *, slug: str | None = None) -> ApiKeyAnswer:
        """``POST .../api-keys``: the key is in the answer this once."""
        path = (_tenant_path(slug) if slug else self._transport.prefix) + "/api-keys"
        answer = await self._transport.request(
            "POST", path, {"displayName": display_name}, root=True
        )
        return cast(ApiKeyAnswer, answer)

    async def create_worker_token(
        self, display_name: str, *, slug: str | None = None
    ) -> WorkerTokenAnswer:
        """``POST .../worker-tokens``: the token is in the answer this once."""
        path = (_tenant_path(slug) if slug else self._transport.prefix) + "/worker-tokens"
        answer = await self._transport.request(
            "POST", path, {"displayName": display_name}, root=True
        )
        return cast(WorkerTokenAnswer, answer)


class DiscoveryApi:
    """Workers, the workflow and task kinds they registered, and promises."""

    _transport: Transport

    async def worker_page(
        self,
        *,
        type: str | None = None,
        status: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
        offset: int | None = None,
    ) -> WorkerList:
        """One page of ``GET .../workers``."""
        params = {"type": type, "status": status, "limit": limit, "cursor": cursor}
        answer = await self._transport.request(
            "GET", "/workers", params=params | {"offset": offset}
        )
        return cast(WorkerList, answer)

    async def list_workers(
        self, *, type: str | None = None, status: str | None = None, page_size: int = 100
    ) -> AsyncGenerator[WorkerInfo, None]:
        """Every worker the filters match, by the list's cursor."""

        async def fetch(cursor: str | None) -> WorkerList:
            return await self.worker_page(type=type, status=status, limit=page_size, cursor=cursor)

        async for worker in follow_cursor(fetch, "workers"):
            yield worker

    async def get_worker(self, worker_id: str) -> WorkerDetail:
        """``GET .../workers/{id}``: the worker and the kinds it runs."""
        answer = await self._transport.request("GET", f"/workers/{quote_segment(worker_id)}")
        return cast(WorkerDetail, answer)

    async def workflow_definitions(self) -> DefinitionList:
        """``GET .../workflow-definitions``."""
        return cast(DefinitionList, await self._transport.request("GET", "/workflow-definitions"))

    async def workflow_definition(self, kind: str) -> Definition:
        """``GET .../workflow-definitions/{kind}``, with execution counts by status."""
        answer = await self._transport.request(
            "GET", f"/workflow-definitions/{quote_segment(kind)}"
        )
        return cast(Definition, answer)

    async def task_definitions(self) -> DefinitionList:
        """``GET .../task-definitions``."""
        return cast(DefinitionList, await self._transport.request("GET", "/task-definitions"))

    async def task_definition(self, kind: str) -> Definition:
        """``GET .../task-definitions/{kind}``."""
        answer = await self._transport.request("GET", f"/task-definitions/{quote_segment(kind)}")
        return cast(Definition, answer)

    async def resolve_promise(self, identifier: str, value: Any = None) -> PromiseAnswer:
        """Resolve a promise by id, ``key:<idempotencyKey>`` or ``<executionId>:<name>``."""
        answer = await self._transport.request(
            "POST",
            f"/promises/{quote_segment(identifier, safe=':')}/resolve",
            {"value": to_jsonable(value)},
        )
        return cast(PromiseAnswer, answer)

    async def reject_promise(self, identifier: str, error: Any) -> PromiseAnswer:
        """Reject a promise (same identifiers as ``resolve_promise``)."""
        answer = await self._transport.request(
            "POST",
            f"/promises/{quote_segment(identifier, safe=':')}/reject",
            {"error": to_jsonable(error)},
        )
        return cast(PromiseAnswer, answer)
