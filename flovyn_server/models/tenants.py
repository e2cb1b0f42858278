"""Tenants, API keys and worker tokens."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field
from typing_extensions import TypedDict

from flovyn_server.models.fields import Body, Id, Name, Slug, Time

Tier = Literal["FREE", "PRO", "ENTERPRISE"]


RetentionSeconds = Annotated[
    int | None,
    Field(
        ge=60,
        le=10 * 366 * 86400,
        description="How long finished executions are kept (seconds); null: the "
        "server's FLOVYN_EXECUTION_RETENTION_S, which keeps them forever unless set.",
    ),
]


class CreateTenant(Body):
    name: Name = Field(examples=["Acme"])
    slug: Slug = Field(examples=["acme"])
    tier: Tier = "FREE"
    region: Name | None = None
    retention_seconds: RetentionSeconds = None


class UpdateTenant(Body):
    """What `PATCH /api/tenants/{slug}` changes: only the fields sent."""

    retention_seconds: RetentionSeconds = Field(None, examples=[30 * 86400])


class CreateCredential(Body):
    display_name: Name = Field(examples=["ops"])


class TenantAnswer(TypedDict):
    id: Id
    name: str
    slug: str
    tier: Tier
    region: str | None
    retentionSeconds: int | None
    createdAt: Time


class ApiKeyAnswer(TypedDict):
    """A new API key: `key` is shown this once and stored hashed."""

    id: Id
    key: str
    displayName: str
    createdAt: Time


class WorkerTokenAnswer(TypedDict):
    """A new worker token: `token` is shown this once and stored hashed."""

    id: Id
    token: str
    displayName: str
    createdAt: Time
