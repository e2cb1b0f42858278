"""The Swagger UI page in headless Chromium: it renders every operation from local assets
only, and its "Try it out" calls the running server for real.

Driven over the Chrome DevTools Protocol with aiohttp's websocket client, so the test's
event loop keeps serving the server while the browser talks to it. SQLite only: the page
does not depend on the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import find_free_port
from tests.integration.conftest import Flovyn

WAIT_S = 30.0
REQUIRE_CHROMIUM_ENV = "FLOVYN_REQUIRE_CHROMIUM"  # CI: a missing chromium fails
LIST_PATH = "/api/tenants/{slug}/workflow-executions"


@pytest.fixture(params=[pytest.param("sqlite", id="sqlite")])
def database_url(tmp_path: Path) -> str:
    """SQLite only (overrides the fixture parametrised over both stores)."""
    return f"sqlite://{tmp_path / 'flovyn.db'}"


class Page:
    """One browser tab over CDP: commands with their answers, events kept in a list."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.ids = itertools.count(1)
        self.pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.events: list[dict[str, Any]] = []
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(msg.data)
            future = self.pending.pop(data.get("id", -1), None)
            if future is not None and not future.done():
                future.set_result(data)
            elif "method" in data:
                self.events.append(data)

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        call_id = next(self.ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.pending[call_id] = future
        await self.ws.send_json({"id": call_id, "method": method, "params": params})
        answer = await asyncio.wait_for(future, WAIT_S)
        assert "error" not in answer, (method, answer)
        result: dict[str, Any] = answer["result"]
        return result

    async def js(self, expression: str) -> Any:
        result = await self.send(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        assert "exceptionDetails" not in result, (expression, result["exceptionDetails"])
        return result["result"].get("value")

    async def until(self, expression: str, what: str) -> Any:
        """The value of `expression` once it is truthy; fail after WAIT_S seconds."""
        deadline = asyncio.get_running_loop().time() + WAIT_S
        while True:
            value = await self.js(expression)
            if value:
                return value
            if asyncio.get_running_loop().time() > deadline:
                text = await self.js("document.body ? document.body.innerText.slice(0, 2000) : ''")
                raise AssertionError(f"timed out after {WAIT_S}s waiting for {what}; page:\n{text}")
            await asyncio.sleep(0.2)

    async def click(self, selector: str, what: str) -> None:
        await self.until(f"!!document.querySelector({json.dumps(selector)})", what)
        await self.js(f"document.querySelector({json.dumps(selector)}).click()")


def chromium_binary() -> str:
    """The chromium to drive; skip without one (fail where CI requires it)."""
    binary = shutil.which("chromium")
    if binary is None:
        if os.environ.get(REQUIRE_CHROMIUM_ENV, "").strip().lower() in {"1", "true", "yes"}:
            pytest.fail(
                f"chromium not installed ({REQUIRE_CHROMIUM_ENV}=1): apt-get install chromium"
            )
        pytest.skip("chromium not installed: apt-get install chromium")
    return binary


@contextlib.asynccontextmanager
async def chromium(binary: str, tmp_path: Path) -> AsyncIterator[Page]:
    """A headless Chromium with one blank tab, killed on the way out whatever happens."""
    port = find_free_port()
    proc = await asyncio.create_subprocess_exec(
        binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
        "--disable-extensions", "--disable-background-networking",
        f"--remote-debugging-port={port}", f"--user-data-dir={tmp_path / 'chromium'}",
        "about:blank",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        async with aiohttp.ClientSession() as session:
            ws_url = await _page_target(session, port, proc)
            async with session.ws_connect(ws_url, max_msg_size=0) as ws:
                page = Page(ws)
                try:
                    yield page
                finally:
                    page.reader.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await page.reader
    finally:
        if proc.returncode is None:
            proc.terminate()  # chromium stops its helper processes too
            try:
                await asyncio.wait_for(proc.wait(), 5)
            except TimeoutError:
                proc.kill()
        await proc.wait()


async def _page_target(
    session: aiohttp.ClientSession, port: int, proc: asyncio.subprocess.Process
) -> str:
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while True:
        assert proc.returncode is None, f"chromium exited with {proc.returncode}"
        with contextlib.suppress(aiohttp.ClientError):
            async with session.get(f"http://127.0.0.1:{port}/json/list") as resp:
                for target in await resp.json():
                    if target.get("type") == "page" and target.get("webSocketDebuggerUrl"):
                        return str(target["webSocketDebuggerUrl"])
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"chromium's DevTools did not answer within {WAIT_S}s")
        await asyncio.sleep(0.2)


async def test_swagger_ui_renders_and_tries_a_route(flovyn: Flovyn, tmp_path: Path) -> None:
    binary = chromium_binary()
    _, doc = await flovyn.call("GET", "/api/docs/openapi.json", key="")
    operations = [op for item in doc["paths"].values() for op in item.values()]
    listing = doc["paths"][LIST_PATH]["get"]
    execution = await flovyn.ok("POST", "P/workflows/browser-demo/trigger", {"input": {}})
    execution_id = execution["workflowExecutionId"]

    async with chromium(binary, tmp_path) as page:
        for domain in ("Network", "Runtime", "Log", "Page"):
            await page.send(f"{domain}.enable")
        await page.send("Page.navigate", url=flovyn.url + "/api/docs")
        # Every operation of the document is rendered, with its summary.
        count = await page.until(
            f"document.querySelectorAll('.opblock').length >= {len(operations)}"
            " && document.querySelectorAll('.opblock').length",
            f"{len(operations)} operations",
        )
        assert count == len(operations)
        text = await page.js("document.body.innerText")
        assert "OAS 3.1" in text
        for op in [*operations[:: max(1, len(operations) // 6)], listing]:
            assert op["summary"] in text, op["operationId"]
        # Only this server was asked for anything: no CDN, no online validator.
        urls = [
            e["params"]["request"]["url"]
            for e in page.events
            if e["method"] == "Network.requestWillBeSent"
        ]
        outside = [u for u in urls if not u.startswith((flovyn.url + "/", "data:"))]
        assert urls and not outside, outside

        # Authorize with the tenant's API key, in the dialog as a user would.
        await page.click(".auth-wrapper .authorize", "the Authorize button")
        api_key_box = (
            "[...document.querySelectorAll('.modal-ux .auth-container')]"
            ".find(c => (c.querySelector('h4') || {}).innerText.startsWith('apiKey'))"
        )
        await page.until(f"!!{api_key_box}", "the apiKey box of the Authorize dialog")
        await page.js(f"{api_key_box}.querySelector('input').focus()")
        await page.send("Input.insertText", text=flovyn.api_key)
        await page.js(f"{api_key_box}.querySelector('button.authorize').click()")
        await page.until("!!window.ui.authSelectors.authorized().get('apiKey')", "authorization")
        await page.click(".modal-ux .close-modal", "the dialog's close button")

        # Try it out on the list of executions: expand, Try it out, slug, Execute.
        block = f"#operations-{listing['tags'][0]}-{listing['operationId']}"
        await page.click(f"{block} .opblock-summary-control", "the operation's summary")
        await page.click(f"{block} .try-out__btn", "the Try it out button")
        slug_input = json.dumps(f"{block} tr[data-param-name='slug'] input")
        await page.until(f"!!document.querySelector({slug_input})", "the slug input")
        await page.js(f"document.querySelector({slug_input}).focus()")
        await page.send("Input.insertText", text=flovyn.slug)
        # The input is debounced: wait until Swagger UI holds the value, then Execute.
        values = f"window.ui.specSelectors.parameterValues([{json.dumps(LIST_PATH)}, 'get'])"
        await page.until(
            f"Object.values({values}.toJS()).includes({json.dumps(flovyn.slug)})",
            "the slug in Swagger UI's state",
        )
        await page.click(f"{block} .execute", "the Execute button")
        live = f"{block} .live-responses-table"
        status = await page.until(
            f"(document.querySelector('{live} tr.response .response-col_status') || {{}})"
            ".innerText",
            "the live response",
        )
        assert status.strip().startswith("200"), status
        body = await page.js(f"document.querySelector('{live}').innerText")
        assert execution_id in body
        request_url = await page.js(f"document.querySelector('{block} .request-url').innerText")
        assert f"/api/tenants/{flovyn.slug}/workflow-executions" in request_url
        errors = [
            e["params"]
            for e in page.events
            if e["method"] == "Runtime.exceptionThrown"
            or (e["method"] == "Runtime.consoleAPICalled" and e["params"]["type"] == "error")
            or (e["method"] == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")
        ]
        assert not errors, errors
