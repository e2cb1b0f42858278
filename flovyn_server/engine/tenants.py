"""Tenants, API keys and worker tokens. Keys are shown once and stored as SHA-256."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import uuid
from dataclasses import dataclass

from flovyn_server.domain import Conflict, InvalidInput, iso, not_found, now_ms
from flovyn_server.engine import shapes
from flovyn_server.models import fields
from flovyn_server.models.tenants import (
    ApiKeyAnswer,
    CreateCredential,
    CreateTenant,
    TenantAnswer,
    UpdateTenant,
    WorkerTokenAnswer,
)
from flovyn_server.store.base import Store

SLUG = re.compile(fields.SLUG)  # also checked by the models; the path slug comes raw
API_KEY_PREFIX = "flovyn_sk_"
WORKER_TOKEN_PREFIX = "fwt_"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class Principal:
    """Who is calling: the admin, or a tenant's API key or worker token."""

    role: str  # 'admin', 'api' or 'worker'
    tenant_id: str | None = None
    tenant_slug: str | None = None


@dataclass(frozen=True)
class Tenant:
    id: str
    slug: str


class Tenants:
    def __init__(self, store: Store, admin_key: str) -> None:
        self.store = store
        self._admin_hash = hash_key(admin_key)
        # Credentials are never deleted or changed, so a hit can be cached for good.
        self._principals: dict[str, Principal] = {}
        self._by_slug: dict[str, Tenant] = {}

    async def create(self, req: CreateTenant) -> TenantAnswer:
        name, slug = req.name.strip(), req.slug
        if not name:
            raise InvalidInput("name must not be blank", {"field": "name"})
        row = {
            "id": str(uuid.uuid4()),
            "name": name.strip(),
            "slug": slug,
            "tier": req.tier,
            "region": req.region,
            "created_at": now_ms(),
            "retention_seconds": req.retention_seconds,
        }
        async with self.store.transaction() as tx:
            inserted = await tx.execute(
                "INSERT INTO tenants (id, name, slug, tier, region, created_at, "
                "retention_seconds) VALUES ($1, $2, $3, $4, $5, $6, $7) "
                "ON CONFLICT (slug) DO NOTHING",
                *row.values(),
            )
        if not inserted:
            raise Conflict(f"tenant slug {slug!r} is taken", code="SLUG_TAKEN")
        return shapes.tenant(row)

    async def get(self, slug: str) -> TenantAnswer:
        if not SLUG.match(slug):
            raise not_found(f"tenant {slug!r}")
        async with self.store.read() as tx:
            row = await tx.fetchrow("SELECT * FROM tenants WHERE slug = $1", slug)
        if row is None:
            raise not_found(f"tenant {slug!r}")
        return shapes.tenant(row)

    async def update(self, slug: str, req: UpdateTenant) -> TenantAnswer:
        if not SLUG.match(slug):
            raise not_found(f"tenant {slug!r}")
        async with self.store.transaction() as tx:
            if "retention_seconds" in req.model_fields_set:
                await tx.execute(
                    "UPDATE tenants SET retention_seconds = $2 WHERE slug = $1",
                    slug,
                    req.retention_seconds,
                )
            row = await tx.fetchrow("SELECT * FROM tenants WHERE slug = $1", slug)
        if row is None:
            raise not_found(f"tenant {slug!r}")
        return shapes.tenant(row)

    async def resolve(self, slug: str) -> Tenant:
        """The tenant of a path slug; NotFound when unknown."""
        tenant = self._by_slug.get(slug)
        if tenant is None:
            if not SLUG.match(slug):
                raise not_found(f"tenant {slug!r}")
            async with self.store.read() as tx:
                row = await tx.fetchrow("SELECT id, slug FROM tenants WHERE slug = $1", slug)
            if row is None:
                raise not_found(f"tenant {slug!r}")
            tenant = self._by_slug[slug] = Tenant(row["id"], row["slug"])
        return tenant

    async def create_api_key(self, tenant: Tenant, req: CreateCredential) -> ApiKeyAnswer:
        cred_id, key, display, created = await self._create_credential(tenant, "api", req)
        return {"id": cred_id, "key": key, "displayName": display, "createdAt": created}

    async def create_worker_token(self, tenant: Tenant, req: CreateCredential) -> WorkerTokenAnswer:
        cred_id, token, display, created = await self._create_credential(tenant, "worker", req)
        return {"id": cred_id, "token": token, "displayName": display, "createdAt": created}

    async def _create_credential(
        self, tenant: Tenant, kind: str, req: CreateCredential
    ) -> tuple[str, str, str, str]:
        """(id, the key shown once, display name, createdAt) of a new credential."""
        display = req.display_name.strip()
        if not display:
            raise InvalidInput("displayName must not be blank", {"field": "displayName"})
        prefix = API_KEY_PREFIX if kind == "api" else WORKER_TOKEN_PREFIX
        key = prefix + secrets.token_urlsafe(32)
        cred_id, created = str(uuid.uuid4()), now_ms()
        async with self.store.transaction() as tx:
            await tx.execute(
                "INSERT INTO credentials (id, tenant_id, kind, display_name, key_hash, created_at) "
                "VALUES ($1, $2, $3, $4, $5, $6)",
                cred_id,
                tenant.id,
                kind,
                display,
                hash_key(key),
                created,
            )
        return cred_id, key, display, iso(created) or ""

    async def authenticate(self, key: str) -> Principal | None:
        digest = hash_key(key)
        if hmac.compare_digest(digest, self._admin_hash):
            return Principal("admin")
        principal = self._principals.get(digest)
        if principal is None:
            async with self.store.read() as tx:
                row = await tx.fetchrow(
                    "SELECT c.kind, t.id, t.slug FROM credentials c "
                    "JOIN tenants t ON t.id = c.tenant_id WHERE c.key_hash = $1",
                    digest,
                )
            if row is None:
                return None
            principal = Principal(row["kind"], row["id"], row["slug"])
            self._principals[digest] = principal
        return principal
