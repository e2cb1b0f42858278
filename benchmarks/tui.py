#!/usr/bin/env python3
"""The dashboard at scale: `flovyn tui` in a real pseudo-terminal on a tenant of
100,000 executions.

For each store this seeds the executions straight into a fresh database (the seeding
of ``benchmarks/lists.py``), starts ``flovyn server`` on it, and runs
``flovyn tui --server ...`` as a child process on a pty of 140x40. What the dashboard
writes to the pty is read by a thread that stamps each chunk with the time it
arrived, and fed to a small terminal emulator (cursor moves, text and background
colours: what Textual's output uses), so "on screen" means what a terminal would
show, after Textual rendered, encoded and wrote it. It prints:

  (a) start: from the process's start (and from its first output: the app started,
      its imports done) to the first full table: every line of the list holds an
      execution. Several launches, each a fresh process.
  (b) key to screen: from writing `down` (ESC [ B) to the pty to the read of the
      chunk after which the list's highlighted row is another execution (and only
      one row is highlighted: a frame split over two reads counts when complete).
      With the feed idle, then while triggers arrive at --rate per second (each one
      a `workflow_created` event on the tenant feed: a new row at the top, and a
      repaint of the list). p50 / p90 / p99 / max over --presses presses, a random
      30-120 ms apart.

With --trace the dashboard runs with hooks (wrappers of Rows.action_move,
App._display and FlovynApp.on_feed_event that write a time stamp) and (b) is split:
key written -> the list's cursor moved (waiting in the app's message queues), cursor
moved -> the frame written to Textual's writer thread (waiting for the screen's next
update and composing it), frame written -> read here (the writer thread, the pty).

Limits: the emulator knows only what Textual writes (cursor positioning, text, the
background colour); a frame is seen when its last byte is read, and a read is stamped
once the reader thread holds the GIL (switch interval 1 ms here). The CPU line says
how busy the machine was meanwhile, other processes included: on a shared machine,
read the figures with it. Timings are printed, never asserted.

    python3 benchmarks/tui.py                                  # SQLite, 100,000 executions
    python3 benchmarks/tui.py --store both --presses 300 --rate 200
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import codecs
import contextlib
import fcntl
import functools
import os
import pty
import random
import re
import secrets
import shutil
import struct
import subprocess
import sys
import termios
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
from rich.cells import get_character_cell_size

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench.client import Api, Tenant, create_tenant, wait_healthy
from bench.measure import machine_busy, percentile, postgres_cpu, process_cpu
from bench.processes import (
    Child,
    Resources,
    bench_main,
    free_port,
    prepare_database,
    start_server,
)
from bench.profiling import report_py_spy, start_py_spy, stop_py_spy
from lists import seed

DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
WIDTH, HEIGHT = 140, 40
DOWN, HOME = b"\x1b[B", b"\x1b[H"
SCRIPT = os.path.abspath(__file__)
CHILD_FLAG = "--dashboard-child"
ID_RE = re.compile(r"(?<![0-9a-f])[0-9a-f]{8}(?![0-9a-f])")

# -- a terminal, as far as Textual's output needs one ------------------------------------

TOKEN_RE = re.compile(
    r"\x1b\[([0-?]*)[ -/]*([@-~])"  # CSI: parameters, final byte
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"  # OSC
    r"|\x1b[PX^_][^\x1b]*\x1b\\"  # DCS, SOS, PM, APC
    r"|\x1b[ -/]*(?![\[\]PX^_])[0-~]"  # other escapes
    r"|[\x00-\x1a\x1c-\x1f\x7f]"  # control characters
    r"|[^\x00-\x1f\x7f\x1b]+"  # text
)


class Terminal:
    """The screen's characters and each cell's background; every other attribute and
    sequence (modes, queries, mouse, colours of text) is read and ignored."""

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.chars = [[" "] * width for _ in range(height)]
        self.bgs: list[list[str | None]] = [[None] * width for _ in range(height)]
        self.x = self.y = 0
        self.bg: str | None = None
        self._pending = ""
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")

    def feed(self, data: bytes) -> None:
        buf = self._pending + self._decoder.decode(data)
        pos, end = 0, len(buf)
        while pos < end:
            m = TOKEN_RE.match(buf, pos)
            if m is None:  # an escape sequence cut by the read: wait for the rest
                if end - pos > 4096:  # not a sequence after all
                    pos += 1
                    continue
                break
            token = m.group(0)
            pos = m.end()
            if token[0] == "\x1b":
                if m.group(2) is not None:
                    self._csi(m.group(1), m.group(2))
            elif len(token) == 1 and (token < " " or token == "\x7f"):
                self._control(token)
            else:
                self._text(token)
        self._pending = buf[pos:]

    def _control(self, c: str) -> None:
        if c == "\r":
            self.x = 0
        elif c == "\n":
            self.y = min(self.height - 1, self.y + 1)
        elif c == "\b":
            self.x = max(0, self.x - 1)

    def _csi(self, params: str, final: str) -> None:
        if params.startswith(("?", ">", "<", "=")):
            return  # private modes and queries
        nums = [int(p) if p.isdigit() else 0 for p in re.split("[;:]", params)] if params else []
        first = nums[0] if nums else 0
        if final in "Hf":
            row = nums[0] if nums and nums[0] else 1
            col = nums[1] if len(nums) > 1 and nums[1] else 1
            self.y, self.x = min(self.height, row) - 1, min(self.width, col) - 1
        elif final == "m":
            self._sgr(nums or [0])
        elif final == "A":
            self.y = max(0, self.y - max(1, first))
        elif final == "B":
            self.y = min(self.height - 1, self.y + max(1, first))
        elif final == "C":
            self.x = min(self.width - 1, self.x + max(1, first))
        elif final == "D":
            self.x = max(0, self.x - max(1, first))
        elif final == "G":
            self.x = min(self.width, max(1, first)) - 1
        elif final == "J" and first == 2:
            for y in range(self.height):
                self._clear(y, 0)
        elif final == "K":
            self._clear(self.y, self.x if first == 0 else 0)

    def _clear(self, y: int, x: int) -> None:
        self.chars[y][x:] = [" "] * (self.width - x)
        self.bgs[y][x:] = [self.bg] * (self.width - x)

    def _sgr(self, nums: list[int]) -> None:
        i = 0
        while i < len(nums):
            n = nums[i]
            if n == 0 or n == 49:
                self.bg = None
            elif 40 <= n <= 47 or 100 <= n <= 107:
                self.bg = str(n)
            elif n in (38, 48) and i + 1 < len(nums):
                size = 3 if nums[i + 1] == 5 else 5  # 5;n or 2;r;g;b
                if n == 48:
                    self.bg = ";".join(map(str, nums[i + 1 : i + size]))
                i += size - 1
            i += 1

    def _text(self, text: str) -> None:
        row, bgs = self.chars[self.y], self.bgs[self.y]
        if text.isascii():
            n = max(0, min(len(text), self.width - self.x))
            row[self.x : self.x + n] = text[:n]
            bgs[self.x : self.x + n] = [self.bg] * n
            self.x += n
            return
        for c in text:
            size = get_character_cell_size(c)
            if size == 0 or self.x >= self.width:
                continue
            row[self.x], bgs[self.x] = c, self.bg
            if size == 2 and self.x + 1 < self.width:
                row[self.x + 1], bgs[self.x + 1] = "", self.bg
            self.x += size

    # -- what the benchmark reads ---------------------------------------------------------

    def lines(self) -> list[str]:
        return ["".join(row) for row in self.chars]

    def text(self) -> str:
        return "\n".join(line.rstrip() for line in self.lines())

    def table(self) -> list[tuple[int, str | None]]:
        """The list's lines below its headings, above the footer: (line, execution id)."""
        lines = self.lines()
        for y, line in enumerate(lines):
            if "STATUS" in line and "KIND" in line and "ATTEMPTS" in line:
                found = []
                for row in range(y + 1, self.height - 1):
                    m = ID_RE.search(lines[row])
                    found.append((row, m.group(0) if m else None))
                return found
        return []

    def full_table(self) -> bool:
        """Every line of the list holds an execution (the last one may be a horizontal
        scroll bar: no letters or digits)."""
        table = self.table()
        if table and table[-1][1] is None and not any(c.isalnum() for c in self.chars[-2]):
            table = table[:-1]
        return bool(table) and all(wf_id is not None for _, wf_id in table)

    def highlighted(self) -> str | None:
        """The id on the one row whose background differs from the other rows'."""
        rows = [(y, wf_id) for y, wf_id in self.table() if wf_id is not None]
        if len(rows) < 3:
            return None
        backgrounds = {y: self.bgs[y][2] for y, _ in rows}
        usual, _ = Counter(backgrounds.values()).most_common(1)[0]
        odd = [wf_id for y, wf_id in rows if backgrounds[y] != usual]
        return odd[0] if len(odd) == 1 else None


# -- the dashboard on a pty ---------------------------------------------------------------


class Dashboard:
    """`flovyn tui` on a pty; a thread reads its output, stamped with the time of each read."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path) -> None:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", HEIGHT, WIDTH, 0, 0))
        # Its own session with the pty as its controlling terminal, as in a terminal
        # window: if this benchmark dies, the pty's end hangs the dashboard up.
        setsid = shutil.which("setsid")
        start = [setsid, "--ctty"] if setsid else []
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            [*start, *argv],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            cwd=cwd,
            start_new_session=not setsid,
        )
        os.close(slave)
        self.master = master
        self.screen = Terminal(WIDTH, HEIGHT)
        self.first_output: float | None = None
        self.last_read = 0.0
        self.ended = False
        self._loop = asyncio.get_running_loop()
        self._chunks: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        self._thread = threading.Thread(target=self._read, name="pty-reader", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self.master, 65536)
            except OSError:  # EIO: the child closed the pty
                data = b""
            at = time.perf_counter()
            self._loop.call_soon_threadsafe(self._chunks.put_nowait, (at, data))
            if not data:
                return

    def _take(self, at: float, data: bytes) -> None:
        if not data:
            self.ended = True
            return
        if self.first_output is None:
            self.first_output = at
        self.screen.feed(data)
        self.last_read = at

    def drain(self) -> None:
        """Take every chunk read so far."""
        while not self._chunks.empty():
            self._take(*self._chunks.get_nowait())

    async def until(self, check: Callable[[], bool], within: float) -> float | None:
        """Take chunks until `check()` holds: the read time of the chunk that made it
        hold (None at the deadline or the end of the output)."""
        self.drain()
        if check():
            return self.last_read
        deadline = time.monotonic() + within
        while not self.ended:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                at, data = await asyncio.wait_for(self._chunks.get(), left)
            except TimeoutError:
                return None
            self._take(at, data)
            if check():
                return at
        return None

    def press(self, keys: bytes) -> float:
        at = time.perf_counter()
        os.write(self.master, keys)
        return at

    async def quit(self) -> int:
        """`q`, and the exit status; killed if it has not exited within 20 s (or if
        the benchmark is interrupted meanwhile)."""
        try:
            with contextlib.suppress(OSError):
                self.press(b"q")
            code = await asyncio.wait_for(asyncio.to_thread(self.proc.wait), 20)
        except TimeoutError:
            self.proc.kill()
            code = self.proc.wait()
        except BaseException:
            self.proc.kill()
            self.proc.wait()
            raise
        finally:
            await asyncio.to_thread(self._thread.join, 5)
            os.close(self.master)
        return code


def dashboard_env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLOVYN_", "TMUX"))}
    env.update(
        XDG_CONFIG_HOME=str(tmp / "tui-config"),
        TERM="xterm-256color",
        COLORTERM="truecolor",
        LANG="C.UTF-8",
        LC_ALL="C.UTF-8",
    )
    return env


def dashboard_argv(base: str, tenant: Tenant, tmp: Path, trace: Path | None) -> list[str]:
    """`flovyn tui` against the server; with `trace`, run by this script with its hooks."""
    start = [sys.executable, "-m", "flovyn_tui.cli"]
    if trace is not None:
        start = [sys.executable, SCRIPT, CHILD_FLAG, str(trace)]
    return [
        *start, "tui", "--server", base, "--tenant", tenant.slug, "--api-key", tenant.key,
        "--data-dir", str(tmp / "tui"),
    ]  # fmt: skip


def dashboard_child(argv: list[str]) -> int:
    """`--trace`: the dashboard, with hooks that write to the file argv[0] when the list
    acts on a `down` (Rows.action_move), when a frame goes to the terminal driver
    (App._display, start and end: the compositor's work is before it), and how long
    each feed event took (FlovynApp.on_feed_event). Wrappers only: the same code runs."""
    from textual.app import App

    from flovyn_tui.cli import entry
    from flovyn_tui.dashboard.app import FlovynApp
    from flovyn_tui.dashboard.rows import Rows

    out = open(argv[0], "w", buffering=1)
    clock = time.perf_counter  # CLOCK_MONOTONIC: the benchmark's clock too

    def wrap(cls: Any, name: str, tag: str, span: bool) -> None:
        original = getattr(cls, name, None)
        if original is None:
            print(f"--trace: {cls.__name__}.{name} is gone; not traced", file=sys.stderr)
            return

        @functools.wraps(original)
        def traced(*args: Any, **kwargs: Any) -> Any:
            t0 = clock()
            try:
                return original(*args, **kwargs)
            finally:
                out.write(f"{tag} {t0:.6f} {clock() if span else t0:.6f}\n")

        setattr(cls, name, traced)

    wrap(Rows, "action_move", "move", False)
    wrap(App, "_display", "frame", True)
    wrap(FlovynApp, "on_feed_event", "feed", True)
    return int(entry(argv[1:]))


# -- the measurements ---------------------------------------------------------------------


def ms_text(values: list[float]) -> str:
    if not values:
        return "n/a"
    return (
        f"p50 {percentile(values, 50):6.1f}   p90 {percentile(values, 90):6.1f}   "
        f"p99 {percentile(values, 99):6.1f}   max {max(values):6.1f} ms"
    )


async def measure_start(argv: list[str], env: dict[str, str], tmp: Path, launches: int) -> None:
    """(a): process start and first output to the first full table, each launch afresh."""
    totals, from_app = [], []
    for n in range(launches):
        tui = Dashboard(argv, env, tmp)
        try:
            full = await tui.until(tui.screen.full_table, 30)
            if full is None or tui.first_output is None:
                print(f"   launch {n + 1}: no full table within 30 s:\n{tui.screen.text()}")
                continue
            totals.append((full - tui.started) * 1000)
            from_app.append((full - tui.first_output) * 1000)
        finally:
            code = await tui.quit()
        if code != 0:
            print(f"   launch {n + 1}: the dashboard exited with {code}")
    if totals:
        print(f"   (a) first full table, {len(totals)} launches (ms)")
        print(f"       from the process's start:  {ms_text(totals)}   min {min(totals):6.1f}")
        print(f"       from its first output:     {ms_text(from_app)}   min {min(from_app):6.1f}")


def moved_from(screen: Terminal, before: str | None) -> bool:
    now = screen.highlighted()
    return now is not None and now != before


@dataclass
class Presses:
    """Each `down`: when it was written, and when the screen showed the move (None: not
    within 3 s); and each wait, before a press, for the list to show a highlighted row
    again (the view covered by its loading indicator while it fetched a page)."""

    at: list[float] = field(default_factory=list)
    shown: list[float | None] = field(default_factory=list)
    hidden: list[float] = field(default_factory=list)

    def latencies(self) -> list[float]:
        return [(s - a) * 1000 for a, s in zip(self.at, self.shown, strict=True) if s is not None]

    def summary(self) -> str:
        missed = self.shown.count(None)
        return ms_text(self.latencies()) + (f"   ({missed} not shown within 3 s)" if missed else "")


async def press_down(tui: Dashboard, n: int) -> Presses:
    """`n` presses of `down`, a random 30-120 ms apart."""
    presses = Presses()
    for _ in range(n):
        tui.drain()
        if tui.screen.highlighted() is None:
            since = time.perf_counter()
            back = await tui.until(lambda: tui.screen.highlighted() is not None, 60)
            if back is None:
                raise RuntimeError(f"no highlighted row for 60 s:\n{tui.screen.text()}")
            if back - since > 0.05:  # not a frame split over two reads
                presses.hidden.append(back - since)
        before = tui.screen.highlighted()
        presses.at.append(tui.press(DOWN))
        presses.shown.append(await tui.until(partial(moved_from, tui.screen, before), 3))
        await asyncio.sleep(random.uniform(0.03, 0.12))
    return presses


def report_trace(path: Path, presses: Presses) -> None:
    """Where each press's time went, from the dashboard's hooks (see `dashboard_child`)."""
    moves: list[float] = []
    frames: list[tuple[float, float]] = []
    feeds: list[tuple[float, float]] = []
    for line in path.read_text().splitlines():
        tag, a, b = line.split()
        if tag == "move":
            moves.append(float(a))
        elif tag == "frame":
            frames.append((float(a), float(b)))
        elif tag == "feed":
            feeds.append((float(a), float(b)))
    starts = [f[0] for f in frames]
    queued, rendered, written = [], [], []
    for at, shown in zip(presses.at, presses.shown, strict=True):
        i = bisect.bisect_left(moves, at)
        if shown is None or i == len(moves) or moves[i] > shown:
            continue
        j = bisect.bisect_left(starts, moves[i])
        if j == len(frames) or frames[j][1] > shown:
            continue
        queued.append((moves[i] - at) * 1000)
        rendered.append((frames[j][1] - moves[i]) * 1000)
        written.append((shown - frames[j][1]) * 1000)
    print("       where the time went (the dashboard's hooks, --trace):")
    print(f"         key written -> the list moves its cursor:  {ms_text(queued)}")
    print(f"         cursor moved -> the frame is written:      {ms_text(rendered)}")
    print(f"         frame written -> read from the pty:        {ms_text(written)}")
    first, last = presses.at[0], presses.at[-1]
    handled = [(b - a) * 1000 for a, b in feeds if first <= a <= last]
    written_frames = [f for f in frames if first <= f[0] <= last]
    span = max(0.001, last - first)
    print(f"         feed events handled: {len(handled) / span:.0f}/s, each {ms_text(handled)}")
    print(f"         frames written: {len(written_frames) / span:.0f}/s")


@dataclass
class Cpu:
    """CPU seconds of the dashboard, the server, PostgreSQL and this benchmark, and of
    the whole machine."""

    dashboard: float
    server: float
    postgres: float
    bench: float
    busy: float
    total: float

    @classmethod
    def take(cls, dashboard: int, server: int, database: str | None) -> Cpu:
        busy, total = machine_busy()
        return cls(
            process_cpu(dashboard) or 0.0,
            process_cpu(server) or 0.0,
            sum(postgres_cpu(database).values()),
            time.process_time(),
            busy,
            total,
        )

    def since(self, before: Cpu, seconds: float) -> str:
        cores = (
            (os.cpu_count() or 1) * (self.busy - before.busy) / max(1.0, self.total - before.total)
        )
        ours = {
            "dashboard": self.dashboard - before.dashboard,
            "server": self.server - before.server,
            "PostgreSQL": self.postgres - before.postgres,
            "benchmark": self.bench - before.bench,
        }
        other = cores - sum(ours.values()) / seconds
        shares = ", ".join(f"{k} {v / seconds:.0%}" for k, v in ours.items() if v > 0)
        return (
            f"{shares}, anything else {max(0.0, other):.0%} (of one core; {os.cpu_count()} cores)"
        )


async def trickle(tenant: Tenant, rate: float, sent: list[float], errors: Counter[str]) -> None:
    """Triggers at `rate` per second (no worker runs them: each stays PENDING) until
    cancelled; a few in flight so that one slow answer does not hold back the rest."""
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    counter = iter(range(10**9))

    async def sender() -> None:
        for i in counter:
            delay = t0 + i / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            try:
                status, _ = await tenant.call(
                    "POST", "/workflows/tui-bench/trigger", {"input": {"n": i}}
                )
            except (aiohttp.ClientError, OSError) as exc:
                errors[type(exc).__name__] += 1
                continue
            if status in (200, 201):
                sent.append(time.perf_counter())
            else:
                errors[f"HTTP {status}"] += 1

    await asyncio.gather(*(sender() for _ in range(8)))


def top_row_kind(screen: Terminal) -> str | None:
    table = screen.table()
    if not table or table[0][1] is None:
        return None
    words = screen.lines()[table[0][0]].split()
    return words[2] if len(words) > 2 else None


async def measure_keys(
    argv: list[str],
    env: dict[str, str],
    tmp: Path,
    tenant: Tenant,
    server: Child,
    database: str | None,
    args: argparse.Namespace,
) -> None:
    """(b): `down` to the screen's update, with the feed idle and then busy."""
    tui = Dashboard(argv, env, tmp)
    try:
        if await tui.until(tui.screen.full_table, 30) is None:
            raise RuntimeError(f"no full table within 30 s:\n{tui.screen.text()}")
        await press_down(tui, 5)  # off the top row: new rows then leave the cursor be
        cpu, t0 = Cpu.take(tui.proc.pid, server.proc.pid, database), time.perf_counter()
        idle = await press_down(tui, args.idle_presses)
        used = Cpu.take(tui.proc.pid, server.proc.pid, database).since(
            cpu, time.perf_counter() - t0
        )
        print(f"   (b) down -> screen, the feed idle, {len(idle.at)} presses (ms)")
        print(f"       {idle.summary()}")
        print(f"       CPU: {used}")
        if idle.hidden:
            waits = ", ".join(f"{w:.1f}" for w in idle.hidden)
            print(f"       waits for the list to come back from its loading indicator (s): {waits}")

        sent: list[float] = []
        errors: Counter[str] = Counter()
        load = asyncio.create_task(trickle(tenant, args.rate, sent, errors))
        try:
            await asyncio.sleep(3)  # the feed at its pace
            spy = start_py_spy(tui.proc.pid, args.py_spy, 250) if args.py_spy else None
            cpu, t0 = Cpu.take(tui.proc.pid, server.proc.pid, database), time.perf_counter()
            try:
                busy = await press_down(tui, args.presses)
            finally:
                stop_py_spy(spy)
            t1 = time.perf_counter()
            used = Cpu.take(tui.proc.pid, server.proc.pid, database).since(cpu, t1 - t0)
        finally:
            load.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await load
        rate = sum(t0 <= t <= t1 for t in sent) / (t1 - t0)
        print(f"   (b) down -> screen, {rate:.0f} triggers/s, {len(busy.at)} presses (ms)")
        print(f"       {busy.summary()}")
        print(f"       CPU: {used}")
        if busy.hidden:
            waits = ", ".join(f"{w:.1f}" for w in busy.hidden)
            print(f"       waits for the list to come back from its loading indicator (s): {waits}")
        if errors:
            print(f"       trigger errors: {dict(errors)}")
        # The feed reached the list: once back at the top, the newest row is one of ours.
        tui.press(HOME)
        on_top = await tui.until(lambda: top_row_kind(tui.screen) == "tui-bench", 10)
        if on_top is None:
            print(f"       the newest row is not a triggered one:\n{tui.screen.text()}")
        if args.trace is not None:
            report_trace(args.trace, busy)
        if args.py_spy:
            report_py_spy(args.py_spy, 25)
    finally:
        await tui.quit()


async def run_store(store: str, args: argparse.Namespace, res: Resources) -> list[str]:
    tmp = res.temp_dir(prefix=f"flovyn-tui-{store}-")
    db = await prepare_database(res, store, tmp, args.postgres_url)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    admin_key = "bench-admin-" + secrets.token_hex(16)
    server = start_server(res, store, tmp, port, db.url, admin_key, None)
    print(f"\n== {store} ({db.label})", flush=True)
    async with aiohttp.ClientSession() as http:
        api = Api(http, base)
        await wait_healthy(api, server, 60)
        tenant, _ = await create_tenant(api, admin_key)
        tenant_id = (await api.ok("GET", f"/api/tenants/{tenant.slug}", admin_key))["id"]
        t0 = time.perf_counter()
        await seed(db.url, tenant_id, args.executions, 0)
        print(f"   seeded {args.executions} executions in {time.perf_counter() - t0:.0f} s")
        env = dashboard_env(tmp)
        await measure_start(dashboard_argv(base, tenant, tmp, None), env, tmp, args.launches)
        argv = dashboard_argv(base, tenant, tmp, args.trace)
        await measure_keys(argv, env, tmp, tenant, server, db.pg_name, args)
    return []


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--store", choices=("sqlite", "postgres", "both"), default="sqlite")
    p.add_argument("--executions", type=int, default=100_000)
    p.add_argument("--launches", type=int, default=5, help="starts timed for (a)")
    p.add_argument("--presses", type=int, default=300, help="presses timed under load for (b)")
    p.add_argument("--idle-presses", type=int, default=100, help="presses timed, feed idle")
    p.add_argument("--rate", type=float, default=200.0, help="triggers per second for (b)")
    p.add_argument(
        "--trace", type=Path, metavar="FILE", help="(b) split by hooks in the dashboard, to FILE"
    )
    p.add_argument(
        "--py-spy", type=Path, metavar="FILE", help="profile the dashboard under load to FILE"
    )
    p.add_argument("--postgres-url", default=os.environ.get("FLOVYN_BENCH_PG_URL", DEFAULT_PG_URL))
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == [CHILD_FLAG]:
        return dashboard_child(argv[1:])
    # The pty's reader thread stamps a chunk once it holds the GIL: let it take the GIL
    # from the main thread (busy emulating the terminal) within 1 ms, not 5.
    sys.setswitchinterval(0.001)
    return bench_main(argv, parse_args, run_store)


if __name__ == "__main__":
    sys.exit(main())
