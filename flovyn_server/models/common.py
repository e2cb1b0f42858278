"""Shapes every route shares: the error body and the paging parameters."""

from __future__ import annotations

from typing import Annotated, Any, NotRequired

from pydantic import Field
from typing_extensions import TypedDict

from flovyn_server.models.fields import Query

MAX_OFFSET = 10**9


class ErrorBody(TypedDict):
    """Every 4xx and 5xx answer."""

    error: Annotated[str, Field(description="What went wrong, for a person.")]
    code: Annotated[
        str,
        Field(
            description="What went wrong, for a program: BAD_REQUEST, UNAUTHORIZED, "
            "FORBIDDEN, NOT_FOUND, CONFLICT, METHOD_NOT_ALLOWED, PAYLOAD_TOO_LARGE, "
            "INTERNAL, or a specific conflict: SLUG_TAKEN, STALE_ACTIVATION, "
            "STALE_ATTEMPT, ID_CONFLICT, NOT_FAILED, WORKFLOW_TERMINAL."
        ),
    ]
    details: NotRequired[
        Annotated[
            dict[str, Any],
            Field(description="For bad input, `errors`: each problem with its `field`."),
        ]
    ]


CURSOR_DESCRIPTION = (
    "The `nextCursor` of the previous page: the rows after it, each row once even while "
    "new ones arrive. Not with `offset`."
)
Cursor = Annotated[str, Field(max_length=400, pattern=r"^[A-Za-z0-9_-]+$")]


class Paging(Query):
    """`limit` (1..1000), and `cursor` (the previous page's `nextCursor`) or `offset`
    (slow when deep); lists answer with `total` (exact up to 1,000, else an estimate
    and `totalIsEstimate`), `limit`, `offset` and `nextCursor` (null on the last page)."""

    limit: int = Field(50, ge=1, le=1000, description="Items per page.")
    offset: int = Field(0, ge=0, le=MAX_OFFSET, description="Items to skip (slow when deep).")
    cursor: Cursor | None = Field(None, description=CURSOR_DESCRIPTION)


class OpenApiDocument(TypedDict):
    """The OpenAPI 3.1 document of this server."""

    openapi: str
    info: dict[str, Any]
    paths: dict[str, Any]
    components: dict[str, Any]
