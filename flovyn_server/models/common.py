"""Shapes every route shares: the error body and the paging parameters."""

from __future__ import annotations

from typing import Any, NotRequired

from pydantic import Field
from typing_extensions import TypedDict

from flovyn_server.models.fields import Query

MAX_OFFSET = 10**9


class ErrorBody(TypedDict):
    """Every 4xx and 5xx answer."""

    error: str
    code: str
    details: NotRequired[dict[str, Any]]


class Paging(Query):
    """`limit` (1..1000) and `offset`; lists answer with `total`, `limit` and `offset`."""

    limit: int = Field(50, ge=1, le=1000)
    offset: int = Field(0, ge=0, le=MAX_OFFSET)


class OpenApiDocument(TypedDict):
    """The OpenAPI 3.1 document of this server."""

    openapi: str
    info: dict[str, Any]
    paths: dict[str, Any]
    components: dict[str, Any]
