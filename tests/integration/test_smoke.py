from __future__ import annotations

from flovyn_worker import TaskContext, WorkflowContext, task, workflow
from tests.integration.conftest import Flovyn


@task(name="double")
async def double(ctx: TaskContext, n: int) -> int:
    return n * 2


@workflow(name="one-task")
async def one_task(ctx: WorkflowContext, n: int) -> int:
    return await ctx.schedule(double, n)


async def test_one_task_workflow(flovyn: Flovyn) -> None:
    async with flovyn.worker([one_task], [double]), flovyn.client() as client:
        handle = await client.start_workflow(one_task, 21)
        assert await handle.result(timeout=20) == 42
    events = await flovyn.events(handle.id)
    assert [e["eventType"] for e in events] == [
        "WORKFLOW_STARTED",
        "TASK_SCHEDULED",
        "TASK_COMPLETED",
        "WORKFLOW_COMPLETED",
    ]
    assert [e["sequence"] for e in events] == [1, 2, 3, 4]
