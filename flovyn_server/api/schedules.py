"""Schedules over REST: create, list, read, replace, delete, enable, disable, trigger,
and the runs of each."""

from __future__ import annotations

from aiohttp import web

from flovyn_server.api.common import P, engine, json, tenant
from flovyn_server.api.routing import Router
from flovyn_server.models.schedules import (
    ListRuns,
    ListSchedules,
    RunList,
    Schedule,
    ScheduleBody,
    ScheduleList,
    Triggered,
)

router = Router("Schedules")
S = P + "/schedules/{scheduleId}"
EXAMPLE = {
    "name": "nightly-report",
    "scheduleType": {"type": "cron", "cron": "0 2 * * *", "timezone": "Europe/Berlin"},
    "target": {"type": "workflow", "workflowKind": "report", "input": {"scope": "daily"}},
}


@router.post(P + "/schedules", answers={201: Schedule}, errors=(409,), examples={"cron": EXAMPLE})
async def create_schedule(request: web.Request, body: ScheduleBody) -> web.Response:
    """Create a schedule: cron (5 or 6 fields, an IANA timezone), an interval, or once;
    it starts a workflow or a standalone task. 409 when the name is taken."""
    return json(await engine(request).schedules.create(tenant(request), body), 201)


@router.get(P + "/schedules", answers={200: ScheduleList})
async def list_schedules(request: web.Request, query: ListSchedules) -> web.Response:
    """The tenant's schedules, newest first, paged."""
    return json(await engine(request).schedules.list(tenant(request), query))


@router.get(S, answers={200: Schedule})
async def get_schedule(request: web.Request, scheduleId: str) -> web.Response:
    """One schedule, with its next and last run."""
    return json(await engine(request).schedules.get(tenant(request), scheduleId))


@router.route("PUT", S, answers={200: Schedule}, errors=(409,), examples={"cron": EXAMPLE})
async def replace_schedule(
    request: web.Request, scheduleId: str, body: ScheduleBody
) -> web.Response:
    """Replace a schedule; its next run is computed again from now."""
    return json(await engine(request).schedules.replace(tenant(request), scheduleId, body))


@router.route("DELETE", S, answers={204: None})
async def delete_schedule(request: web.Request, scheduleId: str) -> web.Response:
    """Delete a schedule and its runs (what it started stays)."""
    await engine(request).schedules.delete(tenant(request), scheduleId)
    return web.Response(status=204)


@router.post(S + "/enable", answers={200: Schedule})
async def enable_schedule(request: web.Request, scheduleId: str) -> web.Response:
    """Enable it; its next run is computed from now."""
    return json(await engine(request).schedules.enable(tenant(request), scheduleId, True))


@router.post(S + "/disable", answers={200: Schedule})
async def disable_schedule(request: web.Request, scheduleId: str) -> web.Response:
    """Disable it: no run until it is enabled again."""
    return json(await engine(request).schedules.enable(tenant(request), scheduleId, False))


@router.post(S + "/trigger", answers={200: Triggered})
async def trigger_schedule(request: web.Request, scheduleId: str) -> web.Response:
    """Run it now (whatever its slots and overlap policy) and answer what it started."""
    return json(await engine(request).schedules.trigger(tenant(request), scheduleId))


@router.get(S + "/runs", answers={200: RunList})
async def list_schedule_runs(
    request: web.Request, scheduleId: str, query: ListRuns
) -> web.Response:
    """Every run: started (with what it started), skipped (overlap, missed slots) or
    failed; newest first, paged."""
    return json(await engine(request).schedules.runs(tenant(request), scheduleId, query))
