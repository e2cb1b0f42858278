"""The OpenAPI document covers every route, validates as 3.1, and the docs page is local."""

from __future__ import annotations

import json
import re
from typing import Any

from openapi_spec_validator import validate

from tests.integration.conftest import Flovyn

WORKER_PREFIX = "/api/tenants/{slug}/worker/"
METHODS = {"get", "post", "put", "patch", "delete"}


async def _document(f: Flovyn) -> dict[str, Any]:
    status, doc = await f.call("GET", "/api/docs/openapi.json", key="")  # no credential
    assert status == 200, (status, doc)
    assert isinstance(doc, dict)
    return doc


def _operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, op)
        for path, item in doc["paths"].items()
        for method, op in item.items()
        if method in METHODS
    ]


async def test_document_is_valid_openapi_31(flovyn: Flovyn) -> None:
    doc = await _document(flovyn)
    assert doc["openapi"] == "3.1.0"
    validate(doc)  # raises on any violation of the 3.1 specification
    assert doc["info"]["title"] == "Flovyn API"
    description = doc["info"]["description"]
    for needle in ("Authorization: Bearer", "NUL", "1 MiB", "413", "limit", "offset"):
        assert needle in description, needle
    # Served again from the cache: the same document.
    assert await _document(flovyn) == doc


async def test_every_route_is_documented(flovyn: Flovyn) -> None:
    doc = await _document(flovyn)
    assert flovyn.app is not None
    routes = set()
    for route in flovyn.app.router.routes():
        if route.method == "HEAD" or route.resource is None:
            continue
        routes.add((route.method, route.resource.canonical))
    documented = {(method, path) for method, path, _ in _operations(doc)}
    missing = sorted(routes - documented)
    assert not missing, f"routes missing from the OpenAPI document: {missing}"
    phantom = sorted(documented - routes)
    assert not phantom, f"documented operations with no route: {phantom}"


async def test_every_operation_is_described(flovyn: Flovyn) -> None:
    doc = await _document(flovyn)
    ids = [op.get("operationId") for _, _, op in _operations(doc)]
    assert all(ids) and len(ids) == len(set(ids)), ids
    problems: list[str] = []
    for method, path, op in _operations(doc):
        where = f"{method} {path}"
        responses = op["responses"]
        if not op.get("summary"):
            problems.append(f"{where}: no summary")
        if not any(s.startswith("2") for s in responses):
            problems.append(f"{where}: no 2xx response")
        params = op.get("parameters", [])
        expected = set()
        if "requestBody" in op:
            expected |= {"400", "413"}
        if params:
            expected.add("400")
        if any(p["in"] == "path" for p in params):
            expected.add("404")
        if op.get("security"):
            expected |= {"401", "403"}
        if missing := sorted(expected - set(responses)):
            problems.append(f"{where}: no error responses {missing}")
        for param in params:
            if param["in"] == "path":
                assert param["required"] is True and "{" + param["name"] + "}" in path, where
            assert "schema" in param, where
    assert not problems, "\n".join(problems)
    for response in doc["components"]["responses"].values():
        schema = response["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/ErrorBody"}


async def test_security_tags_and_enums(flovyn: Flovyn) -> None:
    doc = await _document(flovyn)
    schemes = doc["components"]["securitySchemes"]
    assert set(schemes) == {"apiKey", "workerToken", "adminKey"}
    for scheme in schemes.values():
        assert scheme["type"] == "http" and scheme["scheme"] == "bearer"
        assert scheme["description"]
    tags = {t["name"]: t.get("description", "") for t in doc["tags"]}
    assert "worker token" in tags["Worker protocol"].lower()
    worker_ops = 0
    for method, path, op in _operations(doc):
        assert set(op["tags"]) <= set(tags), (method, path)
        security = op.get("security", [])
        if path.startswith(WORKER_PREFIX):
            worker_ops += 1
            assert op["tags"] == ["Worker protocol"], (method, path)
            assert security == [{"workerToken": []}], (method, path)
        elif (method.upper(), path) in (
            ("POST", "/api/tenants"),
            ("PATCH", "/api/tenants/{slug}"),
        ):
            assert security == [{"adminKey": []}]
        elif path.startswith("/api/tenants"):
            assert {"apiKey": []} in security and {"adminKey": []} in security, (method, path)
        else:
            assert not security, (method, path)  # health, metrics, docs
    assert worker_ops > 0
    schemas = doc["components"]["schemas"]
    assert "CANCELLING" in schemas["WorkflowStatus"]["enum"]
    assert {"error", "code"} <= set(schemas["ErrorBody"]["required"])
    listing = doc["paths"]["/api/tenants/{slug}/workflow-executions"]["get"]
    names = {p["name"] for p in listing["parameters"] if p["in"] == "query"}
    assert {"limit", "offset", "status"} <= names, names


async def test_docs_page_loads_local_assets_only(flovyn: Flovyn) -> None:
    async with flovyn.session.get(flovyn.url + "/api/docs") as resp:
        assert resp.status == 200
        assert resp.content_type == "text/html"
        html = await resp.text()
    assert "http://" not in html and "https://" not in html
    assert "/api/docs/openapi.json" in html
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert {
        "/api/docs/static/swagger-ui.css",
        "/api/docs/static/swagger-ui-bundle.js",
        "/api/docs/static/swagger-ui-standalone-preset.js",
    } <= set(assets)
    for asset in assets:
        assert asset.startswith("/api/docs/static/"), asset
        async with flovyn.session.get(flovyn.url + asset) as resp:
            assert resp.status == 200, asset
            assert len(await resp.read()) > 0, asset
            assert "max-age" in resp.headers.get("Cache-Control", ""), asset
            kind = resp.content_type
            etag = resp.headers["ETag"]
        expected = {"css": "text/css", "js": "text/javascript", "png": "image/png"}
        assert kind == expected[asset.rsplit(".", 1)[1]], (asset, kind)
        async with flovyn.session.get(flovyn.url + asset, headers={"If-None-Match": etag}) as resp:
            assert resp.status == 304, asset
    # Only the page's own assets: nothing else of the package, no way out of its folder.
    for name in ("index.html", "swagger-ui.js.map", "nope.js", "..%2F__init__.py"):
        status, body = await flovyn.call("GET", f"/api/docs/static/{name}", key="")
        assert status in (400, 404), (name, status)
        assert isinstance(body, dict) and {"error", "code"} <= set(body), (name, body)


def test_examples_are_valid_requests() -> None:
    """Every example body in the document is one the server takes (no drift)."""
    from flovyn_server.api import control, discovery, health, openapi, tenants, worker, workflows

    checked = 0
    for module in (worker, health, tenants, workflows, control, discovery, openapi):
        for op in module.router.operations:
            for name, example in op.examples.items():
                assert op.body is not None, (op.operation_id, name)
                op.body.model_validate_json(json.dumps(example))
                checked += 1
    assert checked >= 8
