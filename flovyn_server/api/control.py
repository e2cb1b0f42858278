"""Acting on executions: cancel, retry, signal, and settling promises."""

from __future__ import annotations

from functools import partial

from aiohttp import web

from flovyn_server.api.common import body_action

routes = web.RouteTableDef()
P = "/api/tenants/{slug}"

E = P + "/workflow-executions/{id}"
routes.post(E + "/cancel")(body_action(lambda e: e.control.cancel))
routes.post(E + "/retry")(body_action(lambda e: e.control.retry))
routes.post(E + "/signal")(body_action(lambda e: e.control.signal))
routes.post(P + "/promises/{identifier}/resolve")(
    body_action(lambda e: partial(e.control.settle_promise, resolve=True), "identifier")
)
routes.post(P + "/promises/{identifier}/reject")(
    body_action(lambda e: partial(e.control.settle_promise, resolve=False), "identifier")
)
