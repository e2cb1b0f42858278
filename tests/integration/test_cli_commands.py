"""Every `flovyn` command against a real server and a real worker, on both stores:
`-o json` equal to the API's own answer, readable tables, exit statuses (API error,
usage error, no server), watch-tasks on a workflow that completes and one that fails,
confirmation, profiles, help and completion.

The command runs in a thread with its own event loop (it calls `asyncio.run`), while
the server and the worker go on in the test's loop.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import click
import pytest
from click.testing import CliRunner, Result

from flovyn_tui.cli import main
from flovyn_worker import RetryPolicy, TaskContext, WorkflowContext, task, workflow
from tests.integration.conftest import ADMIN_KEY, Flovyn, new_tenant
from tests.integration.helpers import wait_status
from tests.serverproc import ServerProcess


@task(name="cli-step")
async def step(ctx: TaskContext, n: int) -> int:
    ctx.logger.info("step %d", n)
    ctx.logger.warning("step %d is slow", n)
    await ctx.report_progress(0.5, "halfway")
    return n * 2


@task(
    name="cli-broken",
    retry_policy=RetryPolicy(max_attempts=2, initial_interval=timedelta(milliseconds=50)),
)
async def broken(ctx: TaskContext, n: int) -> int:
    raise RuntimeError(f"broken on attempt {ctx.attempt}")


@workflow(name="cli-ok")
async def ok_flow(ctx: WorkflowContext, n: int) -> dict[str, Any]:
    ctx.set("stage", "started")
    doubled = await ctx.schedule(step, n)
    ctx.set("stage", "done")
    return {"doubled": doubled}


@workflow(name="cli-bad")
async def bad_flow(ctx: WorkflowContext, n: int) -> int:
    return await ctx.schedule(broken, n)


@workflow(name="cli-waits")
async def waits(ctx: WorkflowContext, n: int) -> Any:
    return await ctx.wait_for_signal("go")


class Cli:
    """`flovyn ...` as a user runs it, with the test server in FLOVYN_* variables."""

    def __init__(self, f: Flovyn, config_home: Path) -> None:
        self.f = f
        self.env = {
            "FLOVYN_SERVER": f.url,
            "FLOVYN_TENANT": f.slug,
            "FLOVYN_API_KEY": f.api_key,
            "FLOVYN_PROFILE": "",
            "XDG_CONFIG_HOME": str(config_home),
            "NO_COLOR": None,
        }

    async def __call__(self, *args: str, env: dict[str, str | None] | None = None) -> Result:
        runner = CliRunner()
        return await asyncio.to_thread(
            runner.invoke, main, list(args), env=self.env | (env or {}), catch_exceptions=False
        )

    async def ok(self, *args: str, **kw: Any) -> Result:
        result = await self(*args, **kw)
        assert result.exit_code == 0, (args, result.output)
        return result

    async def json(self, *args: str) -> Any:
        return json.loads((await self.ok(*args, "-o", "json")).stdout)


@pytest.fixture
def cli(flovyn: Flovyn, tmp_path: Path) -> Cli:
    return Cli(flovyn, tmp_path / "config")


async def test_json_output_is_the_apis_answer(flovyn: Flovyn, cli: Cli) -> None:
    f = flovyn
    async with f.worker([ok_flow, waits], [step]):
        started = await cli.json("workflow", "trigger", "cli-ok", "--input", "21", "--wait")
        wf_id = started["id"]
        assert started["output"] == {"doubled": 42}
        base = f"P/workflow-executions/{wf_id}"
        assert await cli.json("workflow", "get", wf_id) == await f.ok("GET", base)
        for verb, path in (
            ("events", "/events"),
            ("tasks", "/tasks"),
            ("children", "/children"),
            ("state", "/state"),
        ):
            assert await cli.json("workflow", verb, wf_id) == await f.ok("GET", base + path), verb
        task_id = (await f.tasks(wf_id))[0]["id"]
        tasks = f"{base}/tasks/{task_id}"
        assert await cli.json("workflow", "task-attempts", wf_id, task_id) == await f.ok(
            "GET", tasks + "/attempts"
        )
        logs = await cli.json("workflow", "task-logs", wf_id, task_id, "--level", "warn")
        assert logs == await f.ok("GET", tasks + "/logs", params={"level": "WARN"})
        assert [line["level"] for line in logs["logs"]] == ["WARN"]
        listed = await cli.json("workflow", "list", "--kind", "cli-ok", "--limit", "5")
        assert listed == await f.ok(
            "GET", "P/workflow-executions", params={"kind": "cli-ok", "limit": "5"}
        )
        counts = await cli.json("workflow", "counts")
        assert counts == await f.ok("GET", "P/workflow-executions/counts")
        assert counts["counts"]["COMPLETED"] == 1
        workers = await cli.json("worker", "list")
        assert workers == await f.ok("GET", "P/workers")
        worker_id = workers["workers"][0]["id"]
        assert await cli.json("worker", "get", worker_id) == await f.ok(
            "GET", f"P/workers/{worker_id}"
        )
        assert await cli.json("definition", "list") == await f.ok("GET", "P/workflow-definitions")
        assert await cli.json("definition", "get", "cli-step", "--type", "task") == await f.ok(
            "GET", "P/task-definitions/cli-step"
        )
        assert await cli.json("tenant", "get") == await f.ok("GET", f"/api/tenants/{f.slug}")
        # jsonl: one line per item
        lines = (await cli.ok("workflow", "events", wf_id, "-o", "jsonl")).stdout.splitlines()
        assert [json.loads(line) for line in lines] == (await f.ok("GET", base + "/events"))[
            "events"
        ]
        # signal, then the state of a waiting workflow
        waiting = (await cli.json("workflow", "trigger", "cli-waits", "--input", "1"))[
            "workflowExecutionId"
        ]
        await wait_status(f, waiting, "WAITING")
        result = await cli.ok("workflow", "signal", waiting, "go", "--value", '{"ok": true}')
        assert "recorded" in result.stdout
        await wait_status(f, waiting, "COMPLETED")
        assert (await f.ok("GET", f"P/workflow-executions/{waiting}"))["output"] == {"ok": True}


async def test_tables_are_readable(flovyn: Flovyn, cli: Cli) -> None:
    f = flovyn
    async with f.worker([ok_flow, bad_flow], [step, broken]):
        ok = (await cli.json("workflow", "trigger", "cli-ok", "--input", "1", "--wait"))["id"]
        result = await cli("workflow", "trigger", "cli-bad", "--input", "1", "--wait")
        assert result.exit_code == 1
        assert "failed" in result.stderr and "broken on attempt 2" in result.stderr
        table = (await cli.ok("workflow", "list")).stdout
        assert "\x1b[" not in table  # no colour when not a terminal
        assert "✓ COMPLETED" in table and "✗ FAILED" in table
        assert ok[:8] in table and ok not in table  # ids shortened
        assert "2 of 2 executions" in table
        detail = (await cli.ok("workflow", "get", ok)).stdout
        assert '"doubled": 2' in detail and "✓ COMPLETED" in detail
        tasks = (await cli.ok("workflow", "tasks", ok)).stdout
        assert "cli-step" in tasks and "1/1" not in tasks  # attempts of a default policy
        logs = (await cli.ok("workflow", "task-logs", ok, (await f.tasks(ok))[0]["id"])).stdout
        assert "INFO  #1 step 1" in logs and "WARN  #1 step 1 is slow" in logs
        # --follow: the lines so far, then it stops once the task has ended
        task_id = (await f.tasks(ok))[0]["id"]
        followed = await cli.ok("workflow", "task-logs", ok, task_id, "--follow", "--level", "warn")
        assert followed.stdout.count("step 1") == 1 and "WARN  #1 step 1 is slow" in followed.stdout
        counts = (await cli.ok("workflow", "counts")).stdout
        assert "✓ COMPLETED" in counts and "✗ FAILED" in counts
        workers = (await cli.ok("worker", "list")).stdout
        assert "● ONLINE" in workers
        definitions = (await cli.ok("definition", "list")).stdout
        assert "cli-ok" in definitions and "AVAILABLE" in definitions


async def test_watch_tasks_until_completed_or_failed(flovyn: Flovyn, cli: Cli) -> None:
    f = flovyn
    async with f.worker([ok_flow, bad_flow], [step, broken]):
        ok = (await cli.json("workflow", "trigger", "cli-ok", "--input", "3"))[
            "workflowExecutionId"
        ]
        watched = await cli("workflow", "watch-tasks", ok, "--logs")
        assert watched.exit_code == 0, watched.output
        out = watched.stdout
        for expected in (
            "cli-step",
            "scheduled",
            "attempt 1 started",
            "50% halfway",
            "completed in",
        ):
            assert expected in out, out
        assert "WARN  #1 step 3 is slow" in out
        assert out.strip().splitlines()[-1].startswith("✓ COMPLETED cli-ok")
        bad = (await cli.json("workflow", "trigger", "cli-bad", "--input", "3"))[
            "workflowExecutionId"
        ]
        watched = await cli("workflow", "watch-tasks", bad)
        assert watched.exit_code == 1, watched.output
        out = watched.stdout
        assert "attempt 1 failed" in out and "broken on attempt 1" in out
        assert "retries in" in out and "(attempt 2)" in out
        assert "failed after" in out and "broken on attempt 2" in out
        last = out.strip().splitlines()[-1]
        assert last.startswith("✗ FAILED cli-bad") and "1 retries" in last
        # as JSON lines: each stream event's data, the end last
        lines = (await cli.ok("workflow", "watch-tasks", ok, "-o", "jsonl")).stdout.splitlines()
        assert json.loads(lines[-1])["type"] == "end"
        assert {json.loads(line)["type"] for line in lines} >= {"task_created", "task_completed"}


async def test_exit_statuses_and_errors(flovyn: Flovyn, cli: Cli) -> None:
    missing = "00000000-0000-4000-8000-000000000000"
    result = await cli("workflow", "get", missing)
    assert result.exit_code == 1
    assert "not found" in result.stderr and "HTTP 404" in result.stderr
    assert "Traceback" not in result.output
    result = await cli("workflow", "get", "not-a-uuid")
    assert result.exit_code == 1 and "HTTP 400" in result.stderr
    result = await cli("workflow", "list", "--bogus")
    assert result.exit_code == 2 and "No such option" in result.stderr
    result = await cli("workflow", "trigger", "k", "--input", "{nope")
    assert result.exit_code == 2 and "not JSON" in result.stderr
    result = await cli("workflow", "list", env={"FLOVYN_TENANT": None})
    assert result.exit_code == 2 and "no tenant" in result.stderr
    result = await cli("workflow", "list", env={"FLOVYN_API_KEY": None})
    assert result.exit_code == 1 and "HTTP 401" in result.stderr and "--api-key" in result.stderr
    result = await cli("workflow", "list", env={"FLOVYN_SERVER": "http://127.0.0.1:9"})
    assert result.exit_code == 3 and "cannot reach the server" in result.stderr
    result = await cli("workflow", "list", "-s", "nonsense")
    assert result.exit_code == 2 and "not a server URL" in result.stderr
    # The global flags work before and after the noun; the later wins.
    result = await cli("-t", "nobody-here", "workflow", "list", "-t", flovyn.slug)
    assert result.exit_code == 0, result.output
    result = await cli("-t", flovyn.slug, "workflow", "list", "-t", "nobody-here")
    assert result.exit_code == 1 and "HTTP 403" in result.stderr


async def test_cancel_asks_and_retry_repairs(flovyn: Flovyn, cli: Cli) -> None:
    f = flovyn
    wf_id = (await cli.json("workflow", "trigger", "cli-nobody"))["workflowExecutionId"]
    result = await cli("workflow", "cancel", wf_id)  # no terminal to ask on
    assert result.exit_code == 2 and "--yes" in result.stderr
    assert (await f.ok("GET", f"P/workflow-executions/{wf_id}"))["status"] == "PENDING"
    result = await cli.ok("workflow", "cancel", wf_id, "--yes", "--reason", "test")
    assert result.stdout.strip() == "CANCELLED"
    result = await cli("workflow", "retry", wf_id)
    assert result.exit_code == 1 and "HTTP 409" in result.stderr
    async with f.worker([bad_flow], [broken]):
        bad = (await cli.json("workflow", "trigger", "cli-bad", "--input", "1"))[
            "workflowExecutionId"
        ]
        await wait_status(f, bad, "FAILED")
        result = await cli.ok("workflow", "retry", bad, "--note", "try again")
        assert result.stdout.startswith("PENDING")


async def test_admin_commands(flovyn: Flovyn, cli: Cli) -> None:
    admin = {"FLOVYN_API_KEY": ADMIN_KEY, "FLOVYN_TENANT": None}
    result = await cli("tenant", "create", "cli-made", "--name", "Made", "-o", "json", env=admin)
    assert result.exit_code == 0, result.output
    made = json.loads(result.stdout)
    assert made == await flovyn.ok("GET", "/api/tenants/cli-made", key=ADMIN_KEY)
    result = await cli("tenant", "create", "cli-made", env=admin)
    assert result.exit_code == 1 and "HTTP 409" in result.stderr
    result = await cli("tenant", "update", "cli-made", "--retention", "3600", env=admin)
    assert result.exit_code == 0 and "1h00m" in result.stdout
    made_key = {"FLOVYN_API_KEY": ADMIN_KEY, "FLOVYN_TENANT": "cli-made"}
    result = await cli("api-key", "create", "--name", "ci", "-o", "json", env=made_key)
    key = json.loads(result.stdout)["key"]
    result = await cli("worker-token", "create", env=made_key)
    assert result.exit_code == 0 and "fwt_" in result.stdout
    # the new key reaches its tenant
    result = await cli("workflow", "list", env={"FLOVYN_API_KEY": key, "FLOVYN_TENANT": "cli-made"})
    assert result.exit_code == 0 and "0 of 0 executions" in result.stdout


async def test_profiles(flovyn: Flovyn, cli: Cli, tmp_path: Path) -> None:
    bare = {"FLOVYN_SERVER": None, "FLOVYN_TENANT": None, "FLOVYN_API_KEY": None}
    await cli.ok("config", "set", "server", flovyn.url, env=bare)
    await cli.ok("config", "set", "tenant", flovyn.slug, env=bare)
    await cli.ok("config", "set", "api-key", flovyn.api_key, env=bare)
    await cli.ok("config", "set", "tenant", "elsewhere", "--profile", "other", env=bare)
    path = tmp_path / "config" / "flovyn" / "config.toml"
    assert path.stat().st_mode & 0o077 == 0  # it holds keys: the owner's only
    assert (await cli.ok("config", "get", "tenant", env=bare)).stdout.strip() == flovyn.slug
    shown = (await cli.ok("config", "get", env=bare)).stdout
    assert flovyn.api_key not in shown  # shortened
    result = await cli("workflow", "list", env=bare)  # all from the profile
    assert result.exit_code == 0, result.output
    await cli.ok("config", "use-profile", "other", env=bare)
    result = await cli("workflow", "list", "-p", "default", env=bare)
    assert result.exit_code == 0, result.output
    result = await cli("workflow", "list", env=bare | {"FLOVYN_PROFILE": "missing"})
    assert result.exit_code == 2 and "no profile 'missing'" in result.stderr
    result = await cli("config", "use-profile", "missing", env=bare)
    assert result.exit_code == 1


def _leaves(
    group: click.Group, path: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], click.Command]]:
    found = []
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found += _leaves(command, (*path, name))
        else:
            found.append(((*path, name), command))
    return found


def test_every_command_has_help_with_an_example() -> None:
    runner = CliRunner()
    leaves = _leaves(main)
    assert len(leaves) >= 30
    for path, _ in leaves:
        result = runner.invoke(main, [*path, "--help"])
        assert result.exit_code == 0, path
        assert "Example" in result.stdout, path


def test_completion_scripts() -> None:
    runner = CliRunner()
    for shell, marker in (("bash", "complete -o"), ("zsh", "compdef"), ("fish", "complete")):
        result = runner.invoke(main, ["completion", shell])
        assert result.exit_code == 0 and marker in result.stdout, shell
        assert "_FLOVYN_COMPLETE" in result.stdout


async def test_follow_survives_a_server_restart(server: ServerProcess, tmp_path: Path) -> None:
    """`events --follow` in its own process while the server restarts: every event once,
    in order, then exit 0 when the execution ends."""
    connector = aiohttp.TCPConnector(force_close=True)  # nothing kept across the restart
    async with aiohttp.ClientSession(connector=connector) as session:
        f = Flovyn(server.url, session)
        f.slug, f.api_key, f.worker_token = await new_tenant(f)
        async with f.worker([two_signals], poll_timeout=2.0), f.client() as client:
            handle = await client.start_workflow(two_signals, None)
            env = os.environ | {
                "FLOVYN_SERVER": f.url,
                "FLOVYN_TENANT": f.slug,
                "FLOVYN_API_KEY": f.api_key,
                "XDG_CONFIG_HOME": str(tmp_path / "config"),
            }
            follower = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "flovyn_tui.cli", "workflow", "events", handle.id,
                "--follow", "-o", "jsonl",
                env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            assert follower.stdout is not None
            lines: list[dict[str, Any]] = []

            async def until(event_type: str) -> None:
                while not any(line["type"] == event_type for line in lines):
                    raw = await asyncio.wait_for(follower.stdout.readline(), 30)  # type: ignore[union-attr]
                    assert raw, "the follower stopped early"
                    lines.append(json.loads(raw))

            await handle.signal("go", 1)
            await until("SIGNAL_RECEIVED")
            await asyncio.to_thread(server.restart)
            await handle.signal("go", 2)
            out, err = await asyncio.wait_for(follower.communicate(), 60)
            lines += [json.loads(line) for line in out.decode().splitlines()]
            assert follower.returncode == 0, err.decode()
            assert b"Traceback" not in err
            assert await handle.result(timeout=10) == [1, 2]
        history = await f.events(handle.id)
    assert [line["sequence"] for line in lines] == [e["sequence"] for e in history]
    assert [line["type"] for line in lines] == [e["eventType"] for e in history]


@workflow(name="cli-two-signals")
async def two_signals(ctx: WorkflowContext, _: Any) -> list[Any]:
    return [await ctx.wait_for_signal("go"), await ctx.wait_for_signal("go")]


@task(
    name="cli-sa",
    retry_policy=RetryPolicy(max_attempts=3, initial_interval=timedelta(milliseconds=50)),
)
async def standalone(ctx: TaskContext, n: int) -> int:
    ctx.logger.info("standalone attempt %d", ctx.attempt)
    if ctx.attempt == 1:
        raise RuntimeError("first try fails")
    return n + 1


async def test_task_commands(flovyn: Flovyn, cli: Cli) -> None:
    f = flovyn
    async with f.worker([], [standalone]):
        done = await cli.json("task", "create", "cli-sa", "--input", "41", "--wait")
        task_id = done["id"]
        assert done["output"] == 42 and done["executionCount"] == 2
        assert await cli.json("task", "get", task_id) == await f.ok("GET", f"P/tasks/{task_id}")
        assert await cli.json("task", "list") == await f.ok(
            "GET", "P/tasks", params={"limit": "20"}
        )
        for verb, path in (("attempts", "/attempts"), ("logs", "/logs")):
            assert await cli.json("task", verb, task_id) == await f.ok(
                "GET", f"P/tasks/{task_id}{path}"
            )
        watched = await cli("task", "watch", task_id, "--logs")
        assert watched.exit_code == 0, watched.output
        assert "attempt 1 failed" in watched.stdout and "standalone attempt 2" in watched.stdout
        assert watched.stdout.strip().splitlines()[-1].startswith("✓ COMPLETED cli-sa")
        table = (await cli.ok("task", "list", "--status", "completed")).stdout
        assert "✓ COMPLETED" in table and "2/4" in table
    pending = (await cli.json("task", "create", "cli-nobody"))["id"]
    assert (await cli("task", "cancel", pending)).exit_code == 2  # asks first
    assert (await cli.ok("task", "cancel", pending, "--yes")).stdout.strip() == "CANCELLED"
    again = await cli("task", "cancel", pending, "--yes")
    assert again.exit_code == 1 and "HTTP 409" in again.stderr
    watched = await cli("task", "watch", pending)
    assert watched.exit_code == 1 and "CANCELLED" in watched.stdout


async def test_schedule_and_webhook_commands(flovyn: Flovyn, cli: Cli) -> None:
    f = flovyn
    made = await cli.json(
        "schedule", "create", "cli-every", "--every", "3600", "--workflow", "cli-ok",
        "--input", "5", "--overlap", "allow",
    )  # fmt: skip
    assert made == await f.ok("GET", f"P/schedules/{made['id']}")
    assert made["scheduleType"] == {"type": "interval", "everySeconds": 3600}
    assert (await cli("schedule", "create", "x", "--every", "5")).exit_code == 2  # no target
    bad = await cli("schedule", "create", "x", "--cron", "61 * * * *", "--workflow", "k")
    assert bad.exit_code == 1 and "is not valid" in bad.stderr
    listing = (await cli.ok("schedule", "list")).stdout
    assert "cli-every" in listing and "every 3600s" in listing and "workflow cli-ok" in listing
    fired = await cli.json("schedule", "trigger", made["id"])
    assert fired["targetType"] == "workflow"
    runs = await cli.json("schedule", "runs", made["id"])
    assert runs == await f.ok("GET", f"P/schedules/{made['id']}/runs", params={"limit": "50"})
    assert [r["targetId"] for r in runs["runs"]] == [fired["targetId"]]
    off = await cli.json("schedule", "disable", made["id"])
    assert off["enabled"] is False and off["nextRunAt"] is None
    assert (await cli.json("schedule", "enable", made["id"]))["enabled"] is True
    changed = await cli.json(
        "schedule", "update", made["id"], "--cron", "0 3 * * *", "--timezone", "Europe/Berlin",
        "--task", "cli-sa",
    )  # fmt: skip
    assert changed["name"] == "cli-every" and changed["target"]["taskKind"] == "cli-sa"
    assert (await cli.ok("schedule", "delete", made["id"], "--yes")).stdout.strip() == "deleted"

    hook = await cli.json(
        "webhook", "create", "pushes", "--slug", "cli-hook", "--provider", "github",
        "--secret", "a-long-shared-secret", "--route", "push=workflow:build",
        "--route", "*=promise:data.name@data.workflow",
    )  # fmt: skip
    assert hook == await f.ok("GET", f"P/webhooks/{hook['id']}")
    assert "secret" not in str(hook) and hook["url"] == f"/api/hooks/{f.slug}/cli-hook"
    assert hook["routes"][1]["target"] == {
        "type": "promise", "promiseNamePath": "data.name", "workflowIdPath": "data.workflow",
    }  # fmt: skip
    bad = await cli(
        "webhook", "create", "x", "--slug", "x-hook", "--no-verification", "--route", "oops"
    )
    assert bad.exit_code == 2 and "GLOB=workflow:KIND" in bad.stderr
    assert "cli-hook" in (await cli.ok("webhook", "list")).stdout
    assert await cli.json("webhook", "events", hook["id"]) == await f.ok(
        "GET", f"P/webhooks/{hook['id']}/events", params={"limit": "50"}
    )
    assert (await cli.ok("webhook", "delete", hook["id"], "--yes")).stdout.strip() == "deleted"
