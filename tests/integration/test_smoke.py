from __future__ import annotations

from flovyn_worker import TaskContext, WorkflowContext, task, workflow
from tests.integration.conftest import Flovyn
from tests.integration.helpers import ONE_TASK_HISTORY, assert_gapless, event_types


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
    assert event_types(events) == ONE_TASK_HISTORY
    assert_gapless(events)
