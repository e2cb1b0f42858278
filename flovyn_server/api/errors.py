"""Domain errors, bad input and HTTP errors as the one error shape, with one status each."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from pydantic import ValidationError

from flovyn_server.api.common import MAX_BODY, json
from flovyn_server.domain import (
    Conflict,
    DomainError,
    Forbidden,
    InvalidInput,
    NotFound,
    Unauthenticated,
)
from flovyn_server.models.common import ErrorBody
from flovyn_server.models.fields import PATTERN_MESSAGES

log = logging.getLogger("flovyn_server.api")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

STATUS: dict[type[DomainError], int] = {
    InvalidInput: 400,
    Unauthenticated: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
}
_HTTP_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "CONFLICT",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
}
INTERNAL: ErrorBody = {"error": "internal server error (logged)", "code": "INTERNAL"}


def status_of(err: DomainError) -> int:
    for kind in type(err).__mro__:
        if kind in STATUS:
            return STATUS[kind]
    return 500


def error_body(err: DomainError) -> ErrorBody:
    body: ErrorBody = {"error": err.message, "code": err.code}
    if err.details:
        body["details"] = err.details
    return body


def invalid(exc: ValidationError, where: str = "") -> InvalidInput:
    """A pydantic error as 400: the first problem in words, all of them in `details`.

    `where` names what was checked when the error's own location is empty (a path
    parameter)."""
    problems: list[dict[str, Any]] = []
    for e in exc.errors(include_url=False):
        field = ".".join(str(part) for part in e["loc"]) or where
        message = e["msg"]
        pattern = e.get("ctx", {}).get("pattern")
        given = e.get("input")
        if isinstance(pattern, str):
            message = PATTERN_MESSAGES.get(pattern, message)
        elif given is None and e["type"].endswith("_type"):
            message = "must not be null: leave the field out for its default"
        if isinstance(given, str | int | float) and not isinstance(given, bool):
            shown = repr(given)
            message += f" (got {shown[:60]}{'...' if len(shown) > 60 else ''})"
        problems.append({"field": field, "message": message, "type": e["type"]})
    # (the context is left out of `details`: it may hold values that are not JSON)
    first = problems[0] if problems else {"field": "", "message": "invalid"}
    if first.get("type") == "json_invalid":
        reason = str(first["message"]).removeprefix("Invalid JSON: ")
        return InvalidInput(f"request body is not valid JSON: {reason}", {"errors": problems})
    prefix = f"{first['field']}: " if first["field"] else "request body: "
    more = len(problems) - 1
    suffix = f" (and {more} more: see details.errors)" if more else ""
    return InvalidInput(f"{prefix}{first['message']}{suffix}", {"errors": problems})


def answer(exc: BaseException) -> tuple[int, ErrorBody]:
    """The status and error body of a failed operation (also one of a batch)."""
    if isinstance(exc, ValidationError):
        exc = invalid(exc)
    if isinstance(exc, DomainError):
        return status_of(exc), error_body(exc)
    return 500, INTERNAL


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except (DomainError, ValidationError) as exc:
        status, body = answer(exc)
        return json(body, status)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        message = exc.text or exc.reason
        if exc.status == 413:
            message = f"request body is larger than the limit of {request.app[MAX_BODY]} bytes"
        elif exc.status == 404:
            message = f"no route for {request.method} {request.path}"
        elif exc.status == 405:
            message = f"{request.method} is not allowed on {request.path}"
        response = json(
            {"error": message, "code": _HTTP_CODES.get(exc.status, "HTTP_ERROR")}, exc.status
        )
        if "Allow" in exc.headers:  # 405 says which methods the path takes
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return json(INTERNAL, 500)


class QuietBadRequests(logging.Filter):
    """aiohttp logs a request it cannot parse (a URL over 8 KB, a bad header) at ERROR
    with a traceback, though it answers 400 itself: one WARNING line is enough."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError) and 400 <= (exc.code or 0) < 500:
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.msg, record.args = "refused a malformed HTTP request: %s", (exc.message,)
            record.exc_info = record.exc_text = None
        return True


def quiet_bad_requests() -> None:
    logger = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, QuietBadRequests) for f in logger.filters):
        logger.addFilter(QuietBadRequests())
