"""Routes declared once: the handler, its models and its answers.

`Router.get/post(path, answers=...)` registers a named handler with aiohttp and
records an `Operation` that the OpenAPI document is built from. The handler's own
signature names what it takes, and the wrapper parses it before the call:

    async def trigger(request: web.Request, kind: str, body: TriggerWorkflow) -> web.Response

- `body`: the JSON body, parsed with that pydantic model (an empty body is `{}`);
- `query`: the query string, parsed with that model;
- any other parameter: the path variable of that name, checked by `PATH_PARAMS`.

Bad input raises pydantic's ValidationError or `InvalidInput`; the error middleware
answers 400 for both, before the engine sees anything.
"""

from __future__ import annotations

import functools
import inspect
import re
import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

import orjson
from aiohttp import web
from pydantic import AliasChoices, BaseModel, StringConstraints, TypeAdapter, ValidationError

from flovyn_server.api.errors import invalid
from flovyn_server.domain import InvalidInput
from flovyn_server.models.fields import Name, Slug, Uuid, text

Handler = Callable[..., Awaitable[web.StreamResponse]]

# Every path variable, with its type: one meaning per name on every route.
PATH_PARAMS: dict[str, tuple[Any, str]] = {
    "slug": (Slug, "The tenant's slug."),
    "id": (Uuid, "The workflow execution's id."),
    "taskId": (Uuid, "The task execution's id."),
    "scheduleId": (Uuid, "The schedule's id."),
    "webhookId": (Uuid, "The webhook's id."),
    "webhookSlug": (Slug, "The webhook's slug, the last part of its URL."),
    "workerId": (Uuid, "The worker's id, as its registration answered."),
    "kind": (Name, "The workflow or task kind."),
    "identifier": (
        Annotated[str, text(1024, min_length=1)],
        "The promise: its UUID, `key:<idempotencyKey>`, or `<workflowExecutionId>:<promiseName>`.",
    ),
    "asset": (
        Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]{1,100}$")],
        "A Swagger UI asset file name.",
    ),
}
_PATH_ADAPTERS = {name: TypeAdapter(kind) for name, (kind, _) in PATH_PARAMS.items()}

EMPTY_BODY = b"{}"


EVENT_STREAM = "text/event-stream"


@dataclass(frozen=True)
class Operation:
    """One route as the OpenAPI document describes it."""

    method: str
    path: str
    handler: Handler
    tag: str
    body: type[BaseModel] | None
    query: type[BaseModel] | None
    path_params: tuple[str, ...]
    answers: dict[int, Any]  # status -> the answer's type (None: no body)
    errors: tuple[int, ...]  # statuses beyond those every route of its kind has
    content_type: str | tuple[str, ...] = "application/json"  # several: one of them
    examples: dict[str, Any] = field(default_factory=dict)

    @property
    def operation_id(self) -> str:
        return self.handler.__name__

    @property
    def is_stream(self) -> bool:
        """Whether it answers with a Server-Sent Event stream."""
        return self.content_type == EVENT_STREAM

    @property
    def doc(self) -> str:
        return inspect.getdoc(self.handler) or ""


# pydantic's JSON parser takes NaN, Infinity and numbers too large for a double (1e400)
# into JSON values such as `input`, which would then be stored as null. A body that may
# hold one is read again by orjson, which refuses them as the JSON standard does.
_NOT_JSON = re.compile(rb"NaN|Infinity|[eE][+]?[0-9]{3}")


async def parse_body(request: web.Request, model: type[BaseModel]) -> Any:
    """The body parsed with `model`; 400 on malformed JSON or a bad field."""
    raw = await request.read()
    parsed = model.model_validate_json(raw if raw.strip() else EMPTY_BODY)
    if _NOT_JSON.search(raw):
        try:
            orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise InvalidInput(f"request body is not valid JSON: {exc}") from None
    return parsed


def parse_query(request: web.Request, model: type[BaseModel]) -> Any:
    """The query string parsed with `model`; a list field takes every value given."""
    values: dict[str, Any] = {}
    for key, repeatable in _query_keys(model).items():
        if key in request.query:
            values[key] = request.query.getall(key) if repeatable else request.query[key]
    return model.model_validate(values)


@functools.cache
def _query_keys(model: type[BaseModel]) -> dict[str, bool]:
    """Each name a query model accepts (field name, alias, alias choices) -> repeatable."""
    keys: dict[str, bool] = {}
    for name, info in model.model_fields.items():
        repeatable = typing.get_origin(_unwrap(info.annotation)) is list
        names = [name, info.alias]
        if isinstance(info.validation_alias, AliasChoices):
            names += [c for c in info.validation_alias.choices if isinstance(c, str)]
        elif isinstance(info.validation_alias, str):
            names.append(info.validation_alias)
        keys.update({n: repeatable for n in names if n})
    return keys


def _unwrap(annotation: Any) -> Any:
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


def path_value(request: web.Request, name: str) -> Any:
    try:
        return _PATH_ADAPTERS[name].validate_python(request.match_info[name])
    except ValidationError as exc:
        raise invalid(exc, where=name) from None


class Router:
    """The routes of one module and their operations, under one OpenAPI tag."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.routes = web.RouteTableDef()
        self.operations: list[Operation] = []

    def get(self, path: str, **kw: Any) -> Callable[[Handler], Handler]:
        return self.route("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> Callable[[Handler], Handler]:
        return self.route("POST", path, **kw)

    def route(
        self,
        method: str,
        path: str,
        *,
        answers: dict[int, Any],
        errors: tuple[int, ...] = (),
        content_type: str | tuple[str, ...] = "application/json",
        examples: dict[str, Any] | None = None,
    ) -> Callable[[Handler], Handler]:
        def register(fn: Handler) -> Handler:
            hints = typing.get_type_hints(fn)
            params = [p for p in inspect.signature(fn).parameters if p != "request"]
            body = hints.get("body") if "body" in params else None
            query = hints.get("query") if "query" in params else None
            path_params = tuple(p for p in params if p not in ("body", "query"))
            for name in path_params:
                if name not in PATH_PARAMS or "{" + name + "}" not in path:
                    raise TypeError(f"{fn.__name__}: {name!r} is not a path variable of {path}")

            async def handler(request: web.Request) -> web.StreamResponse:
                kwargs: dict[str, Any] = {name: path_value(request, name) for name in path_params}
                if body is not None:
                    kwargs["body"] = await parse_body(request, body)
                if query is not None:
                    kwargs["query"] = parse_query(request, query)
                return await fn(request, **kwargs)

            handler.__name__ = fn.__name__
            handler.__doc__ = fn.__doc__
            self.routes.route(method, path)(handler)
            self.operations.append(
                Operation(
                    method=method,
                    path=path,
                    handler=fn,
                    tag=self.tag,
                    body=body,
                    query=query,
                    path_params=tuple(p.strip("{}") for p in path.split("/") if p.startswith("{")),
                    answers=answers,
                    errors=errors,
                    content_type=content_type,
                    examples=examples or {},
                )
            )
            return fn

        return register
