"""Webhooks over REST: where a provider's deliveries arrive, how they are verified,
and what each starts."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field
from typing_extensions import TypedDict

from flovyn_server.models.common import Paging
from flovyn_server.models.fields import Body, Id, Name, Queue, Slug, Time, text

Provider = Literal["github", "stripe", "shopify", "slack", "generic"]
Path = Annotated[str, text(256, min_length=1)]  # a dot path into the payload: `data.object.id`
Header = Annotated[str, Field(pattern=r"^[A-Za-z0-9-]{1,100}$")]


class Hmac(Body):
    type: Literal["hmac"]
    secret: Annotated[str, text(1024, min_length=8)] = Field(
        description="Kept to verify deliveries; never returned."
    )
    header_name: Header | None = Field(None, description="Default: the provider's header.")
    algorithm: Literal["sha256", "sha512", "sha1"] = "sha256"
    encoding: Literal["hex", "base64"] | None = Field(None, description="Default: the provider's.")
    prefix: Annotated[str, text(32)] | None = Field(
        None, description="Before the signature in the header (github: `sha256=`)."
    )


class NoVerification(Body):
    type: Literal["none"]


class RouteToWorkflow(Body):
    type: Literal["workflow"]
    workflow_kind: Name
    queue: Queue = "default"


class RouteToTask(Body):
    type: Literal["task"]
    task_kind: Name
    queue: Queue = "default"


class RouteToPromise(Body):
    type: Literal["promise"]
    promise_name_path: Path = Field(
        description="Where the payload names the promise: a promise id, `key:<key>`, or its "
        "name with `workflowIdPath`."
    )
    workflow_id_path: Path | None = None


class Route(Body):
    event_type_filter: Annotated[str, text(256, min_length=1)] = Field(
        examples=["pull_request*"], description="A glob on the provider's event type (`*` all)."
    )
    target: Annotated[RouteToWorkflow | RouteToTask | RouteToPromise, Field(discriminator="type")]
    idempotency_key_path: Path | None = Field(
        None, description="Where the payload holds a key; else the provider's delivery id."
    )


class WebhookBody(Body):
    name: Name
    slug: Slug = Field(description="The last part of its URL: /api/hooks/{tenant}/{slug}.")
    provider: Provider = "generic"
    verification: Annotated[Hmac | NoVerification, Field(discriminator="type")]
    routes: list[Route] = Field(default_factory=list, max_length=50)
    enabled: bool = True


class ListWebhooks(Paging):
    pass


class ListEvents(Paging):
    pass


class Webhook(TypedDict):
    id: Id
    name: str
    slug: str
    provider: Provider
    url: str
    verification: dict[str, object]  # without the secret
    routes: list[dict[str, object]]
    enabled: bool
    createdAt: Time
    updatedAt: Time


class WebhookList(TypedDict):
    webhooks: list[Webhook]
    total: int
    totalIsEstimate: bool
    limit: int
    offset: int
    nextCursor: str | None


class WebhookEvent(TypedDict):
    id: Id
    receivedAt: Time
    eventType: str
    idempotencyKey: str | None
    status: Literal["delivered", "unrouted", "failed", "duplicate"]
    targets: list[dict[str, str]]  # {type, id}: what it started or resolved
    error: str | None


class EventPage(TypedDict):
    events: list[WebhookEvent]
    total: int
    totalIsEstimate: bool
    limit: int
    offset: int
    nextCursor: str | None


class Accepted(TypedDict):
    eventId: Id
    duplicate: bool
