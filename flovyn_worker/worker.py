"""``Worker``: registers with the server, long-polls for work and runs it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections import Counter
from collections.abc import Coroutine, Iterable
from datetime import timedelta
from types import TracebackType
from typing import Any

import aiohttp

from ._version import __version__
from .batch import ResultBatcher
from .decorators import TaskDefinition, WorkflowDefinition, task_definition, workflow_definition
from .errors import DeterminismViolation, FlovynApiError
from .replay import format_error, replay_workflow
from .serde import ERROR_LIMIT, to_jsonable, to_seconds, wire_text
from .task_context import LogBuffer, TaskContext
from .transport import Backoff, Transport, is_transient

log = logging.getLogger("flovyn_worker")

_LOG_BATCH = 500
_LOG_FLUSH_INTERVAL = 0.5


class _Slots:
    """Concurrency slots for one kind of work. Jobs running plus slots promised to a poll
    in flight or to an eager offer never exceed `limit`."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.jobs: set[asyncio.Task[Any]] = set()
        self.promised = 0
        self._freed = asyncio.Event()

    def free(self) -> int:
        return self.limit - len(self.jobs) - self.promised

    async def wait_free(self) -> int:
        while self.free() <= 0:
            self._freed.clear()
            await self._freed.wait()
        return self.free()

    def promise(self, n: int) -> None:
        self.promised += n

    def unpromise(self, n: int) -> None:
        self.promised -= n
        self._freed.set()

    def freed(self) -> None:
        self._freed.set()


class Worker:
    """Runs ``@workflow`` and ``@task`` code for one tenant and queue.

    ``await worker.run()`` serves until ``await worker.stop()``; ``async with
    worker:`` serves in the background for the duration of the block. Up to
    ``max_concurrent_tasks`` tasks and ``max_concurrent_workflows`` activations
    run at once (100 each by default, as the work is coroutines: lower them for tasks
    that are heavy on CPU or on what they call); polls are long-polls held up to
    ``poll_timeout`` seconds.
    """

    def __init__(
        self,
        server_url: str,
        *,
        tenant: str,
        token: str,
        workflows: Iterable[Any] = (),
        tasks: Iterable[Any] = (),
        queue: str = "default",
        max_concurrent_tasks: int = 100,
        max_concurrent_workflows: int = 100,
        name: str | None = None,
        poll_timeout: float = 20.0,
        shutdown_grace: timedelta | float = 5.0,
    ) -> None:
        self._workflows: dict[str, WorkflowDefinition] = {}
        for obj in workflows:
            wf = workflow_definition(obj)
            if wf is None:
                raise TypeError(f"{obj!r} is not decorated with @workflow")
            self._workflows[wf.kind] = wf
        self._tasks: dict[str, TaskDefinition] = {}
        for obj in tasks:
            td = task_definition(obj)
            if td is None:
                raise TypeError(f"{obj!r} is not decorated with @task")
            self._tasks[td.kind] = td
        if not self._workflows and not self._tasks:
            raise ValueError("a Worker needs at least one workflow or task")
        if max_concurrent_tasks < 1 or max_concurrent_workflows < 1:
            raise ValueError("concurrency limits must be at least 1")
        self.queue = queue
        self.name = name or f"{socket.gethostname()}-{os.getpid()}"
        self.max_concurrent_tasks = max_concurrent_tasks
        self.max_concurrent_workflows = max_concurrent_workflows
        self.poll_timeout = poll_timeout
        self.shutdown_grace = to_seconds(shutdown_grace) or 0.0
        self.worker_id: str | None = None
        self._transport = Transport(server_url, tenant=tenant, token=token)
        self._results = ResultBatcher(lambda batch: self._send("/worker/batch", batch))
        self._logs = LogBuffer()
        self._heartbeat_interval = 5.0
        self._task_slots = _Slots(max_concurrent_tasks)
        self._workflow_slots = _Slots(max_concurrent_workflows)
        # With both workflows and tasks here, the server can hand a submit's tasks and a
        # completed task's next activation straight back (eager dispatch). A poll then
        # leaves a quarter of the slots (at least one) free to offer.
        self._eager = bool(self._workflows and self._tasks)
        # Polls in flight and jobs running, per worker id they were claimed under.
        self._users: Counter[str] = Counter()
        self._retiring: set[asyncio.Task[None]] = set()
        self._running = False
        self._background: asyncio.Task[None] | None = None
        self._prepare()

    def _prepare(self) -> None:
        self._stop_requested = asyncio.Event()
        self._started = asyncio.Event()
        self._finished = asyncio.Event()
        self._identity_lock = asyncio.Lock()
        self._claims_in_doubt = False

    # -- lifecycle --

    async def run(self) -> None:
        """Register, then poll and execute work until ``stop()`` is called."""
        if self._running:
            raise RuntimeError("this worker is already running")
        if self._finished.is_set():
            self._prepare()  # run again after a previous stop
        await self._serve()

    async def stop(self) -> None:
        """Stop polling, let running work finish briefly, flush logs, unregister."""
        self._stop_requested.set()
        current = asyncio.current_task()
        if current in self._task_slots.jobs or current in self._workflow_slots.jobs:
            return  # waiting here would wait for ourselves
        background, self._background = self._background, None
        if background is not None and background is not current:
            await background
        elif self._running and not self._finished.is_set():
            await self._finished.wait()

    async def __aenter__(self) -> Worker:
        if self._running:
            raise RuntimeError("this worker is already running")
        if self._finished.is_set():
            self._prepare()
        self._background = asyncio.create_task(self._serve(), name=f"flovyn worker {self.name}")
        started = asyncio.ensure_future(self._started.wait())
        done, _ = await asyncio.wait(
            {self._background, started}, return_when=asyncio.FIRST_COMPLETED
        )
        if started not in done:
            started.cancel()
        if self._background in done:
            background, self._background = self._background, None
            background.result()  # raises the startup error
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def _serve(self) -> None:
        self._running = True
        pollers: list[asyncio.Task[None]] = []
        loops: list[asyncio.Task[None]] = []
        try:
            await self._register()
            if self._stop_requested.is_set():
                return
            loops.append(asyncio.create_task(self._heartbeat_loop()))
            loops.append(asyncio.create_task(self._log_flush_loop()))
            if self._workflows:
                pollers.append(asyncio.create_task(self._poll_workflows()))
            if self._tasks:
                pollers.append(asyncio.create_task(self._poll_tasks()))
            self._started.set()
            log.info("worker %s (%s) serving queue %s", self.name, self.worker_id, self.queue)
            await self._stop_requested.wait()
        finally:
            await self._shutdown(pollers, loops)
            self._running = False
            self._finished.set()

    async def _shutdown(
        self, pollers: list[asyncio.Task[None]], loops: list[asyncio.Task[None]]
    ) -> None:
        await _cancel_all(pollers)
        jobs = self._task_slots.jobs | self._workflow_slots.jobs
        if jobs:
            _, pending = await asyncio.wait(jobs, timeout=self.shutdown_grace)
            if pending:
                log.warning("cancelling %d unfinished jobs at shutdown", len(pending))
            await _cancel_all(pending)
        await _cancel_all(loops)
        if self._retiring:  # their work is over now: they unregister within moments
            _, pending = await asyncio.wait(self._retiring, timeout=5.0)
            await _cancel_all(pending)
        await self._flush_logs()
        if self.worker_id is not None:
            try:
                await self._transport.request(
                    "POST", "/worker/unregister", {"workerId": self.worker_id}, timeout=5.0
                )
            except Exception as exc:
                log.warning("unregister failed: %r", exc)
        await self._transport.close()

    async def _sleep_unless_stopped(self, delay: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop_requested.wait(), timeout=delay)

    # -- registration and liveness --

    def _registration(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": __version__,
            "hostName": socket.gethostname(),
            "processId": os.getpid(),
            "queues": [self.queue],
            "workflows": [d.to_registration() for d in self._workflows.values()],
            "tasks": [d.to_registration() for d in self._tasks.values()],
        }

    async def _register(self) -> None:
        backoff = Backoff()
        while not self._stop_requested.is_set():
            try:
                await self._register_once()
            except Exception as exc:
                if not is_transient(exc):
                    raise
                log.warning("register failed, retrying: %r", exc)
                await self._sleep_unless_stopped(backoff.next())
                continue
            return

    async def _register_once(self) -> None:
        answer = await self._transport.request("POST", "/worker/register", self._registration())
        self.worker_id = str(answer["workerId"])
        self._heartbeat_interval = max(0.05, answer.get("heartbeatIntervalMs", 5000) / 1000)

    async def _replace_identity(self) -> None:
        """Serve on under a new worker id; retire the old one once its work here is done.

        Called after a poll failed in a way that may have lost its answer (the server
        died after claiming work for us, a connection broke mid-answer). Nothing would
        ever release such a claim while the old id stays alive; unregistering the old
        id, once the polls and jobs still using it are over, releases exactly that.
        """
        async with self._identity_lock:
            if not self._claims_in_doubt:
                return  # the other poll loop did it already
            old = self.worker_id
            await self._register_once()
            self._claims_in_doubt = False
            log.warning(
                "a poll answer may have been lost: serving as worker %s, retiring %s",
                self.worker_id,
                old,
            )
            if old is not None:
                job = asyncio.create_task(self._retire(old))
                self._retiring.add(job)
                job.add_done_callback(self._retiring.discard)

    async def _retire(self, old_id: str) -> None:
        """Keep `old_id` alive while work claimed under it runs, then unregister it."""
        loop = asyncio.get_running_loop()
        last_beat = loop.time()
        while self._users[old_id] > 0:
            await asyncio.sleep(0.1)
            if loop.time() - last_beat >= self._heartbeat_interval:
                last_beat = loop.time()
                with contextlib.suppress(Exception):
                    await self._transport.request("POST", "/worker/heartbeat", {"workerId": old_id})
        del self._users[old_id]
        await self._report("/worker/unregister", {"workerId": old_id})

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self._heartbeat_interval)
            try:
                await self._transport.request(
                    "POST", "/worker/heartbeat", {"workerId": self.worker_id}
                )
            except FlovynApiError as exc:
                log.warning("heartbeat refused: %s", exc)
                if exc.status == 404:  # the server forgot us (e.g. a fresh database)
                    with contextlib.suppress(Exception):
                        await self._register()
            except Exception as exc:
                log.warning("heartbeat failed: %r", exc)

    # -- polling --

    def _spawn(self, slots: _Slots, coro: Coroutine[Any, Any, None], worker_id: str) -> None:
        job = asyncio.create_task(coro)
        slots.jobs.add(job)
        self._users[worker_id] += 1

        def done(finished: asyncio.Task[Any]) -> None:
            slots.jobs.discard(finished)
            self._users[worker_id] -= 1
            slots.freed()

        job.add_done_callback(done)

    def _spawn_activation(self, item: dict[str, Any], worker_id: str) -> None:
        self._spawn(self._workflow_slots, self._process_activation(item, worker_id), worker_id)

    def _spawn_task(self, item: dict[str, Any], worker_id: str) -> None:
        self._spawn(self._task_slots, self._execute_task(item, worker_id), worker_id)

    def _offer(self, slots: _Slots, kinds: Iterable[str], wanted: int) -> dict[str, Any] | None:
        """Promise up to `wanted` free slots for eager dispatch; the caller unpromises
        them once the answer is in."""
        free = min(slots.free(), wanted)
        if not self._eager or free <= 0 or self._stop_requested.is_set():
            return None
        slots.promise(free)
        return {"queue": self.queue, "kinds": sorted(kinds), "slots": free}

    async def _poll(self, what: str, kinds: list[str], slots: _Slots) -> tuple[str, list[Any]]:
        """(the worker id polled as, the items claimed for it)."""
        if self._claims_in_doubt:
            await self._replace_identity()
        free = await slots.wait_free()  # no await from here until the slots are promised
        if self._eager:
            free = min(free, max(1, slots.limit - max(1, slots.limit // 4)))
        worker_id = str(self.worker_id)
        body = {
            "workerId": worker_id,
            "queue": self.queue,
            "kinds": kinds,
            "maxItems": free,
            "timeoutMs": round(self.poll_timeout * 1000),
        }
        self._users[worker_id] += 1
        slots.promise(free)
        try:
            answer = await self._transport.request(
                "POST", f"/worker/{what}/poll", body, timeout=self.poll_timeout + 10.0
            )
        finally:
            self._users[worker_id] -= 1
            slots.unpromise(free)
        items = answer.get("activations" if what == "workflows" else "tasks") if answer else None
        return worker_id, list(items or [])

    async def _poll_loop(self, what: str, kinds: list[str], slots: _Slots) -> None:
        backoff = Backoff(0.1, 5.0)
        spawn = self._spawn_activation if what == "workflows" else self._spawn_task
        while not self._stop_requested.is_set():
            try:
                worker_id, items = await self._poll(what, kinds, slots)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # keep polling whatever happens; back off
                log.warning("%s poll failed: %r", what[:-1], exc)
                if _answer_may_be_lost(exc):
                    self._claims_in_doubt = True
                await self._sleep_unless_stopped(backoff.next())
                continue
            backoff.reset()
            for item in items:
                spawn(item, worker_id)

    async def _poll_workflows(self) -> None:
        await self._poll_loop("workflows", sorted(self._workflows), self._workflow_slots)

    async def _poll_tasks(self) -> None:
        await self._poll_loop("tasks", sorted(self._tasks), self._task_slots)

    # -- sending results --

    async def _send(self, path: str, body: dict[str, Any], attempts: int = 12) -> Any:
        """POST with retries on transient errors (about 40 s in all, long enough to ride
        out a server restart); a 4xx answer raises at once."""
        backoff = Backoff(0.2, 5.0)
        for attempt in range(1, attempts + 1):
            try:
                return await self._transport.request("POST", path, body)
            except Exception as exc:
                if not is_transient(exc) or attempt == attempts:
                    raise
                if _carries_offer(body):
                    # The failed try may have committed and handed us work whose answer
                    # is lost (a retry is then refused as stale): see _replace_identity.
                    self._claims_in_doubt = True
                log.warning("POST %s failed (attempt %d), retrying: %r", path, attempt, exc)
                await asyncio.sleep(backoff.next())
        return None

    async def _report(
        self, path: str, body: dict[str, Any], op: tuple[str, str] | None = None
    ) -> Any:
        """Send a result whose refusal can only be logged (stale claims are normal);
        returns the answer, or None when refused or not delivered. With `op` (kind,
        target) it goes out with the other results of the moment (see batch.py)."""
        try:
            if op is not None:
                return await self._results.call(*op, body)
            return await self._send(path, body)
        except FlovynApiError as exc:
            if exc.status == 409 and (exc.code or "").startswith("STALE"):
                log.info("dropped stale result for %s: %s", path, exc)
            else:
                log.error("server refused %s: %s", path, exc)
        except Exception as exc:
            log.error("could not send %s: %r", path, exc)
            # The server still holds this work for our live worker id and would never
            # release it: serve on under a new id and retire this one (see
            # _replace_identity), which releases it.
            self._claims_in_doubt = True
        return None

    # -- workflow activations --

    async def _process_activation(self, activation: dict[str, Any], worker_id: str) -> None:
        execution_id = str(activation["workflowExecutionId"])
        kind = str(activation.get("kind"))
        base = f"/worker/workflows/{execution_id}"
        ids = {"workerId": worker_id, "activationId": activation.get("activationId")}
        definition = self._workflows.get(kind)
        if definition is None:
            error = f"no workflow '{kind}' is registered on worker {self.name}"
            await self._report(
                f"{base}/fail-activation",
                {**ids, "error": error, "errorType": "UnknownWorkflowKind"},
            )
            return
        extra = {"input": activation["input"]} if "input" in activation else {}
        try:
            result = await replay_workflow(
                definition,
                execution_id,
                activation.get("events") or [],
                queue=str(activation.get("queue") or self.queue),
                **extra,
            )
        except DeterminismViolation as exc:
            log.error("workflow %s (%s): %s", execution_id, kind, exc)
            await self._report(
                f"{base}/fail-activation",
                {
                    **ids,
                    "error": wire_text(str(exc), ERROR_LIMIT),
                    "errorType": "DeterminismViolation",
                },
            )
            return
        except Exception as exc:  # a bug in replay or decoding: do not advance the history
            log.exception("workflow %s (%s) could not be replayed", execution_id, kind)
            await self._report(
                f"{base}/fail-activation",
                {
                    **ids,
                    "error": wire_text(str(exc), ERROR_LIMIT),
                    "errorType": type(exc).__name__,
                },
            )
            return
        body = {**ids, "status": result.status, "commands": result.commands}
        scheduled = sum(
            1
            for c in result.commands
            if c.get("type") == "SCHEDULE_TASK" and c.get("kind") in self._tasks
        )
        offer = self._offer(self._task_slots, self._tasks, scheduled)
        if offer:
            body["eagerTasks"] = offer
        try:
            answer = await self._results.call("submit", execution_id, body)
        except FlovynApiError as exc:
            if exc.status == 409 and (exc.code or "").startswith("STALE"):
                log.info("activation of %s is stale, dropped: %s", execution_id, exc)
            elif exc.status in (400, 409):
                # The server will never take these commands: fail visibly rather
                # than leave the execution held by this worker.
                await self._report(
                    f"{base}/fail-activation",
                    {**ids, "error": exc.message, "errorType": exc.code or "SubmitRejected"},
                )
            else:
                log.error("submit of %s refused: %s", execution_id, exc)
        except Exception as exc:
            log.error("submit of %s failed: %r", execution_id, exc)
        else:
            for item in (answer or {}).get("tasks") or ():
                self._spawn_task(item, worker_id)
        finally:
            if offer:
                self._task_slots.unpromise(offer["slots"])

    # -- tasks --

    async def _execute_task(self, item: dict[str, Any], worker_id: str) -> None:
        task_id = str(item["taskExecutionId"])
        attempt = int(item.get("attempt") or 1)
        kind = str(item.get("kind"))
        base = f"/worker/tasks/{task_id}"
        ids: dict[str, Any] = {"workerId": worker_id, "attempt": attempt}
        if item.get("workflowExecutionId"):
            # Naming the workflow lets the server group this result with its other writes.
            ids["workflowExecutionId"] = item["workflowExecutionId"]
        definition = self._tasks.get(kind)
        if definition is None:
            await self._report(
                f"{base}/fail",
                {
                    **ids,
                    "error": f"UnknownTaskKind: no task '{kind}' on worker {self.name}",
                    "retryable": True,
                },
            )
            return
        ctx = TaskContext(
            task_execution_id=task_id,
            attempt=attempt,
            workflow_execution_id=item.get("workflowExecutionId"),
            kind=kind,
            worker_id=worker_id,
            transport=self._transport,
            log_buffer=self._logs,
        )
        timeout_ms = item.get("timeoutMs")
        timeout = timeout_ms / 1000 if timeout_ms else definition.timeout
        try:
            try:
                call = definition.handler.invoke(ctx, item.get("input"), sync_in_thread=True)
                result = await asyncio.wait_for(call, timeout) if timeout else await call
                output = to_jsonable(result)
            finally:
                # The attempt's log lines land before its end: a task stream shows them
                # before task_completed, and one that ends with the workflow has them.
                if len(self._logs):
                    await self._flush_logs()
        except TimeoutError as exc:
            error, stack = format_error(exc)
            if not str(exc):
                error = f"TimeoutError: task '{kind}' did not finish within {timeout:g}s"
            await self._report(
                f"{base}/fail",
                {**ids, "error": error, "retryable": True, "timedOut": True, "stackTrace": stack},
                op=("fail", task_id),
            )
            return
        except Exception as exc:
            error, stack = format_error(exc)
            retryable = getattr(exc, "retryable", True) is not False
            await self._report(
                f"{base}/fail",
                {**ids, "error": error, "retryable": retryable, "stackTrace": stack},
                op=("fail", task_id),
            )
            return
        finally:
            ctx.close()
        await self._complete(base, {**ids, "output": output}, item, worker_id)

    async def _complete(
        self, base: str, body: dict[str, Any], item: dict[str, Any], worker_id: str
    ) -> None:
        """Report the output, offering to run the workflow's next activation here."""
        offer = None
        if item.get("workflowExecutionId"):
            offer = self._offer(self._workflow_slots, self._workflows, 1)
        op = ("complete", str(item["taskExecutionId"]))
        if offer is None:
            await self._report(f"{base}/complete", body, op)
            return
        try:
            answer = await self._report(f"{base}/complete", {**body, "eagerActivation": offer}, op)
            if answer and answer.get("activation"):
                self._spawn_activation(answer["activation"], worker_id)
        finally:
            self._workflow_slots.unpromise(1)

    # -- logs --

    async def _log_flush_loop(self) -> None:
        while True:
            await asyncio.sleep(_LOG_FLUSH_INTERVAL)
            await self._flush_logs()

    async def _flush_logs(self) -> None:
        while len(self._logs):
            batch = self._logs.take(_LOG_BATCH)
            try:
                await self._transport.request("POST", "/worker/logs", {"entries": batch})
            except Exception as exc:
                log.warning("sending %d task log lines failed: %r", len(batch), exc)
                if is_transient(exc):
                    self._logs.put_back(batch)
                return


def _carries_offer(body: dict[str, Any]) -> bool:
    """Whether a request offers slots for eager dispatch, itself or in a batch."""
    bodies = [body, *(op.get("body") or {} for op in body.get("operations") or ())]
    return any("eagerTasks" in b or "eagerActivation" in b for b in bodies)


def _answer_may_be_lost(exc: BaseException) -> bool:
    """Whether a failed poll may have claimed work whose answer never arrived: not when
    the connection was never made, nor when the server answered with a 4xx."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        return False
    return not (isinstance(exc, FlovynApiError) and exc.status < 500)


async def _cancel_all(tasks: Iterable[asyncio.Task[Any]]) -> None:
    pending = [t for t in tasks if not t.done()]
    for t in pending:
        t.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
