"""``TaskContext`` and the plumbing that turns a task's log records into task logs."""

from __future__ import annotations

import logging
from collections import deque
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .errors import FlovynApiError
from .serde import LOG_LIMIT, to_jsonable, wire_text

if TYPE_CHECKING:
    from .transport import Transport

log = logging.getLogger("flovyn_worker")

# Records of task loggers also reach the application's logging through this one.
_FORWARD = logging.getLogger("flovyn_worker.task")


def level_name(levelno: int) -> str:
    """Map a ``logging`` level to the task log levels of the protocol."""
    if levelno >= logging.ERROR:
        return "ERROR"
    if levelno >= logging.WARNING:
        return "WARN"
    if levelno >= logging.INFO:
        return "INFO"
    return "DEBUG"


def utc_timestamp(epoch_seconds: float) -> str:
    """RFC 3339 UTC string of a POSIX time."""
    moment = datetime.fromtimestamp(epoch_seconds, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class LogBuffer:
    """Task log entries waiting to be sent in batches (``POST .../worker/logs``).

    Bounded so that a server that is down cannot make the worker grow forever;
    the oldest lines go first.
    """

    def __init__(self, max_entries: int = 10_000) -> None:
        self._entries: deque[dict[str, Any]] = deque(maxlen=max_entries)

    def add(self, entry: dict[str, Any]) -> None:
        """Queue one entry (safe from threads: ``deque.append`` is atomic)."""
        self._entries.append(entry)

    def take(self, limit: int) -> list[dict[str, Any]]:
        """Remove and return up to ``limit`` entries, oldest first."""
        batch: list[dict[str, Any]] = []
        while self._entries and len(batch) < limit:
            batch.append(self._entries.popleft())
        return batch

    def put_back(self, batch: list[dict[str, Any]]) -> None:
        """Return an unsent batch to the front, keeping order."""
        self._entries.extendleft(reversed(batch))

    def __len__(self) -> int:
        return len(self._entries)


class _TaskLogHandler(logging.Handler):
    def __init__(self, buffer: LogBuffer, task_execution_id: str, attempt: int) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(message)s"))
        self._buffer = buffer
        self._task_execution_id = task_execution_id
        self._attempt = attempt

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._buffer.add(
                {
                    "taskExecutionId": self._task_execution_id,
                    "attempt": self._attempt,
                    "level": level_name(record.levelno),
                    "message": wire_text(self.format(record), LOG_LIMIT),
                    "timestamp": utc_timestamp(record.created),
                }
            )
            if _FORWARD.isEnabledFor(record.levelno):
                _FORWARD.handle(record)
        except Exception:
            self.handleError(record)


class TaskContext:
    """Passed to task code: who is running, progress, heartbeats, logs, cancellation.

    Built by the worker; can also be built by hand in unit tests of tasks (without
    a transport, progress and heartbeats are local no-ops).
    """

    def __init__(
        self,
        *,
        task_execution_id: str,
        attempt: int = 1,
        workflow_execution_id: str | None = None,
        kind: str = "",
        worker_id: str | None = None,
        transport: Transport | None = None,
        log_buffer: LogBuffer | None = None,
    ) -> None:
        self.task_execution_id = task_execution_id
        self.attempt = attempt
        self.workflow_execution_id = workflow_execution_id
        self.kind = kind
        self._worker_id = worker_id
        self._transport = transport
        self._cancelled = False
        # A Logger made directly (not via getLogger) is not kept forever in the
        # logging registry, which matters with one logger per task attempt.
        self.logger = logging.Logger(f"flovyn_worker.task.{kind}.{task_execution_id}")
        self.logger.propagate = False
        self.logger.setLevel(logging.DEBUG)
        if log_buffer is not None:
            self.logger.addHandler(_TaskLogHandler(log_buffer, task_execution_id, attempt))
        else:
            self.logger.setLevel(logging.NOTSET)
            self.logger.parent = _FORWARD
            self.logger.propagate = True

    @property
    def is_cancelled(self) -> bool:
        """True once the server said this attempt is cancelled (or no longer current)."""
        return self._cancelled

    async def report_progress(self, fraction: float, details: Any = None) -> bool:
        """Report progress (0..1 and optional details); returns ``is_cancelled``."""
        fraction = min(max(float(fraction), 0.0), 1.0)
        return await self._post("progress", {"progress": fraction, "details": details})

    async def stream(self, data: Any, *, stream_type: str = "data") -> bool:
        """Send stream data to whoever watches the workflow stream (``task_stream``
        events): ``stream_type`` is ``token`` (a piece of generated text), ``progress``,
        ``data`` (a partial result) or ``error``. Returns ``is_cancelled``."""
        return await self._post("stream", {"streamType": stream_type, "data": to_jsonable(data)})

    async def stream_token(self, token: str) -> bool:
        """``stream(token, stream_type="token")``: one piece of generated text."""
        return await self.stream(token, stream_type="token")

    async def heartbeat(self) -> bool:
        """Tell the server this attempt is alive; returns ``is_cancelled``."""
        return await self._post("heartbeat", {})

    async def _post(self, action: str, body: dict[str, Any]) -> bool:
        if self._transport is None:
            return self._cancelled
        payload = {"workerId": self._worker_id, "attempt": self.attempt, **body}
        path = f"/worker/tasks/{self.task_execution_id}/{action}"
        try:
            answer = await self._transport.request("POST", path, payload)
        except FlovynApiError as exc:
            if exc.status == 409:  # STALE_ATTEMPT: this attempt no longer counts
                self._cancelled = True
            else:
                log.warning("task %s %s refused: %s", self.task_execution_id, action, exc)
            return self._cancelled
        except Exception as exc:  # a lost heartbeat must not fail the task itself
            log.warning("task %s %s failed: %r", self.task_execution_id, action, exc)
            return self._cancelled
        if isinstance(answer, dict) and answer.get("cancelled"):
            self._cancelled = True
        return self._cancelled

    def close(self) -> None:
        """Detach the log handlers (the attempt is over)."""
        for handler in list(self.logger.handlers):
            self.logger.removeHandler(handler)
