"""A workflow stream in a real browser: headless Chromium's EventSource reads it live.

The page is the server's own docs page, so the EventSource is same-origin (its CSP has
`connect-src 'self'`) and passes the API key as `?access_token=`, as a browser must.
A real workflow runs on the SDK's Worker while the page listens; what the page received
(names and payloads, with growing ids) must be the REST history, then `end`. SQLite only,
driven over the DevTools protocol as in `test_docs_browser.py`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from flovyn_server.domain import EventType
from flovyn_worker import WorkflowContext, workflow
from tests.integration.conftest import Flovyn
from tests.integration.test_docs_browser import chromium, chromium_binary

# Every name the stream may send; `message` catches an event sent without a name.
NAMES = [t.value for t in EventType] + ["end", "message"]

LISTEN = """
(() => {
  window.got = [];
  window.errors = 0;
  window.opened = false;
  const source = new EventSource(%(url)s);
  window.source = source;
  source.onopen = () => { window.opened = true; };
  source.onerror = () => { window.errors += 1; };
  const record = (e) => {
    window.got.push({event: e.type, id: e.lastEventId, data: JSON.parse(e.data)});
    if (e.type === 'end') source.close();
  };
  for (const name of %(names)s) source.addEventListener(name, record);
  return true;
})()
"""


@pytest.fixture(params=[pytest.param("sqlite", id="sqlite")])
def database_url(tmp_path: Path) -> str:
    """SQLite only (overrides the fixture parametrised over both stores)."""
    return f"sqlite://{tmp_path / 'flovyn.db'}"


@workflow(name="browser-stream-signals")
async def waits_for_two_signals(ctx: WorkflowContext, _: Any) -> Any:
    first = await ctx.wait_for_signal("go")
    second = await ctx.wait_for_signal("go")
    return [first, second]


async def test_event_source_reads_a_live_workflow(flovyn: Flovyn, tmp_path: Path) -> None:
    binary = chromium_binary()
    f = flovyn
    async with (
        chromium(binary, tmp_path) as page,
        f.worker([waits_for_two_signals]),
        f.client() as client,
    ):
        for domain in ("Runtime", "Log", "Page"):
            await page.send(f"{domain}.enable")
        await page.send("Page.navigate", url=f.url + "/api/docs")
        await page.until(
            f"location.href.startsWith({json.dumps(f.url)}) && document.readyState === 'complete'",
            "the docs page",
        )
        handle = await client.start_workflow(waits_for_two_signals, None)
        path = f"/api/tenants/{f.slug}/stream/workflows/{handle.id}?access_token={f.api_key}"
        await page.js(LISTEN % {"url": json.dumps(path), "names": json.dumps(NAMES)})
        await page.until("window.opened", "the EventSource to open")
        await page.until("window.got.length >= 1", "the replayed WORKFLOW_STARTED")

        # Live: each signal's event reaches the page while the stream stays open.
        await handle.signal("go", {"n": 1})
        await page.until(
            "window.got.some(e => e.event === 'SIGNAL_RECEIVED')", "the first signal's event"
        )
        assert not await page.js("window.got.some(e => e.event === 'end')")
        await handle.signal("go", {"n": 2})
        assert await handle.result(timeout=20) == [{"n": 1}, {"n": 2}]
        got: list[dict[str, Any]] = await page.until(
            "window.got.some(e => e.event === 'end') && window.got", "the end event"
        )
        assert await page.js("window.source.readyState") == 2  # CLOSED: closed on `end`
        assert await page.js("window.errors") == 0
        problems = [
            e["params"]
            for e in page.events
            if e["method"] == "Runtime.exceptionThrown"
            or (e["method"] == "Runtime.consoleAPICalled" and e["params"]["type"] == "error")
            or (e["method"] == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")
        ]
        assert not problems, problems  # e.g. a CSP refusal

    history = await f.events(handle.id)
    *events, end = got
    assert [e["event"] for e in events] == [h["eventType"] for h in history]
    ids = [int(e["id"]) for e in events]  # stream positions: growing along the stream
    assert ids == sorted(set(ids)), ids
    assert [e["data"] for e in events] == [
        {
            "workflowExecutionId": handle.id,
            "type": h["eventType"],
            "timestamp": h["timestamp"],
            "sequence": h["sequence"],
            "data": h["data"],
        }
        for h in history
    ]
    assert [e["event"] for e in events].count("SIGNAL_RECEIVED") == 2
    assert end["event"] == "end" and end["id"] == events[-1]["id"]
    assert end["data"]["workflowExecutionId"] == handle.id
    assert (end["data"]["type"], end["data"]["status"]) == ("end", "COMPLETED")
