"""The REST calls on schedules and webhooks: one method per endpoint, typed answers
(see ``api_executions``). Bodies are the API's JSON (camelCase), as the OpenAPI
document describes them."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any, cast

from flovyn_server.models.schedules import RunList, Schedule, ScheduleList, Triggered
from flovyn_server.models.webhooks import EventPage, Webhook, WebhookList

from .api_executions import follow_cursor
from .transport import Transport, quote_segment


def schedule_path(schedule_id: str) -> str:
    return f"/schedules/{quote_segment(schedule_id)}"


def webhook_path(webhook_id: str) -> str:
    return f"/webhooks/{quote_segment(webhook_id)}"


class AutomationApi:
    _transport: Transport

    # -- schedules ----------------------------------------------------------------------

    async def create_schedule(self, body: dict[str, Any]) -> Schedule:
        """``POST .../schedules`` (409 when the name is taken)."""
        return cast(Schedule, await self._transport.request("POST", "/schedules", body))

    async def schedule_page(
        self, *, limit: int | None = None, cursor: str | None = None
    ) -> ScheduleList:
        """One page of ``GET .../schedules``, newest first."""
        params = {"limit": limit, "cursor": cursor}
        return cast(ScheduleList, await self._transport.request("GET", "/schedules", params=params))

    async def list_schedules(self, *, page_size: int = 100) -> AsyncGenerator[Schedule, None]:
        """Every schedule, by the cursor."""

        async def fetch(cursor: str | None) -> ScheduleList:
            return await self.schedule_page(limit=page_size, cursor=cursor)

        async for schedule in follow_cursor(fetch, "schedules"):
            yield schedule

    async def get_schedule(self, schedule_id: str) -> Schedule:
        return cast(Schedule, await self._transport.request("GET", schedule_path(schedule_id)))

    async def replace_schedule(self, schedule_id: str, body: dict[str, Any]) -> Schedule:
        """``PUT .../schedules/{id}``: the whole schedule; its next run computed again."""
        answer = await self._transport.request("PUT", schedule_path(schedule_id), body)
        return cast(Schedule, answer)

    async def delete_schedule(self, schedule_id: str) -> None:
        await self._transport.request("DELETE", schedule_path(schedule_id))

    async def enable_schedule(self, schedule_id: str, enabled: bool = True) -> Schedule:
        """``POST .../enable`` (the next run from now) or ``.../disable``."""
        verb = "enable" if enabled else "disable"
        answer = await self._transport.request("POST", f"{schedule_path(schedule_id)}/{verb}")
        return cast(Schedule, answer)

    async def trigger_schedule(self, schedule_id: str) -> Triggered:
        """``POST .../trigger``: run now; what it started."""
        answer = await self._transport.request("POST", f"{schedule_path(schedule_id)}/trigger")
        return cast(Triggered, answer)

    async def schedule_runs(
        self, schedule_id: str, *, limit: int | None = None, cursor: str | None = None
    ) -> RunList:
        """One page of ``GET .../schedules/{id}/runs``, newest first."""
        answer = await self._transport.request(
            "GET", f"{schedule_path(schedule_id)}/runs", params={"limit": limit, "cursor": cursor}
        )
        return cast(RunList, answer)

    # -- webhooks -----------------------------------------------------------------------

    async def create_webhook(self, body: dict[str, Any]) -> Webhook:
        """``POST .../webhooks`` (409 when the slug is taken); the answer has no secret."""
        return cast(Webhook, await self._transport.request("POST", "/webhooks", body))

    async def webhook_page(
        self, *, limit: int | None = None, cursor: str | None = None
    ) -> WebhookList:
        params = {"limit": limit, "cursor": cursor}
        return cast(WebhookList, await self._transport.request("GET", "/webhooks", params=params))

    async def get_webhook(self, webhook_id: str) -> Webhook:
        return cast(Webhook, await self._transport.request("GET", webhook_path(webhook_id)))

    async def replace_webhook(self, webhook_id: str, body: dict[str, Any]) -> Webhook:
        """``PUT .../webhooks/{id}``: the whole webhook, its secret included."""
        return cast(Webhook, await self._transport.request("PUT", webhook_path(webhook_id), body))

    async def delete_webhook(self, webhook_id: str) -> None:
        await self._transport.request("DELETE", webhook_path(webhook_id))

    async def webhook_events(
        self, webhook_id: str, *, limit: int | None = None, cursor: str | None = None
    ) -> EventPage:
        """One page of the deliveries received, newest first."""
        answer = await self._transport.request(
            "GET", f"{webhook_path(webhook_id)}/events", params={"limit": limit, "cursor": cursor}
        )
        return cast(EventPage, answer)
