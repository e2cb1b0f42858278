"""Cross-process wake-ups on PostgreSQL: the LISTEN connection comes back after it is lost,
and a commit that wakes many keys splits them over several NOTIFY payloads."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import time
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from flovyn_server.engine import Engine
from flovyn_server.engine.wake import DUE_KEY
from flovyn_server.settings import Settings
from flovyn_server.store import open_store, postgres
from flovyn_server.store.postgres import (
    CHANNEL,
    LISTENER_NAME,
    NOTIFY_LIMIT,
    PostgresStore,
    notify_and_commit,
    notify_payloads,
)
from tests.conftest import POSTGRES_URL_ENV
from tests.integration.conftest import ADMIN_KEY, Flovyn, new_tenant
from tests.integration.helpers import eventually, wait_for
from tests.serverproc import ServerProcess

POSTGRES_LOG = "flovyn_server.store.postgres"


class Heard:
    """An `on_commit_notify` hook collecting every key it was called with."""

    def __init__(self) -> None:
        self.keys: set[str] = set()
        self.calls = 0

    def __call__(self, keys: Iterable[str]) -> None:
        self.calls += 1
        self.keys.update(keys)


class Resyncs:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


@contextlib.asynccontextmanager
async def two_stores(url: str) -> AsyncIterator[tuple[PostgresStore, PostgresStore]]:
    a, b = await open_store(url), await open_store(url)
    assert isinstance(a, PostgresStore) and isinstance(b, PostgresStore)
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()


async def terminate(admin: asyncpg.Connection, pid: int) -> None:
    assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid) is True


async def terminate_via(url: str, pid: int) -> None:
    admin = await asyncpg.connect(url)
    try:
        await terminate(admin, pid)
    finally:
        await admin.close()


def listener_pid(store: PostgresStore) -> int:
    assert store._listener is not None
    pid: int = store._listener.get_server_pid()
    return pid


def log_lines(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == POSTGRES_LOG and r.levelno == level]


# --- splitting the keys over payloads (no database) -------------------------------------------


def test_keys_that_fit_go_in_one_payload() -> None:
    assert notify_payloads("o", []) == []
    assert notify_payloads("o", {"b", "a", "c"}) == ["o|a,b,c"]
    assert notify_and_commit("o", ["k"]) == f"SELECT pg_notify('{CHANNEL}', 'o|k'); COMMIT"
    assert NOTIFY_LIMIT < 8000  # PostgreSQL refuses a payload of 8000 bytes or more


def test_many_keys_are_split_under_the_limit() -> None:
    origin = "0123456789ab"
    keys = {f"wf:{n:08d}-aaaa-bbbb-cccc-dddddddddddd:" + "q" * 80 + str(n) for n in range(600)}
    payloads = notify_payloads(origin, keys)
    assert len(payloads) > 1
    assert all(len(p.encode()) <= NOTIFY_LIMIT for p in payloads)
    assert all(p.startswith(origin + "|") for p in payloads)
    parts = [p.partition("|")[2].split(",") for p in payloads]
    assert [k for part in parts for k in part] == sorted(keys)  # each once, in order
    # greedy: a payload is closed only when the next key would not fit
    for part, after in itertools.pairwise(parts):
        assert len(origin) + 1 + len(",".join([*part, after[0]])) > NOTIFY_LIMIT

    sql = notify_and_commit(origin, keys)
    assert sql.count("pg_notify(") == len(payloads) and sql.endswith("; COMMIT")
    assert sql.startswith("SELECT pg_notify(") and sql.count("SELECT") == 1


def test_the_limit_boundary_is_exact() -> None:
    limit = 50
    room = limit - len("o|")  # bytes left for keys in one payload
    at_limit = "k" * room
    assert notify_payloads("o", [at_limit], limit) == ["o|" + at_limit]
    assert len(("o|" + at_limit).encode()) == limit
    with pytest.raises(ValueError, match="does not fit"):
        notify_payloads("o", [at_limit + "k"], limit)
    # two keys and their comma filling the payload exactly, then one byte too many
    first, second = "a" * 10, "b" * (room - 11)
    assert notify_payloads("o", [second, first], limit) == [f"o|{first},{second}"]
    assert notify_payloads("o", [first, second + "b"], limit) == [f"o|{first}", f"o|{second}b"]
    # bytes, not characters: "é" is two bytes in UTF-8
    wide = "é" * (room // 2)
    assert notify_payloads("o", [wide], limit) == ["o|" + wide]
    with pytest.raises(ValueError):
        notify_payloads("o", [wide + "é"], limit)
    fits = notify_payloads("o", ["é", "e" * (room - 3)], limit)  # 45 + comma + 2 bytes
    assert fits == ["o|" + "e" * (room - 3) + ",é"] and len(fits[0].encode()) == limit
    assert notify_payloads("o", ["é", "e" * (room - 2)], limit) == ["o|" + "e" * (room - 2), "o|é"]


def test_quotes_in_a_payload_are_escaped() -> None:
    assert notify_and_commit("o", ["it's"]) == f"SELECT pg_notify('{CHANNEL}', 'o|it''s'); COMMIT"


# --- PostgreSQL --------------------------------------------------------------------------------


async def test_a_commit_waking_many_keys_reaches_the_other_store(postgres_url: str) -> None:
    keys = {f"wf:{n:036d}:" + "q" * 80 for n in range(600)}  # ~120 bytes each, 72 kB in all
    assert sum(len(k) + 1 for k in keys) > 8 * NOTIFY_LIMIT
    async with two_stores(postgres_url) as (a, b):
        heard_a, heard_b = Heard(), Heard()
        a.on_commit_notify(heard_a)
        b.on_commit_notify(heard_b)
        async with a.transaction() as tx:
            await tx.execute("SELECT 1")
            for key in keys:
                tx.notify(key)
        assert heard_a.keys == keys and heard_a.calls == 1  # local: at once, in one call
        await eventually(lambda: heard_b.keys == keys, within=10)
        assert heard_b.calls == len(notify_payloads("x" * 12, keys))


async def test_listener_reconnects_after_its_backend_is_terminated(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=POSTGRES_LOG)
    async with two_stores(postgres_url) as (a, b):
        heard, resyncs = Heard(), Resyncs()
        b.on_commit_notify(heard)
        b.on_resync(resyncs)
        old = listener_pid(b)
        await terminate_via(postgres_url, old)

        started = time.monotonic()

        async def heard_k1() -> bool:
            async with a.transaction() as tx:
                tx.notify("k1")
            await asyncio.sleep(0.05)
            return "k1" in heard.keys

        await wait_for(heard_k1, within=5, interval=0, what="k1 to reach store B")
        elapsed = time.monotonic() - started
        assert elapsed < 3, elapsed
        assert resyncs.count == 1
        assert listener_pid(b) != old
        assert len(log_lines(caplog, logging.WARNING)) == 1
        assert len(log_lines(caplog, logging.INFO)) == 1

        admin = await asyncpg.connect(postgres_url)
        try:
            names = await admin.fetch(
                "SELECT pid FROM pg_stat_activity WHERE application_name = $1 "
                "AND datname = current_database() AND query LIKE 'LISTEN%'",
                LISTENER_NAME,
            )
        finally:
            await admin.close()
        assert {r["pid"] for r in names} == {listener_pid(a), listener_pid(b)}
    assert b._watcher is None
    pending = [t for t in asyncio.all_tasks() if t.get_name() == "flovyn-listen"]
    assert pending == []


async def test_a_listener_that_stops_answering_is_replaced(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A peer gone silent (no FIN or RST) is found by the periodic health check."""
    caplog.set_level(logging.INFO, logger=POSTGRES_LOG)
    monkeypatch.setattr(postgres, "HEALTH_EVERY_S", 0.1)
    async with two_stores(postgres_url) as (a, b):
        heard, resyncs = Heard(), Resyncs()
        b.on_commit_notify(heard)
        b.on_resync(resyncs)
        old = listener_pid(b)

        async def silent(*_args: Any, **_kwargs: Any) -> Any:
            raise TimeoutError

        with monkeypatch.context() as patch:  # only the listener's health check uses fetchval
            patch.setattr(asyncpg.Connection, "fetchval", silent)
            await eventually(lambda: resyncs.count >= 1)
        assert listener_pid(b) != old
        assert "health check failed: TimeoutError" in log_lines(caplog, logging.WARNING)[0]

        async def heard_k2() -> bool:  # repeated: B may still be backing off, deaf
            async with a.transaction() as tx:
                tx.notify("k2")
            await asyncio.sleep(0.05)
            return "k2" in heard.keys

        await wait_for(heard_k2, within=10, interval=0, what="k2 to reach store B")


async def test_wakeups_missed_while_deaf_resync_every_waiter(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """While the listener cannot reconnect, NOTIFYs are lost; once it is back the store
    resyncs, and the engine wakes every waiter (the scheduler's `due` one included) to
    read again. close() stops a reconnect loop that is still backing off."""
    caplog.set_level(logging.DEBUG, logger=POSTGRES_LOG)
    database = postgres_url.rsplit("/", 1)[1]
    admin = await asyncpg.connect(os.environ[POSTGRES_URL_ENV])  # not on `database`
    try:
        async with two_stores(postgres_url) as (a, b):
            engine = Engine(b, Settings(), ADMIN_KEY)
            heard, resyncs = Heard(), Resyncs()
            b.on_commit_notify(heard)
            b.on_resync(resyncs)
            with engine.hub.waiter("wf:t:q") as poll, engine.hub.waiter(DUE_KEY) as due:
                await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
                await terminate(admin, listener_pid(b))
                await eventually(lambda: len(log_lines(caplog, logging.DEBUG)) >= 2)
                async with a.transaction() as tx:  # a's pooled connection is still open
                    tx.notify("wf:t:q")
                await asyncio.sleep(0.2)
                assert "wf:t:q" not in heard.keys and not poll.event.is_set()
                assert resyncs.count == 0
                await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
                await eventually(lambda: resyncs.count == 1, within=8)
                assert poll.event.is_set() and due.event.is_set()
            assert len(log_lines(caplog, logging.WARNING)) == 1
            assert len(log_lines(caplog, logging.INFO)) == 1

            # deaf again, and closed while reconnecting
            await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
            await terminate(admin, listener_pid(b))
            await eventually(lambda: len(log_lines(caplog, logging.WARNING)) == 2)
            await asyncio.sleep(0.5)  # a few attempts, backing off
            watcher = b._watcher
            assert watcher is not None and not watcher.done()
            started = time.monotonic()
            await b.close()
            assert time.monotonic() - started < 1
            assert watcher.cancelled() and b._watcher is None
    finally:
        await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
        await admin.close()


# --- two server processes ----------------------------------------------------------------------


async def listener_pids(url: str) -> set[int]:
    admin = await asyncpg.connect(url)
    try:
        rows = await admin.fetch(
            "SELECT pid FROM pg_stat_activity WHERE application_name = $1 "
            "AND datname = current_database()",
            LISTENER_NAME,
        )
    finally:
        await admin.close()
    return {r["pid"] for r in rows}


async def test_a_poll_on_a_server_whose_listener_was_killed_is_still_woken(
    postgres_url: str, tmp_path: Path
) -> None:
    first = ServerProcess(postgres_url, tmp_path / "server-a")
    second = ServerProcess(postgres_url, tmp_path / "server-b")
    try:
        await asyncio.to_thread(first.start)  # first: it creates the schema
        pids_a = await listener_pids(postgres_url)
        await asyncio.to_thread(second.start)
        pids_b = await listener_pids(postgres_url) - pids_a
        assert len(pids_a) == 1 and len(pids_b) == 1, (pids_a, pids_b)
        async with aiohttp.ClientSession() as session:
            a, b = Flovyn(first.url, session), Flovyn(second.url, session)
            a.slug, a.api_key, a.worker_token = await new_tenant(a)
            b.slug, b.api_key, b.worker_token = a.slug, a.api_key, a.worker_token
            registered = await b.ok(
                "POST",
                "P/worker/register",
                {"name": "listen-test", "workflows": [{"kind": "listen-echo"}]},
                key=b.worker_token,
            )
            poll_body: dict[str, Any] = {
                "workerId": registered["workerId"],
                "queue": "default",
                "kinds": ["listen-echo"],
                "maxItems": 1,
                "timeoutMs": 30_000,
            }
            poll = asyncio.create_task(
                b.call("POST", "P/worker/workflows/poll", poll_body, key=b.worker_token)
            )
            await asyncio.sleep(0.5)  # the poll is held open on server B
            await terminate_via(postgres_url, pids_b.pop())
            await asyncio.to_thread(second.wait_for_log, "LISTEN connection back", 10.0)
            assert "LISTEN connection lost" in second.log_text()
            await asyncio.sleep(0.3)  # B's resync woke the poll: it re-read, found nothing
            assert not poll.done()  # and waits again

            started = time.monotonic()
            triggered = await a.ok("POST", "P/workflows/listen-echo/trigger", {"input": "x"})
            status, answer = await asyncio.wait_for(poll, timeout=5)
            elapsed = time.monotonic() - started
            assert status == 200, answer
            assert [x["workflowExecutionId"] for x in answer["activations"]] == [
                triggered["workflowExecutionId"]
            ]
            assert elapsed < 2.0, elapsed
            assert "LISTEN connection lost" not in first.log_text()
    finally:
        await asyncio.to_thread(second.stop)
        await asyncio.to_thread(first.stop)
    for server in (first, second):  # a clean shutdown: nothing left pending
        text = server.log_text()
        assert "Task was destroyed" not in text and "Traceback" not in text, text[-3000:]
