"""Replay engine: synthetic histories in, commands and status out (no server)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import BaseModel

from flovyn_worker import (
    ActivationResult,
    ChildWorkflowFailed,
    DeterminismViolation,
    PromiseRejected,
    PromiseTimeout,
    RetryPolicy,
    TaskFailed,
    WorkflowContext,
    replay_workflow,
    task,
    workflow,
)

EID = "0b9f6a64-3c4f-4d1e-9a57-0f4f5c8f2d11"
NS = uuid.UUID(EID)
T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def tid(n: int, retry: int | None = None) -> str:
    suffix = f"-r{retry}" if retry is not None else ""
    return str(uuid.uuid5(NS, f"task-{n}{suffix}"))


def timer_id(n: int) -> str:
    return str(uuid.uuid5(NS, f"timer-{n}"))


def child_id(n: int, retry: int | None = None) -> str:
    suffix = f"-r{retry}" if retry is not None else ""
    return str(uuid.uuid5(NS, f"child-{n}{suffix}"))


class History:
    """A synthetic event log, plus the server's command -> event mapping."""

    def __init__(self, input: Any = None) -> None:
        self.events: list[dict[str, Any]] = []
        self.add("WORKFLOW_STARTED", input=input)

    def add(self, event_type: str, **data: Any) -> History:
        seq = len(self.events) + 1
        self.events.append(
            {
                "sequence": seq,
                "eventType": event_type,
                "timestamp": (T0 + timedelta(seconds=seq)).isoformat().replace("+00:00", "Z"),
                "data": data,
            }
        )
        return self

    @property
    def last_sequence(self) -> int:
        return len(self.events)

    def apply(self, result: ActivationResult) -> History:
        """Append the events the server appends for the submitted commands."""
        for c in result.commands:
            t = c["type"]
            if t == "SCHEDULE_TASK":
                self.add(
                    "TASK_SCHEDULED",
                    taskExecutionId=c["taskExecutionId"],
                    kind=c["kind"],
                    input=c["input"],
                    maxRetries=c.get("maxRetries"),
                    queue=c.get("queue"),
                )
            elif t == "START_TIMER":
                self.add("TIMER_STARTED", timerId=c["timerId"], durationMs=c["durationMs"])
            elif t == "CANCEL_TIMER":
                self.add("TIMER_CANCELLED", timerId=c["timerId"])
            elif t == "CREATE_PROMISE":
                self.add(
                    "PROMISE_CREATED",
                    promiseName=c["promiseName"],
                    promiseId=str(uuid.uuid5(NS, "promise-" + c["promiseName"])),
                    timeoutMs=c.get("timeoutMs"),
                )
            elif t == "SCHEDULE_CHILD_WORKFLOW":
                self.add(
                    "CHILD_WORKFLOW_INITIATED",
                    childExecutionName=c["childExecutionName"],
                    childWorkflowKind=c["kind"],
                    childWorkflowExecutionId=c["childWorkflowExecutionId"],
                )
            elif t == "RECORD_OPERATION":
                self.add(
                    "OPERATION_COMPLETED", operationName=c["operationName"], result=c["result"]
                )
            elif t == "SET_STATE":
                self.add("STATE_SET", key=c["key"], value=c["value"])
            elif t == "CLEAR_STATE":
                self.add("STATE_CLEARED", key=c["key"])
            elif t == "COMPLETE_WORKFLOW":
                self.add("WORKFLOW_COMPLETED", output=c["output"])
            elif t == "FAIL_WORKFLOW":
                self.add("WORKFLOW_EXECUTION_FAILED", error=c["error"])
            else:  # pragma: no cover - a new command type needs a mapping here
                raise AssertionError(t)
        return self


async def activate(wf: Any, history: History, *, apply: bool = True) -> ActivationResult:
    result = await replay_workflow(wf, EID, history.events)
    if apply:
        history.apply(result)
    return result


def types(result: ActivationResult) -> list[str]:
    return [c["type"] for c in result.commands]


# -- workflows and tasks used below --


@task(name="charge-card", retry_policy=RetryPolicy(max_attempts=4), timeout=30)
async def charge_card(ctx: Any, amount: int) -> dict[str, Any]:
    return {"charged": amount}


@workflow(name="one-task")
async def one_task(ctx: WorkflowContext, input: dict[str, Any]) -> Any:
    receipt = await ctx.schedule(charge_card, input["amount"])
    return {"receipt": receipt}


# -- basic flow --


async def test_first_activation_schedules_the_task() -> None:
    h = History({"amount": 42})
    result = await activate(one_task, h)
    assert result.status == "SUSPENDED"
    assert result.commands == [
        {
            "type": "SCHEDULE_TASK",
            "taskExecutionId": tid(1),
            "kind": "charge-card",
            "input": 42,
            "queue": "default",
            "maxRetries": 3,
            "retryPolicy": {
                "initialIntervalMs": 1000,
                "backoffCoefficient": 2.0,
                "maxIntervalMs": 60000,
            },
            "timeoutMs": 30000,
        }
    ]


async def test_completes_after_task_completed() -> None:
    h = History({"amount": 42})
    await activate(one_task, h)
    h.add("TASK_COMPLETED", taskExecutionId=tid(1), output={"charged": 42})
    result = await activate(one_task, h)
    assert result.status == "COMPLETED"
    assert result.commands == [
        {"type": "COMPLETE_WORKFLOW", "output": {"receipt": {"charged": 42}}}
    ]


async def test_replay_without_news_submits_nothing_new() -> None:
    h = History({"amount": 1})
    await activate(one_task, h)
    result = await activate(one_task, h)
    assert result.status == "SUSPENDED"
    assert result.commands == []


@workflow(name="fan-out")
async def fan_out(ctx: WorkflowContext, n: int) -> list[Any]:
    handles = [ctx.schedule_async("square", i) for i in range(n)]
    return list(await asyncio.gather(*handles))


async def test_gather_of_twenty_tasks_emits_twenty_commands_at_once() -> None:
    h = History(20)
    result = await activate(fan_out, h)
    assert result.status == "SUSPENDED"
    assert types(result) == ["SCHEDULE_TASK"] * 20
    assert [c["taskExecutionId"] for c in result.commands] == [tid(i) for i in range(1, 21)]
    assert [c["input"] for c in result.commands] == list(range(20))
    # completions arrive in reverse order; gather keeps issue order
    for i in reversed(range(1, 21)):
        h.add("TASK_COMPLETED", taskExecutionId=tid(i), output=(i - 1) ** 2)
    result = await activate(fan_out, h)
    assert result.status == "COMPLETED"
    assert result.commands[-1]["output"] == [i * i for i in range(20)]


async def test_partial_fan_out_stays_suspended() -> None:
    h = History(3)
    await activate(fan_out, h)
    h.add("TASK_COMPLETED", taskExecutionId=tid(2), output=1)
    result = await activate(fan_out, h)
    assert result.status == "SUSPENDED"
    assert result.commands == []


# -- races --


@workflow(name="race")
async def race(ctx: WorkflowContext, input: Any) -> str:
    job = ctx.schedule_async("slow")
    timer = ctx.sleep_async(timedelta(minutes=5))
    done, _ = await asyncio.wait([job, timer], return_when=asyncio.FIRST_COMPLETED)
    if timer in done:
        return "timeout"
    timer.cancel()
    return f"done:{job.result()}"


async def test_race_timer_first_in_history_wins_even_if_task_completed_later() -> None:
    h = History()
    result = await activate(race, h)
    assert types(result) == ["SCHEDULE_TASK", "START_TIMER"]
    assert result.commands[1] == {
        "type": "START_TIMER",
        "timerId": timer_id(1),
        "durationMs": 300000,
    }
    h.add("TIMER_FIRED", timerId=timer_id(1))
    h.add("TASK_COMPLETED", taskExecutionId=tid(1), output="late")
    result = await activate(race, h)
    assert result.status == "COMPLETED"
    assert result.commands == [{"type": "COMPLETE_WORKFLOW", "output": "timeout"}]


async def test_race_task_first_wins_and_cancels_the_timer() -> None:
    h = History()
    await activate(race, h)
    h.add("TASK_COMPLETED", taskExecutionId=tid(1), output="ok")
    h.add("TIMER_FIRED", timerId=timer_id(1))  # fired too, but after
    result = await activate(race, h)
    assert result.status == "COMPLETED"
    assert result.commands == [
        {"type": "CANCEL_TIMER", "timerId": timer_id(1)},
        {"type": "COMPLETE_WORKFLOW", "output": "done:ok"},
    ]


async def test_cancel_timer_is_not_emitted_twice_on_replay() -> None:
    @workflow(name="cancel-then-wait")
    async def wf(ctx: WorkflowContext, input: Any) -> Any:
        timer = ctx.sleep_async(60)
        timer.cancel()
        return await ctx.schedule("after")

    h = History()
    result = await activate(wf, h)
    assert types(result) == ["START_TIMER", "CANCEL_TIMER", "SCHEDULE_TASK"]
    result = await activate(wf, h)
    assert result.commands == []


# -- failures --


@workflow(name="compensating")
async def compensating(ctx: WorkflowContext, input: Any) -> Any:
    try:
        await ctx.schedule("reserve")
    except TaskFailed as exc:
        await ctx.schedule("notify", {"why": str(exc), "task": exc.task_execution_id})
        return "compensated"
    return "reserved"


async def test_task_failed_is_catchable() -> None:
    h = History()
    await activate(compensating, h)
    h.add("TASK_FAILED", taskExecutionId=tid(1), error="ValueError: out of stock")
    result = await activate(compensating, h)
    assert result.status == "SUSPENDED"
    assert result.commands[0]["kind"] == "notify"
    assert result.commands[0]["input"] == {"why": "ValueError: out of stock", "task": tid(1)}
    h.add("TASK_COMPLETED", taskExecutionId=tid(2), output=None)
    result = await activate(compensating, h)
    assert result.commands == [{"type": "COMPLETE_WORKFLOW", "output": "compensated"}]


async def test_uncaught_task_failure_fails_the_workflow() -> None:
    h = History({"amount": 1})
    await activate(one_task, h)
    h.add("TASK_FAILED", taskExecutionId=tid(1), error="card declined")
    result = await activate(one_task, h)
    assert result.status == "FAILED"
    fail = result.commands[-1]
    assert fail["type"] == "FAIL_WORKFLOW"
    assert fail["error"] == "TaskFailed: card declined"
    assert "Traceback" in fail["stackTrace"]


async def test_workflow_exception_fails_with_type_and_message() -> None:
    @workflow(name="boom")
    async def boom(ctx: WorkflowContext, input: Any) -> None:
        raise ValueError("bad input")

    result = await activate(boom, History())
    assert result.status == "FAILED"
    assert result.commands[0]["error"] == "ValueError: bad input"


async def test_asyncio_sleep_in_workflow_is_refused_clearly() -> None:
    @workflow(name="wall-clock")
    async def wf(ctx: WorkflowContext, input: Any) -> None:
        await asyncio.sleep(1)

    result = await activate(wf, History())
    assert result.status == "FAILED"
    assert result.commands[0]["error"].startswith("UnsupportedInWorkflow:")
    assert "ctx.sleep" in result.commands[0]["error"]


# -- determinism --


@workflow(name="two-steps")
async def two_steps(ctx: WorkflowContext, input: Any) -> Any:
    await ctx.schedule("x")
    return await ctx.schedule("a")


@workflow(name="two-steps")
async def two_steps_changed(ctx: WorkflowContext, input: Any) -> Any:
    await ctx.schedule("x")
    return await ctx.schedule("b")


async def test_determinism_violation_names_both_sides() -> None:
    h = History()
    await activate(two_steps, h)
    h.add("TASK_COMPLETED", taskExecutionId=tid(1), output=None)
    await activate(two_steps, h)
    assert h.events[3]["eventType"] == "TASK_SCHEDULED"
    with pytest.raises(DeterminismViolation) as info:
        await activate(two_steps_changed, h)
    assert str(info.value) == (
        "command #2: code scheduled task 'b' but history has TASK_SCHEDULED of 'a' (sequence 4)"
    )


async def test_violation_cannot_be_swallowed_by_workflow_code() -> None:
    @workflow(name="two-steps")
    async def swallowing(ctx: WorkflowContext, input: Any) -> Any:
        await ctx.schedule("x")
        try:
            return await ctx.schedule("b")
        except Exception:
            return "swallowed"

    h = History()
    await activate(two_steps, h)
    h.add("TASK_COMPLETED", taskExecutionId=tid(1), output=None)
    await activate(two_steps, h)
    with pytest.raises(DeterminismViolation):
        await activate(swallowing, h)


async def test_history_commands_left_unmatched_are_a_violation() -> None:
    @workflow(name="two-steps")
    async def shorter(ctx: WorkflowContext, input: Any) -> Any:
        return "nothing to do"

    h = History()
    await activate(two_steps, h)
    with pytest.raises(DeterminismViolation, match="finished but history has TASK_SCHEDULED"):
        await activate(shorter, h)


async def test_timer_and_promise_and_state_mismatches_are_violations() -> None:
    @workflow(name="p")
    async def promise_a(ctx: WorkflowContext, input: Any) -> Any:
        return await ctx.promise("approval")

    @workflow(name="p")
    async def promise_b(ctx: WorkflowContext, input: Any) -> Any:
        return await ctx.promise("other")

    h = History()
    await activate(promise_a, h)
    with pytest.raises(DeterminismViolation, match=r"created promise 'other'.*'approval'"):
        await activate(promise_b, h)

    @workflow(name="s")
    async def set_a(ctx: WorkflowContext, input: Any) -> Any:
        ctx.set("a", 1)
        await ctx.sleep(1)

    @workflow(name="s")
    async def clear_a(ctx: WorkflowContext, input: Any) -> Any:
        ctx.clear("a")
        await ctx.sleep(1)

    h = History()
    await activate(set_a, h)
    with pytest.raises(DeterminismViolation, match=r"cleared state 'a'.*STATE_SET of 'a'"):
        await activate(clear_a, h)


async def test_resolution_for_a_command_not_issued_yet_is_applied_when_issued() -> None:
    @workflow(name="seq")
    async def seq(ctx: WorkflowContext, input: Any) -> Any:
        a = await ctx.schedule("a")
        b = await ctx.schedule("b")
        return [a, b]

    h = History()
    h.add("TASK_SCHEDULED", taskExecutionId=tid(1), kind="a")
    h.add("TASK_SCHEDULED", taskExecutionId=tid(2), kind="b")
    h.add("TASK_COMPLETED", taskExecutionId=tid(2), output="B")
    h.add("TASK_COMPLETED", taskExecutionId=tid(1), output="A")
    result = await activate(seq, h)
    assert result.commands == [{"type": "COMPLETE_WORKFLOW", "output": ["A", "B"]}]


# -- manual retry --

calls: list[str] = []


@workflow(name="pipeline")
async def pipeline(ctx: WorkflowContext, input: Any) -> Any:
    first = await ctx.schedule("extract")
    stamp = await ctx.run("stamp", lambda: calls.append("stamp") or "S")
    try:
        await ctx.schedule("optional")
    except TaskFailed:
        pass  # handled: must not be re-run by a retry
    second = await ctx.schedule("load", first)
    return [first, stamp, second]


async def run_pipeline_until_failure(h: History) -> None:
    await activate(pipeline, h)  # extract
    h.add("TASK_COMPLETED", taskExecutionId=tid(1), output="E")
    await activate(pipeline, h)  # stamp, optional
    h.add("TASK_FAILED", taskExecutionId=tid(2), error="optional broke")
    await activate(pipeline, h)  # load
    h.add("TASK_FAILED", taskExecutionId=tid(3), error="db down")
    result = await activate(pipeline, h)
    assert result.status == "FAILED"


async def test_retry_requested_reissues_only_the_failed_task_under_a_new_id() -> None:
    calls.clear()
    h = History()
    await run_pipeline_until_failure(h)
    assert calls == ["stamp"]
    h.add("RETRY_REQUESTED", retryAttempt=1)
    result = await activate(pipeline, h)
    assert result.status == "SUSPENDED"
    assert result.commands == [
        {
            "type": "SCHEDULE_TASK",
            "taskExecutionId": tid(3, retry=1),
            "kind": "load",
            "input": "E",
            "queue": "default",
        }
    ]
    assert calls == ["stamp"]  # the recorded operation was not run again
    h.add("TASK_COMPLETED", taskExecutionId=tid(3, retry=1), output="L")
    result = await activate(pipeline, h)
    assert result.status == "COMPLETED"
    assert result.commands == [{"type": "COMPLETE_WORKFLOW", "output": ["E", "S", "L"]}]
    assert calls == ["stamp"]


async def test_retry_twice_uses_a_fresh_id_each_time() -> None:
    calls.clear()
    h = History()
    await run_pipeline_until_failure(h)
    h.add("RETRY_REQUESTED", retryAttempt=1)
    await activate(pipeline, h)
    h.add("TASK_FAILED", taskExecutionId=tid(3, retry=1), error="db still down")
    result = await activate(pipeline, h)
    assert result.status == "FAILED"
    assert result.commands[-1]["error"] == "TaskFailed: db still down"
    h.add("RETRY_REQUESTED", retryAttempt=2)
    result = await activate(pipeline, h)
    assert [c["taskExecutionId"] for c in result.commands] == [tid(3, retry=2)]
    h.add("TASK_COMPLETED", taskExecutionId=tid(3, retry=2), output="L2")
    result = await activate(pipeline, h)
    assert result.commands[-1] == {"type": "COMPLETE_WORKFLOW", "output": ["E", "S", "L2"]}


async def test_retry_of_a_failure_wrapped_in_another_exception() -> None:
    @workflow(name="wrap")
    async def wrap(ctx: WorkflowContext, input: Any) -> Any:
        try:
            return await ctx.schedule("flaky")
        except TaskFailed as exc:
            raise RuntimeError("gave up") from exc

    h = History()
    await activate(wrap, h)
    h.add("TASK_FAILED", taskExecutionId=tid(1), error="nope")
    result = await activate(wrap, h)
    assert result.commands[-1]["error"] == "RuntimeError: gave up"
    h.add("RETRY_REQUESTED", retryAttempt=1)
    result = await activate(wrap, h)
    assert [c["taskExecutionId"] for c in result.commands] == [tid(1, retry=1)]


async def test_retry_after_a_code_fix_continues_without_reissuing() -> None:
    @workflow(name="fixable")
    async def buggy(ctx: WorkflowContext, input: Any) -> Any:
        value = await ctx.schedule("a")
        raise KeyError(value)

    @workflow(name="fixable")
    async def fixed(ctx: WorkflowContext, input: Any) -> Any:
        value = await ctx.schedule("a")
        return await ctx.schedule("b", value)

    h = History()
    await activate(buggy, h)
    h.add("TASK_COMPLETED", taskExecutionId=tid(1), output="A")
    assert (await activate(buggy, h)).status == "FAILED"
    h.add("RETRY_REQUESTED", retryAttempt=1)
    result = await activate(fixed, h)
    assert result.commands == [
        {
            "type": "SCHEDULE_TASK",
            "taskExecutionId": tid(2),
            "kind": "b",
            "input": "A",
            "queue": "default",
        }
    ]


async def test_retry_reissues_a_failed_child_workflow() -> None:
    @workflow(name="parent")
    async def parent(ctx: WorkflowContext, input: Any) -> Any:
        return await ctx.schedule_workflow("child-kind", {"x": 1})

    h = History()
    result = await activate(parent, h)
    assert result.commands[0]["childExecutionName"] == "child-kind-1"
    h.add(
        "CHILD_WORKFLOW_FAILED",
        childWorkflowExecutionId=child_id(1),
        childExecutionName="child-kind-1",
        error="kaput",
    )
    result = await activate(parent, h)
    assert result.commands[-1]["error"] == "ChildWorkflowFailed: kaput"
    h.add("RETRY_REQUESTED", retryAttempt=1)
    result = await activate(parent, h)
    assert result.commands == [
        {
            "type": "SCHEDULE_CHILD_WORKFLOW",
            "childExecutionName": "child-kind-1",
            "childWorkflowExecutionId": child_id(1, retry=1),
            "kind": "child-kind",
            "input": {"x": 1},
            "queue": "default",
        }
    ]
    h.add(
        "CHILD_WORKFLOW_COMPLETED",
        childWorkflowExecutionId=child_id(1, retry=1),
        childExecutionName="child-kind-1",
        output=7,
    )
    result = await activate(parent, h)
    assert result.commands == [{"type": "COMPLETE_WORKFLOW", "output": 7}]


# -- ctx.run --


async def test_run_records_once_and_replays_the_recorded_result() -> None:
    counter = {"n": 0}

    def side_effect() -> int:
        counter["n"] += 1
        return 100 + counter["n"]

    @workflow(name="op")
    async def op(ctx: WorkflowContext, input: Any) -> Any:
        value = await ctx.run("pick", side_effect)
        await ctx.schedule("use", value)
        return value

    h = History()
    result = await activate(op, h)
    assert result.commands[0] == {
        "type": "RECORD_OPERATION",
        "operationName": "pick",
        "result": 101,
    }
    assert result.commands[1]["input"] == 101
    h.add("TASK_COMPLETED", taskExecutionId=tid(1), output=None)
    result = await activate(op, h)
    assert result.commands == [{"type": "COMPLETE_WORKFLOW", "output": 101}]
    assert counter["n"] == 1


async def test_run_accepts_async_functions_doing_real_io() -> None:
    real_loop = asyncio.get_running_loop()
    seen: list[Any] = []

    async def fetch() -> dict[str, Any]:
        seen.append(asyncio.get_running_loop())
        await asyncio.sleep(0.01)  # real sleep on the worker's loop
        return {"rate": 1.5}

    @workflow(name="async-op")
    async def wf(ctx: WorkflowContext, input: Any) -> Any:
        return await ctx.run("fetch-rate", fetch)

    result = await activate(wf, History())
    assert result.commands == [
        {"type": "RECORD_OPERATION", "operationName": "fetch-rate", "result": {"rate": 1.5}},
        {"type": "COMPLETE_WORKFLOW", "output": {"rate": 1.5}},
    ]
    assert seen == [real_loop]
    assert asyncio.get_running_loop() is real_loop


async def test_run_failure_fails_the_workflow_without_recording() -> None:
    @workflow(name="op-fail")
    async def wf(ctx: WorkflowContext, input: Any) -> Any:
        try:
            await ctx.run("explode", lambda: 1 / 0)
        except ZeroDivisionError:
            return "caught"  # not reached: a failed operation fails the workflow

    result = await activate(wf, History())
    assert result.status == "FAILED"
    assert types(result) == ["FAIL_WORKFLOW"]
    assert result.commands[0]["error"] == "ZeroDivisionError: division by zero"


async def test_operations_in_parallel_branches_replay_in_the_same_order() -> None:
    @workflow(name="branches")
    async def wf(ctx: WorkflowContext, input: Any) -> Any:
        async def branch_a() -> Any:
            v = await ctx.run("a", lambda: "A")
            return await ctx.schedule("after-a", v)

        async def branch_b() -> Any:
            return await ctx.schedule("b")

        return await asyncio.gather(branch_a(), branch_b())

    h = History()
    first = await activate(wf, h)
    assert [c.get("kind") or c["type"] for c in first.commands] == [
        "b",
        "RECORD_OPERATION",
        "after-a",
    ]
    replayed = await activate(wf, h)
    assert replayed.commands == []


# -- determinism helpers --


async def test_random_uuid_and_random_are_stable_across_replays() -> None:
    seen: list[Any] = []

    @workflow(name="rand")
    async def wf(ctx: WorkflowContext, input: Any) -> Any:
        values = [str(ctx.random_uuid()), str(ctx.random_uuid()), ctx.random().random()]
        seen.append(values)
        await ctx.schedule("t", values)
        return values

    h = History()
    await activate(wf, h)
    h.add("TASK_COMPLETED", taskExecutionId=tid(1), output=None)
    result = await activate(wf, h)
    assert seen[0] == seen[1]
    assert seen[0][0] == str(uuid.uuid5(NS, "uuid-1"))
    assert seen[0][1] == str(uuid.uuid5(NS, "uuid-2"))
    assert result.commands[-1]["output"] == seen[0]


async def test_current_time_is_the_latest_applied_event_timestamp() -> None:
    times: list[datetime] = []

    @workflow(name="clock")
    async def wf(ctx: WorkflowContext, input: Any) -> Any:
        times.append(ctx.current_time())
        await ctx.sleep(10)
        times.append(ctx.current_time())
        return ctx.current_time().isoformat()

    h = History()
    await activate(wf, h)
    h.add("TIMER_FIRED", timerId=timer_id(1))
    await activate(wf, h)
    assert times == [
        T0 + timedelta(seconds=1),
        T0 + timedelta(seconds=1),
        T0 + timedelta(seconds=3),
    ]


# -- cancellation --


@workflow(name="cancellable")
async def cancellable(ctx: WorkflowContext, input: Any) -> Any:
    await ctx.schedule("long")
    return "finished"


async def test_cancellation_ends_cancelled_without_terminal_command() -> None:
    h = History()
    await activate(cancellable, h)
    h.add("CANCELLATION_REQUESTED", reason="user")
    result = await activate(cancellable, h)
    assert result.status == "CANCELLED"
    assert result.commands == []


async def test_cancellation_cleanup_runs_and_resolves_from_later_history() -> None:
    @workflow(name="cleanup")
    async def wf(ctx: WorkflowContext, input: Any) -> Any:
        try:
            await ctx.sleep(3600)
        except asyncio.CancelledError:
            assert ctx.cancellation_requested
            await ctx.schedule("release", "hold-1")
            return "cleaned up"
        return "slept"

    h = History()
    await activate(wf, h)
    h.add("CANCELLATION_REQUESTED", reason="user")
    result = await activate(wf, h)
    assert result.status == "SUSPENDED"
    assert result.commands == [
        {"type": "CANCEL_TIMER", "timerId": timer_id(1)},
        {
            "type": "SCHEDULE_TASK",
            "taskExecutionId": tid(1),
            "kind": "release",
            "input": "hold-1",
            "queue": "default",
        },
    ]
    h.add("TASK_COMPLETED", taskExecutionId=tid(1), output=None)
    result = await activate(wf, h)
    assert result.status == "COMPLETED"
    assert result.commands == [{"type": "COMPLETE_WORKFLOW", "output": "cleaned up"}]


async def test_server_cancelled_timer_is_not_cancelled_again() -> None:
    h = History()

    @workflow(name="sleeper")
    async def sleeper(ctx: WorkflowContext, input: Any) -> Any:
        await ctx.sleep(60)

    await activate(sleeper, h)
    h.add("CANCELLATION_REQUESTED")
    h.add("TIMER_CANCELLED", timerId=timer_id(1))  # appended by the server itself
    result = await activate(sleeper, h)
    assert result.status == "CANCELLED"
    assert result.commands == []


# -- signals, promises, children, state --


async def test_signals_queue_per_name_in_arrival_order() -> None:
    @workflow(name="signals")
    async def wf(ctx: WorkflowContext, input: Any) -> Any:
        await ctx.schedule("first")
        a = await ctx.wait_for_signal("go")
        b = await ctx.wait_for_signal("go")
        other = await ctx.wait_for_signal("other")
        return [a, b, other]

    h = History()
    await activate(wf, h)
    h.add("SIGNAL_RECEIVED", signalName="go", signalValue=1)  # before the code waits
    h.add("SIGNAL_RECEIVED", signalName="other", signalValue="o")
    h.add("TASK_COMPLETED", taskExecutionId=tid(1), output=None)
    result = await activate(wf, h)
    assert result.status == "SUSPENDED"
    h.add("SIGNAL_RECEIVED", signalName="go", signalValue=2)
    result = await activate(wf, h)
    assert result.commands == [{"type": "COMPLETE_WORKFLOW", "output": [1, 2, "o"]}]


async def test_promise_resolve_reject_and_timeout() -> None:
    @workflow(name="approval")
    async def wf(ctx: WorkflowContext, input: Any) -> Any:
        try:
            return await ctx.promise("approve", timeout=timedelta(hours=1))
        except PromiseRejected as exc:
            return f"rejected:{exc.error}"
        except PromiseTimeout:
            return "timed out"

    pid = str(uuid.uuid5(NS, "promise-approve"))
    outcomes = {
        "PROMISE_RESOLVED": ({"value": {"ok": True}}, {"ok": True}),
        "PROMISE_REJECTED": ({"error": "no"}, "rejected:no"),
        "PROMISE_TIMEOUT": ({}, "timed out"),
    }
    for event_type, (data, expected) in outcomes.items():
        h = History()
        result = await activate(wf, h)
        assert result.commands == [
            {"type": "CREATE_PROMISE", "promiseName": "approve", "timeoutMs": 3600000}
        ]
        h.add(event_type, promiseId=pid, promiseName="approve", **data)
        result = await activate(wf, h)
        assert result.commands == [{"type": "COMPLETE_WORKFLOW", "output": expected}]


async def test_child_workflow_completes_and_fails() -> None:
    @workflow(name="kid")
    async def kid(ctx: WorkflowContext, input: Any) -> Any:
        return input

    @workflow(name="parent2")
    async def parent(ctx: WorkflowContext, input: Any) -> Any:
        ok = await ctx.schedule_workflow(kid, 1, name="first")
        try:
            await ctx.schedule_workflow(kid, 2)
        except ChildWorkflowFailed as exc:
            return [ok, exc.error, exc.name]

    h = History()
    result = await activate(parent, h)
    assert result.commands == [
        {
            "type": "SCHEDULE_CHILD_WORKFLOW",
            "childExecutionName": "first",
            "childWorkflowExecutionId": child_id(1),
            "kind": "kid",
            "input": 1,
            "queue": "default",
        }
    ]
    h.add(
        "CHILD_WORKFLOW_COMPLETED",
        childWorkflowExecutionId=child_id(1),
        childExecutionName="first",
        output="one",
    )
    result = await activate(parent, h)
    assert result.commands[0]["childExecutionName"] == "kid-2"
    h.add(
        "CHILD_WORKFLOW_FAILED",
        childWorkflowExecutionId=child_id(2),
        childExecutionName="kid-2",
        error="bad",
    )
    result = await activate(parent, h)
    assert result.commands == [{"type": "COMPLETE_WORKFLOW", "output": ["one", "bad", "kid-2"]}]


async def test_state_is_local_and_emitted_only_beyond_history() -> None:
    @workflow(name="stateful")
    async def wf(ctx: WorkflowContext, input: Any) -> Any:
        ctx.set("step", 1)
        ctx.set("items", ["a"])
        await ctx.sleep(1)
        ctx.clear("step")
        ctx.set("done", True)
        snapshot = {k: ctx.get(k) for k in ctx.state_keys()}
        ctx.clear_all()
        return [snapshot, ctx.get("items", "gone")]

    h = History()
    result = await activate(wf, h)
    assert types(result) == ["SET_STATE", "SET_STATE", "START_TIMER"]
    h.add("TIMER_FIRED", timerId=timer_id(1))
    result = await activate(wf, h)
    assert result.commands == [
        {"type": "CLEAR_STATE", "key": "step"},
        {"type": "SET_STATE", "key": "done", "value": True},
        {"type": "CLEAR_STATE", "key": "items"},
        {"type": "CLEAR_STATE", "key": "done"},
        {"type": "COMPLETE_WORKFLOW", "output": [{"items": ["a"], "done": True}, "gone"]},
    ]


# -- asyncio features and typing --


async def test_taskgroup_shield_and_wait_work_in_workflow_code() -> None:
    @workflow(name="asyncio-features")
    async def wf(ctx: WorkflowContext, input: Any) -> Any:
        async with asyncio.TaskGroup() as group:
            a = group.create_task(ctx.schedule("a"))
            b = group.create_task(ctx.schedule("b"))
        c = await asyncio.shield(ctx.schedule_async("c"))
        return [a.result(), b.result(), c, asyncio.current_task() is not None]

    h = History()
    result = await activate(wf, h)
    assert [c["kind"] for c in result.commands] == ["a", "b"]
    h.add("TASK_COMPLETED", taskExecutionId=tid(2), output="B")
    h.add("TASK_COMPLETED", taskExecutionId=tid(1), output="A")
    result = await activate(wf, h)
    assert [c["kind"] for c in result.commands] == ["c"]
    h.add("TASK_COMPLETED", taskExecutionId=tid(3), output="C")
    result = await activate(wf, h)
    assert result.commands[-1]["output"] == ["A", "B", "C", True]


class Order(BaseModel):
    order_id: str
    amount: int


class Receipt(BaseModel):
    order_id: str
    paid: bool


@task(name="pay")
async def pay(ctx: Any, order: Order) -> Receipt:
    return Receipt(order_id=order.order_id, paid=True)


@workflow(name="typed-order")
class TypedOrder:
    """Order workflow written as a class."""

    def __init__(self) -> None:
        self.instances = 1

    async def run(self, ctx: WorkflowContext, order: Order) -> Receipt:
        assert isinstance(order, Order)
        receipt = await ctx.schedule(pay, order)
        assert isinstance(receipt, Receipt)  # validated into the declared output model
        return receipt


async def test_pydantic_models_in_and_out() -> None:
    h = History({"order_id": "o-1", "amount": 5})
    result = await activate(TypedOrder, h)
    assert result.commands[0]["input"] == {"order_id": "o-1", "amount": 5}
    h.add("TASK_COMPLETED", taskExecutionId=tid(1), output={"order_id": "o-1", "paid": True})
    result = await activate(TypedOrder, h)
    assert result.commands == [
        {"type": "COMPLETE_WORKFLOW", "output": {"order_id": "o-1", "paid": True}}
    ]


async def test_invalid_input_fails_the_workflow() -> None:
    result = await activate(TypedOrder, History({"order_id": "o-1"}))
    assert result.status == "FAILED"
    assert result.commands[0]["error"].startswith("ValidationError:")


async def test_context_refuses_use_outside_workflow_code() -> None:
    kept: list[WorkflowContext] = []

    @workflow(name="leak")
    async def wf(ctx: WorkflowContext, input: Any) -> Any:
        kept.append(ctx)
        await ctx.sleep(1)

    await activate(wf, History())
    with pytest.raises(RuntimeError, match="after its activation ended"):
        kept[0].schedule_async("x")


async def test_suspended_coroutines_are_closed_at_the_end_of_an_activation() -> None:
    finally_ran: list[bool] = []

    @workflow(name="closer")
    async def wf(ctx: WorkflowContext, input: Any) -> Any:
        try:
            await ctx.sleep(1)
        finally:
            finally_ran.append(True)

    await activate(wf, History())
    assert finally_ran == [True]


# -- more edge cases --


async def test_sets_of_done_handles_iterate_in_creation_order() -> None:
    @workflow(name="many-timers")
    async def wf(ctx: WorkflowContext, input: Any) -> Any:
        timers = {ctx.sleep_async(i + 1): i for i in range(30)}
        done, _ = await asyncio.wait(list(timers))
        for handle in done:  # a set: its order must not depend on memory addresses
            ctx.schedule_async("after", timers[handle])
        return None

    h = History()
    await activate(wf, h)
    for n in range(1, 31):
        h.add("TIMER_FIRED", timerId=timer_id(n))
    result = await activate(wf, h)
    assert [c["input"] for c in result.commands[:-1]] == list(range(30))


async def test_swallowed_cancellation_completes_normally() -> None:
    @workflow(name="stubborn")
    async def wf(ctx: WorkflowContext, input: Any) -> Any:
        try:
            await ctx.schedule("long")
        except asyncio.CancelledError:
            return "ignored the cancel"

    h = History()
    await activate(wf, h)
    h.add("CANCELLATION_REQUESTED")
    h.add("TASK_CANCELLED", taskExecutionId=tid(1))
    result = await activate(wf, h)
    assert result.commands == [{"type": "COMPLETE_WORKFLOW", "output": "ignored the cancel"}]


async def test_task_cancelled_event_raises_task_failed_marked_cancelled() -> None:
    @workflow(name="bg")
    async def wf(ctx: WorkflowContext, input: Any) -> Any:
        handle = ctx.schedule_async("bg-task")
        try:
            await handle
        except TaskFailed as exc:
            return [exc.cancelled, str(exc)]

    h = History()
    await activate(wf, h)
    h.add("TASK_CANCELLED", taskExecutionId=tid(1))
    result = await activate(wf, h)
    assert result.commands[-1]["output"] == [True, "task 'bg-task' was cancelled"]


async def test_cancelled_error_without_a_request_fails_the_workflow() -> None:
    @workflow(name="self-cancel")
    async def wf(ctx: WorkflowContext, input: Any) -> Any:
        raise asyncio.CancelledError()

    result = await activate(wf, History())
    assert result.status == "FAILED"
    assert result.commands[0]["error"].startswith("CancelledError")


async def test_signal_waiter_that_lost_a_race_does_not_swallow_the_signal() -> None:
    @workflow(name="signal-or-timeout")
    async def wf(ctx: WorkflowContext, input: Any) -> Any:
        waiter = ctx.wait_for_signal_async("approve")
        timer = ctx.sleep_async(60)
        done, _ = await asyncio.wait([waiter, timer], return_when=asyncio.FIRST_COMPLETED)
        if waiter not in done:
            waiter.cancel()
        return await ctx.wait_for_signal("approve")

    h = History()
    await activate(wf, h)
    h.add("TIMER_FIRED", timerId=timer_id(1))
    h.add("SIGNAL_RECEIVED", signalName="approve", signalValue="yes")
    result = await activate(wf, h)
    assert result.commands == [{"type": "COMPLETE_WORKFLOW", "output": "yes"}]


async def test_retry_without_attempt_number_still_gets_distinct_ids() -> None:
    @workflow(name="flaky-flow")
    async def wf(ctx: WorkflowContext, input: Any) -> Any:
        return await ctx.schedule("flaky")

    h = History()
    await activate(wf, h)
    h.add("TASK_FAILED", taskExecutionId=tid(1), error="1")
    await activate(wf, h)
    h.add("RETRY_REQUESTED")
    first = await activate(wf, h)
    h.add("TASK_FAILED", taskExecutionId=tid(1, retry=1), error="2")
    await activate(wf, h)
    h.add("RETRY_REQUESTED")
    second = await activate(wf, h)
    assert [c["taskExecutionId"] for c in first.commands] == [tid(1, retry=1)]
    assert [c["taskExecutionId"] for c in second.commands] == [tid(1, retry=2)]


async def test_workflow_code_runs_on_the_replay_loop_and_the_real_loop_is_restored() -> None:
    real = asyncio.get_running_loop()
    seen: list[Any] = []

    @workflow(name="loops")
    async def wf(ctx: WorkflowContext, input: Any) -> Any:
        seen.append(asyncio.get_running_loop())
        return None

    await activate(wf, History())
    assert seen[0] is not real
    assert asyncio.get_running_loop() is real
