"""Results sent together: a worker's submits and task outcomes share requests.

Under load a worker reports many results at once, and each HTTP request costs both
sides more CPU than the result in it. The operations queued in one turn of the event
loop go out as one ``POST /worker/batch`` (up to 100 each, a few requests in flight);
each caller gets its own answer or ``FlovynApiError``, as if it had posted alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from .errors import FlovynApiError

Send = Callable[[dict[str, Any]], Awaitable[Any]]


class ResultBatcher:
    def __init__(self, send: Send, *, max_operations: int = 100, max_in_flight: int = 4) -> None:
        self._send = send
        self._max_operations = max_operations
        self._max_in_flight = max_in_flight
        self._queue: list[tuple[dict[str, Any], asyncio.Future[Any]]] = []
        self._in_flight = 0
        self._flushers: set[asyncio.Task[None]] = set()

    async def call(self, kind: str, target: str, body: dict[str, Any]) -> Any:
        """The answer to operation `kind` (submit, complete, fail) on `target`."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append(({"type": kind, "id": target, "body": body}, future))
        if self._in_flight < self._max_in_flight:
            self._in_flight += 1
            flusher = asyncio.create_task(self._flush())
            self._flushers.add(flusher)
            flusher.add_done_callback(self._flushers.discard)
        return await future

    async def _flush(self) -> None:
        try:
            await asyncio.sleep(0)  # let this turn's results join
            while self._queue:
                group = self._queue[: self._max_operations]
                del self._queue[: self._max_operations]
                await self._post(group)
        finally:
            self._in_flight -= 1

    async def _post(self, group: list[tuple[dict[str, Any], asyncio.Future[Any]]]) -> None:
        try:
            answer = await self._send({"operations": [op for op, _ in group]})
            results = answer["results"]
            if len(results) != len(group):
                raise ValueError(f"{len(results)} results for {len(group)} operations")
        except Exception as exc:  # the request as a whole failed: so did each operation
            for _, future in group:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), result in zip(group, results, strict=True):
            if future.done():
                continue
            body = result.get("body") or {}
            if 200 <= result["status"] < 300:
                future.set_result(body)
            else:
                error = FlovynApiError(
                    result["status"], body.get("code"), str(body.get("error")), body.get("details")
                )
                future.set_exception(error)
