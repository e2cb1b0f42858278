"""Profiling the server: py-spy attached for the measured phase, or the whole server
under cProfile, and the report printed after the store's table."""

from __future__ import annotations

import asyncio
import pstats
import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Profiler:
    """`--profile` for one store's server: `kind` is "py-spy", "cprofile" or None."""

    kind: str | None
    directory: Path
    store: str
    rate: int  # py-spy samples per second
    top: int  # functions to list
    _spy: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def spy_out(self) -> Path:
        return self.directory / f"server-{self.store}.pyspy.txt"

    @property
    def cprofile_out(self) -> Path | None:
        """Where the server writes its cProfile stats, None when it runs without."""
        return self.directory / f"server-{self.store}.prof" if self.kind == "cprofile" else None

    async def start(self, pid: int) -> None:
        """Attach py-spy to the server before the measured phase."""
        if self.kind == "py-spy":
            self._spy = start_py_spy(pid, self.spy_out, self.rate)
            await asyncio.sleep(0.5)  # let it attach before the load starts

    def stop(self) -> None:
        stop_py_spy(self._spy)
        self._spy = None

    def report(self) -> None:
        if self.kind == "py-spy":
            report_py_spy(self.spy_out, self.top)
        elif self.cprofile_out is not None:
            report_cprofile(self.cprofile_out, self.top)


# -- py-spy ------------------------------------------------------------------------------


def start_py_spy(pid: int, out: Path, rate: int) -> subprocess.Popen[bytes] | None:
    exe = shutil.which("py-spy")
    if exe is None:
        print("warning: py-spy is not installed (pip install py-spy); no profile", file=sys.stderr)
        return None
    return subprocess.Popen(
        [
            exe,
            "record",
            "--pid",
            str(pid),
            "--rate",
            str(rate),
            "--format",
            "raw",
            "--output",
            str(out),
            "--gil",  # only the thread holding the GIL: Python CPU time, not waits
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def stop_py_spy(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None:
        return
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.returncode not in (0, -signal.SIGINT) and proc.stderr is not None:
        print(f"warning: py-spy: {proc.stderr.read().decode(errors='replace')}", file=sys.stderr)


_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def _frame_name(frame: str) -> str:
    """'claim (flovyn_server/engine/activations.py:40)' -> 'claim (.../activations.py)'."""
    match = _FRAME.match(frame.strip())
    if match is None:
        return frame.strip()
    path = re.sub(r"^.*?(?:site-packages|lib/python3\.\d+)/", "", match["file"])
    if path.startswith("/"):
        path = "/".join(path.split("/")[-3:])
    return f"{match['func']} ({path})"


def _package(frame: str) -> str:
    """'data_received (aiohttp/web_protocol.py)' -> 'aiohttp'; stdlib modules by name."""
    path = frame.rpartition(" (")[2].rstrip(")")
    head = path.split("/", 1)[0] if "/" in path else path.removesuffix(".py")
    return "asyncio" if head in ("selectors", "socket", "contextlib") else head


def report_py_spy(path: Path, top: int) -> None:
    """Self and inclusive shares per function from py-spy's collapsed stacks."""
    if not path.exists():
        print(f"  (no py-spy output at {path})")
        return
    self_counts: Counter[str] = Counter()
    incl_counts: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, tail = line.rpartition(" ")
        if not stack or not tail.isdigit():
            continue
        samples = int(tail)
        total += samples
        frames = [_frame_name(f) for f in stack.split(";")]
        frames = [f for f in frames if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        self_counts[frames[-1]] += samples
        for name in set(frames):
            incl_counts[name] += samples
    if not total:
        print("  (py-spy recorded no samples)")
        return
    print(f"  py-spy: {total} samples holding the GIL ({path})")
    packages: Counter[str] = Counter()
    for name, n in self_counts.items():
        packages[_package(name)] += n
    print("  own time by package: " + ", ".join(
        f"{pkg} {100 * n / total:.0f}%" for pkg, n in packages.most_common(10)
    ))  # fmt: skip
    print(f"  {'self %':>7}  function")
    for name, n in self_counts.most_common(top):
        print(f"  {100 * n / total:6.1f}%  {name}")
    print(f"  {'incl %':>7}  function (inclusive, flovyn/aiohttp/db frames)")
    shown = 0
    for name, n in incl_counts.most_common():
        if any(k in name for k in ("flovyn", "aiohttp/", "asyncpg", "aiosqlite", "sqlite3")):
            print(f"  {100 * n / total:6.1f}%  {name}")
            shown += 1
            if shown >= top:
                break


# -- cProfile ----------------------------------------------------------------------------


def report_cprofile(path: Path, top: int) -> None:
    if not path.exists():
        print(f"  (no cProfile output at {path}; did the server exit cleanly?)")
        return
    print(f"  cProfile of the server's main thread ({path}), top {top} by own time:")
    stats = pstats.Stats(str(path))
    stats.sort_stats(pstats.SortKey.TIME).print_stats(top)
    print(f"  top {top} by cumulative time:")
    stats.sort_stats(pstats.SortKey.CUMULATIVE).print_stats(top)
