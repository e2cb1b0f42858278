"""The OpenAPI 3.1 document of every route, and the Swagger UI that shows it.

`build_document(operations, version=...)` turns the `Operation`s the routers recorded
into the document; its schemas come from the pydantic models and answer TypedDicts.
`router` serves it under `/api/docs`: the page (Swagger UI, local assets only), the
document as JSON (built once per app from `app[OPERATIONS]`) and the UI's assets.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.resources
import weakref
from collections.abc import Sequence
from http import HTTPStatus
from importlib.resources.abc import Traversable
from typing import Any

from aiohttp import web
from pydantic import TypeAdapter
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaMode

import flovyn_server
from flovyn_server.api.common import credential_for
from flovyn_server.api.routing import EVENT_STREAM, PATH_PARAMS, Operation, Router
from flovyn_server.jsonio import dumps_bytes
from flovyn_server.models.common import ErrorBody, OpenApiDocument

REF = "#/components/schemas/{model}"
JSON = "application/json"
OPERATIONS: web.AppKey[list[Operation]] = web.AppKey("operations", list)

DESCRIPTION = """\
Flovyn runs durable workflows. This is its whole HTTP API: the REST API that clients and
operators use (tenants, workflow executions, their control, discovery of workers and
definitions) and the worker protocol that the SDK's workers speak.

## Authentication
Send `Authorization: Bearer <credential>`. There are three kinds of credential:

- **Tenant API key** (`flovyn_sk_...`): the REST routes of its own tenant, under
  `/api/tenants/{slug}/`. Created with `POST /api/tenants/{slug}/api-keys`.
- **Worker token** (`fwt_...`): only the worker protocol, under `/api/tenants/{slug}/worker/`.
  Created with `POST /api/tenants/{slug}/worker-tokens`.
- **Admin key**: creates tenants (`POST /api/tenants`) and reaches the REST routes of every
  tenant, but not the worker protocol. Set it with `FLOVYN_ADMIN_KEY`; otherwise the server
  generates one at first start and writes it to `admin.key` in its data directory.

`/_/health`, `/_/metrics` and `/api/docs` need no credential. A missing or unknown
credential answers 401; a credential that does not reach the route answers 403.

## Errors
Every 4xx and 5xx answer has one JSON shape, `{"error": "<message>", "code": "<CODE>",
"details": {...}}` (`details` is optional; for bad input it lists every problem under
`details.errors`). Bad input answers 400 before anything changes: malformed JSON, a field
of the wrong type or out of its bounds, a bad path or query parameter.

- Text fields refuse the NUL character (`\\u0000`) with 400, on every route and both stores.
  (JSON values such as `input` may hold `\\u0000` inside their strings.)
- A request body is at most 1 MiB by default (`FLOVYN_MAX_BODY_BYTES`); a larger one answers
  413.

## Paging
List routes take `limit` and `offset` query parameters and answer with `total`, `limit`
and `offset` beside the items. Each route documents its default and maximum `limit`.
"""

TAGS = {
    "Health": "Liveness and Prometheus metrics, without credentials.",
    "Docs": "This document and the Swagger UI that shows it.",
    "Tenants": "Tenants and their credentials: API keys and worker tokens.",
    "Workflows": "Trigger workflow executions and read them: lists, history, tasks, logs.",
    "Tasks": "Standalone tasks: a task with no workflow, run and retried by any worker of its kind.",
    "Schedules": "Start workflows or standalone tasks by cron, at an interval, or once.",
    "Webhooks": (
        "Receive providers' deliveries (GitHub, Stripe, Shopify, Slack, any HMAC), verified by "
        "each webhook's own scheme, and start workflows, tasks or resolve promises from them."
    ),
    "Control": "Act on running executions: cancel, retry, signal, resolve and reject promises.",
    "Discovery": "The workers connected to a tenant and the workflow and task kinds they offer.",
    "Worker protocol": (
        "The HTTP protocol the SDK's workers speak: register, poll for work, submit results, "
        "heartbeat. Authenticated by worker tokens (`fwt_...`); you rarely call it by hand."
    ),
}

SECURITY_SCHEMES = {
    "apiKey": {
        "type": "http",
        "scheme": "bearer",
        "description": "A tenant API key (`flovyn_sk_...`) for that tenant's REST routes.",
    },
    "workerToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "A worker token (`fwt_...`) for the worker protocol of its tenant.",
    },
    "adminKey": {
        "type": "http",
        "scheme": "bearer",
        "description": "The server's admin key (`FLOVYN_ADMIN_KEY` or `<data dir>/admin.key`).",
    },
}

ERRORS = {
    400: "Bad input: malformed JSON, a field of the wrong type or out of bounds, a NUL "
    "character in a text field, or a bad path or query parameter.",
    401: "No credential, or an unknown or revoked one.",
    403: "The credential does not reach this route or tenant.",
    404: "What the path names does not exist (in this tenant).",
    409: "The request conflicts with the current state.",
    413: "The body is larger than the server's limit (1 MiB by default).",
}


class _Generator(GenerateJsonSchema):
    """Pydantic's schemas without the titles it makes of field names ("Priorityseconds"):
    the property names say it better."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False


def _schema(kind: Any, mode: JsonSchemaMode) -> dict[str, Any]:
    return TypeAdapter(kind).json_schema(
        mode=mode, by_alias=True, ref_template=REF, schema_generator=_Generator
    )


class _Schemas:
    """`components/schemas`, filled one type at a time; one name means one schema."""

    def __init__(self) -> None:
        self.schemas: dict[str, Any] = {}
        self._owners: dict[str, Any] = {}

    def ref(self, kind: Any, mode: JsonSchemaMode) -> dict[str, Any]:
        """A reference to `kind` (a class), or its schema inline (`dict[str, Any]`...)."""
        schema = _schema(kind, mode)
        for name, sub in schema.pop("$defs", {}).items():
            self.add(name, sub, None)
        if not isinstance(kind, type) or "$ref" in schema:
            return schema
        self.add(kind.__name__, schema, kind)
        return {"$ref": REF.format(model=kind.__name__)}

    def add(self, name: str, schema: dict[str, Any], owner: Any) -> None:
        known = self.schemas.get(name)
        other = self._owners.get(name)
        if known is not None and (
            known != schema or (owner is not None and other is not None and other is not owner)
        ):
            raise ValueError(f"two different schemas are both named {name!r} in the document")
        self.schemas[name] = schema
        if owner is not None:
            self._owners[name] = owner


def _split_doc(doc: str) -> tuple[str, str]:
    """(summary, description): the docstring's first paragraph, and the rest."""
    first, _, rest = doc.strip().partition("\n\n")
    return " ".join(first.split()), rest.strip()


def _security(op: Operation) -> list[dict[str, list[str]]]:
    needed = credential_for(op.method, op.path)  # the auth middleware's own rule
    if needed == "worker":
        return [{"workerToken": []}]
    if needed == "admin":
        return [{"adminKey": []}]
    if needed == "api":
        return [{"apiKey": []}, {"adminKey": []}]
    return []


# What every stream takes beside its path: where to resume, and (for a browser's
# EventSource, which cannot send headers) the API key.
LAST_EVENT_ID = "^[0-9]{1,19}(-[0-9a-zA-Z_.-]{1,64})?$"  # a position, and for the feed an id
STREAM_PARAMS = [
    {
        "name": "Last-Event-ID",
        "in": "header",
        "required": False,
        "description": "Resume after this event id (the last one received).",
        "schema": {"type": "string", "pattern": LAST_EVENT_ID, "maxLength": 80},
    },
    {
        "name": "access_token",
        "in": "query",
        "required": False,
        "description": "The API key, when no Authorization header can be sent.",
        "schema": {"type": "string", "maxLength": 256},
    },
]


def _parameters(op: Operation, schemas: _Schemas) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = [dict(p) for p in STREAM_PARAMS] if op.is_stream else []
    for name in op.path_params:
        kind, description = PATH_PARAMS[name]
        params.append(
            {
                "name": name,
                "in": "path",
                "required": True,
                "description": description,
                "schema": schemas.ref(kind, "validation"),
            }
        )
    if op.query is None:
        return params
    model = _schema(op.query, "validation")
    for sub_name, sub in model.pop("$defs", {}).items():
        schemas.add(sub_name, sub, None)
    required = set(model.get("required", ()))
    # One parameter per property: pydantic names each by the alias its validation takes.
    for key, prop in model.get("properties", {}).items():
        schema = _not_null(prop)
        param: dict[str, Any] = {"name": key, "in": "query", "required": key in required}
        if description := schema.pop("description", None):
            param["description"] = description
        param["schema"] = schema
        params.append(param)
    return params


def _not_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter's schema without `null`: a parameter left out is the null."""
    schema = {k: v for k, v in schema.items() if k != "title"}
    variants = [v for v in schema.get("anyOf", ()) if v != {"type": "null"}]
    if "anyOf" in schema and len(variants) < len(schema["anyOf"]):
        del schema["anyOf"]
        if schema.get("default", 0) is None:
            del schema["default"]
        schema.update(variants[0] if len(variants) == 1 else {"anyOf": variants})
    return schema


def _request_body(op: Operation, schemas: _Schemas) -> dict[str, Any] | None:
    if op.body is None:
        return None
    media: dict[str, Any] = {"schema": schemas.ref(op.body, "validation")}
    if op.examples:
        media["examples"] = {
            name: value if _is_example_object(value) else {"value": value}
            for name, value in op.examples.items()
        }
    required = any(info.is_required() for info in op.body.model_fields.values())
    return {"required": required, "content": {JSON: media}}


def _is_example_object(value: Any) -> bool:
    keys = {"summary", "description", "value", "externalValue"}
    return isinstance(value, dict) and "value" in value and set(value) <= keys


def _responses(op: Operation, schemas: _Schemas) -> dict[str, Any]:
    summary, rest = _split_doc(op.doc)
    responses: dict[str, Any] = {}
    for status, kind in sorted(op.answers.items()):
        answer: dict[str, Any] = {"description": HTTPStatus(status).phrase}
        if status in (204, 304):
            pass
        elif op.content_type == EVENT_STREAM and status < 300 and kind not in (None, str):
            answer["description"] = rest or summary or answer["description"]
            payload = schemas.ref(kind, "serialization")
            answer["content"] = {EVENT_STREAM: {"schema": _event_schema(payload)}}
        elif op.content_type != JSON and status < 300:
            answer["description"] = rest or summary or answer["description"]
            media = op.content_type if isinstance(op.content_type, tuple) else (op.content_type,)
            answer["content"] = {m: {"schema": {"type": "string"}} for m in media}
        elif kind is not None:
            own_doc = getattr(kind, "__dict__", {}).get("__doc__")
            ours = getattr(kind, "__module__", "").startswith("flovyn_server.")
            if ours and isinstance(own_doc, str) and own_doc.strip():
                answer["description"] = _split_doc(own_doc)[0]
            answer["content"] = {JSON: {"schema": schemas.ref(kind, "serialization")}}
        responses[str(status)] = answer
    errors = set(op.errors)
    if op.body is not None or op.query is not None or op.path_params:
        errors.add(400)
    if _security(op):
        errors |= {401, 403}
    if op.path_params:
        errors.add(404)
    if op.body is not None:
        errors.add(413)
    for status in sorted(errors):
        responses.setdefault(str(status), {"$ref": f"#/components/responses/{_error_name(status)}"})
    return responses


def _event_schema(payload: dict[str, Any]) -> dict[str, Any]:
    """One Server-Sent Event of a stream whose `data:` is one JSON text of `payload`.

    OpenAPI 3.1 has the `schema` of `text/event-stream` describe each event (3.2 names
    it `itemSchema`), as an object of the event's fields: `event`, `id` and `data`,
    always strings; `contentMediaType` and `contentSchema` say what `data` holds.
    """
    return {
        "type": "object",
        "required": ["event", "id", "data"],
        "properties": {
            "event": {"type": "string", "description": "The event's name: its payload's `type`."},
            "id": {
                "type": "string",
                "description": "The event's id: send the last one seen as `Last-Event-ID` "
                "to resume after it.",
            },
            "data": {
                "type": "string",
                "description": "The payload: one JSON object.",
                "contentMediaType": JSON,
                "contentSchema": payload,
            },
        },
    }


def _error_name(status: int) -> str:
    return HTTPStatus(status).phrase.replace(" ", "").replace("-", "")


def _operation(op: Operation, schemas: _Schemas) -> dict[str, Any]:
    summary, rest = _split_doc(op.doc)
    out: dict[str, Any] = {"tags": [op.tag], "operationId": op.operation_id}
    out["summary"] = summary or op.operation_id.replace("_", " ")
    if rest:
        out["description"] = rest
    if params := _parameters(op, schemas):
        out["parameters"] = params
    if (body := _request_body(op, schemas)) is not None:
        out["requestBody"] = body
    out["responses"] = _responses(op, schemas)
    if security := _security(op):
        out["security"] = security
    return out


def build_document(operations: Sequence[Operation], *, version: str) -> dict[str, Any]:
    """The OpenAPI 3.1.0 document of `operations`, with every schema in its components."""
    schemas = _Schemas()
    paths: dict[str, dict[str, Any]] = {}
    ids: set[str] = set()
    error_statuses: set[int] = set()
    for op in operations:
        item = paths.setdefault(op.path, {})
        method = op.method.lower()
        if method in item:
            raise ValueError(f"{op.method} {op.path} is registered twice")
        if op.operation_id in ids:
            raise ValueError(f"operationId {op.operation_id!r} is used twice")
        ids.add(op.operation_id)
        item[method] = _operation(op, schemas)
        error_statuses |= {int(s) for s, r in item[method]["responses"].items() if "$ref" in r}
    error_ref = schemas.ref(ErrorBody, "serialization")
    seen = dict.fromkeys(op.tag for op in operations)
    tags = [t for t in TAGS if t in seen] + [t for t in seen if t not in TAGS]
    return {
        "openapi": "3.1.0",
        "info": {"title": "Flovyn API", "version": version, "description": DESCRIPTION},
        "servers": [{"url": "/"}],
        "tags": [{"name": t, **({"description": TAGS[t]} if t in TAGS else {})} for t in tags],
        "paths": paths,
        "components": {
            "schemas": dict(sorted(schemas.schemas.items())),
            "responses": {
                _error_name(status): {
                    "description": ERRORS.get(status, HTTPStatus(status).phrase),
                    "content": {JSON: {"schema": error_ref}},
                }
                for status in sorted(error_statuses)
            },
            "securitySchemes": SECURITY_SCHEMES,
        },
    }


# -- serving it --------------------------------------------------------------------------

router = Router("Docs")

_DOCUMENTS: weakref.WeakKeyDictionary[web.Application, bytes] = weakref.WeakKeyDictionary()

PAGE = """\
<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Flovyn API</title>
  <link rel="stylesheet" href="/api/docs/static/swagger-ui.css">
  <link rel="icon" type="image/png" href="/api/docs/static/favicon-32x32.png">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/api/docs/static/swagger-ui-bundle.js"></script>
  <script src="/api/docs/static/swagger-ui-standalone-preset.js"></script>
  <script>
    window.ui = SwaggerUIBundle({
      url: "/api/docs/openapi.json",
      dom_id: "#swagger-ui",
      deepLinking: true,
      persistAuthorization: true,
      validatorUrl: null,
      presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
      plugins: [SwaggerUIBundle.plugins.DownloadUrl],
      layout: "StandaloneLayout",
    });
  </script>
</body>
</html>
"""
# Nothing but this server: the page works offline and leaks no request elsewhere.
CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'"
)

ASSETS = {
    "swagger-ui.css": "text/css",
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui-standalone-preset.js": "text/javascript",
    "favicon-32x32.png": "image/png",
    "favicon-16x16.png": "image/png",
}
_ASSET_CACHE: dict[str, tuple[bytes, str]] = {}  # name -> (content, ETag)


def _swagger_ui() -> Traversable:
    """Swagger UI 5 (the first to read OpenAPI 3.1), as the swagger-ui-py package ships it."""
    return importlib.resources.files("swagger_ui") / "static"


@router.get("/api/docs", answers={200: str}, content_type="text/html")
async def docs_page(request: web.Request) -> web.Response:
    """The Swagger UI page: browse the API and try its routes.

    An HTML page that loads Swagger UI from this server only and shows
    `/api/docs/openapi.json`. Authorize once with a key; it is kept across reloads.
    """
    return web.Response(
        text=PAGE, content_type="text/html", headers={"Content-Security-Policy": CSP}
    )


@router.get("/api/docs/openapi.json", answers={200: OpenApiDocument})
async def openapi_document(request: web.Request) -> web.Response:
    """This OpenAPI 3.1 document."""
    app = request.app
    body = _DOCUMENTS.get(app)
    if body is None:
        operations = app.get(OPERATIONS)
        if operations is None:
            raise RuntimeError("create_app must set app[OPERATIONS] to every route's Operation")
        document = build_document(operations, version=flovyn_server.__version__)
        body = _DOCUMENTS[app] = dumps_bytes(document)
    return web.Response(body=body, content_type=JSON)


@router.get(
    "/api/docs/static/{asset}",
    answers={200: str, 304: None},
    content_type=tuple(sorted(set(ASSETS.values()))),
)
async def docs_asset(request: web.Request, asset: str) -> web.Response:
    """A Swagger UI asset (script, style sheet or icon) of the docs page.

    The file, cached by browsers for a day; 404 for any name the page does not use.
    """
    if asset not in ASSETS:
        raise web.HTTPNotFound(text=f"no asset {asset!r}")
    cached = _ASSET_CACHE.get(asset)
    if cached is None:
        content = await asyncio.to_thread((_swagger_ui() / asset).read_bytes)
        cached = _ASSET_CACHE[asset] = (content, hashlib.sha256(content).hexdigest()[:32])
    content, etag = cached
    headers = {"Cache-Control": "public, max-age=86400", "ETag": f'"{etag}"'}
    if request.headers.get("If-None-Match") == f'"{etag}"':
        return web.Response(status=304, headers=headers)
    return web.Response(body=content, content_type=ASSETS[asset], headers=headers)
