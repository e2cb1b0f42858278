"""Tenants, API keys and worker tokens. Keys are shown once and stored as SHA-256."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import uuid
from dataclasses import dataclass
from typing import Any

from flovyn_server.domain import ApiError, bad_request, iso, not_found, now_ms
from flovyn_server.engine import shapes
from flovyn_server.store.base import Store

SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")
TIERS = ("FREE", "PRO", "ENTERPRISE")
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

    async def create(self, body: dict[str, Any]) -> dict[str, Any]:
        name, slug = body.get("name"), body.get("slug")
        if not isinstance(name, str) or not name.strip():
            raise bad_request("name is required")
        if not isinstance(slug, str) or not SLUG.match(slug):
            raise bad_request("slug must match ^[a-z0-9][a-z0-9-]{1,62}$")
        tier = body.get("tier") or "FREE"
        if tier not in TIERS:
            raise bad_request(f"tier must be one of {', '.join(TIERS)}")
        region = body.get("region")
        if region is not None and not isinstance(region, str):
            raise bad_request("region must be a string")
        row = {
            "id": str(uuid.uuid4()),
            "name": name.strip(),
            "slug": slug,
            "tier": tier,
            "region": region,
            "created_at": now_ms(),
        }
        async with self.store.transaction() as tx:
            inserted = await tx.execute(
                "INSERT INTO tenants (id, name, slug, tier, region, created_at) "
                "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (slug) DO NOTHING",
                *row.values(),
            )
        if not inserted:
            raise ApiError(409, "SLUG_TAKEN", f"tenant slug {slug!r} is taken")
        return shapes.tenant(row)

    async def get(self, slug: str) -> dict[str, Any]:
        async with self.store.read() as tx:
            row = await tx.fetchrow("SELECT * FROM tenants WHERE slug = $1", slug)
        if row is None:
            raise not_found(f"tenant {slug!r}")
        return shapes.tenant(row)

    async def resolve(self, slug: str) -> Tenant:
        """The tenant of a path slug; 404 when unknown."""
        tenant = self._by_slug.get(slug)
        if tenant is None:
            async with self.store.read() as tx:
                row = await tx.fetchrow("SELECT id, slug FROM tenants WHERE slug = $1", slug)
            if row is None:
                raise not_found(f"tenant {slug!r}")
            tenant = self._by_slug[slug] = Tenant(row["id"], row["slug"])
        return tenant

    async def create_credential(
        self, tenant: Tenant, kind: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        display = body.get("displayName")
        if not isinstance(display, str) or not display.strip():
            raise bad_request("displayName is required")
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
                display.strip(),
                hash_key(key),
                created,
            )
        field = "key" if kind == "api" else "token"
        return {
            "id": cred_id,
            field: key,
            "displayName": display.strip(),
            "createdAt": iso(created),
        }

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
