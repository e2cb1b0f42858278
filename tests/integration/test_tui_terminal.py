"""`flovyn tui` in a real terminal: tmux runs it, `capture-pane` reads the screen and
`send-keys` types. It embeds its own server (SQLite in the test's directory), shows
`● LIVE` and the worker line, lists a workflow triggered through the CLI, opens it
with `enter`, goes back with `escape`, shows the help with `?`, and `q` quits: exit
status 0, and the embedded server's port no longer answers.

The tmux server is a private one (its own socket), started with the test's
environment (no FLOVYN_* variables, XDG directories in tmp_path) and killed at the
end whatever happens, so no session is left behind.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

TMUX = shutil.which("tmux")
WIDTH, HEIGHT = 140, 40
START_WITHIN_S = 30.0  # a cold interpreter, Textual's import and the server's first start
STEP_WITHIN_S = 15.0

# CI sets FLOVYN_REQUIRE_TMUX: there a missing tmux fails instead of skipping.
REQUIRED = os.environ.get("FLOVYN_REQUIRE_TMUX", "").strip().lower() in {"1", "true", "yes"}
pytestmark = pytest.mark.skipif(
    TMUX is None and not REQUIRED,
    reason="tmux is not installed: the real-terminal test of `flovyn tui` needs it",
)


@dataclass
class Terminal:
    """One tmux session on a private tmux server."""

    tmux: str
    socket: Path
    env: dict[str, str]

    def run(self, *args: str) -> str:
        done = subprocess.run(
            [self.tmux, "-u", "-S", str(self.socket), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"tmux {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    def screen(self) -> str:
        try:
            return self.run("capture-pane", "-p", "-t", "tui")
        except RuntimeError as exc:  # the session ended: the program exited
            return f"<no screen: {exc}>"

    def keys(self, *keys: str) -> None:
        self.run("send-keys", "-t", "tui", *keys)

    def kill(self) -> None:
        subprocess.run(
            [self.tmux, "-S", str(self.socket), "kill-server"],
            env=self.env,
            capture_output=True,
            timeout=10,
            check=False,
        )


def until(
    what: str, check: Callable[[], bool], term: Terminal, log: Path, within: float = STEP_WITHIN_S
) -> None:
    """Poll `check` every 0.1 s; past the deadline fail with the screen and the log."""
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else "<no log>"
            raise AssertionError(
                f"not within {within:.0f}s: {what}\n--- screen ---\n{term.screen()}"
                f"\n--- {log.name} (tail) ---\n{tail}"
            )
        time.sleep(0.1)


def answers(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def terminal(tmp_path: Path) -> Iterator[Terminal]:
    assert TMUX is not None, "tmux is not installed (FLOVYN_REQUIRE_TMUX=1): apt-get install tmux"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLOVYN_", "TMUX"))}
    env.update(
        XDG_CONFIG_HOME=str(tmp_path / "config"),
        XDG_DATA_HOME=str(tmp_path / "share"),
        LANG="C.UTF-8",
        LC_ALL="C.UTF-8",
        TERM="xterm-256color",
        PYTHONUNBUFFERED="1",
    )
    # A short path of its own (a socket's path has a length limit), removed at the end.
    folder = Path(tempfile.mkdtemp(prefix="flovyn-tmux-"))
    term = Terminal(TMUX, folder / "socket", env)
    try:
        yield term
    finally:
        term.kill()
        shutil.rmtree(folder, ignore_errors=True)


def test_flovyn_tui_in_a_real_terminal(terminal: Terminal, tmp_path: Path) -> None:
    term = terminal
    data = tmp_path / "data"
    log = data / "flovyn-tui.log"
    status_file = tmp_path / "exit-status"
    tui = shlex.join([sys.executable, "-m", "flovyn_tui.cli", "tui", "--data-dir", str(data)])
    # The shell records the exit status; the session ends with the program.
    command = f"{tui}; echo $? > {shlex.quote(str(status_file))}"
    term.run(
        "new-session", "-d", "-s", "tui", "-x", str(WIDTH), "-y", str(HEIGHT),
        "-c", str(tmp_path), command,
    )  # fmt: skip

    # The header: live, and the line that starts a worker against the embedded server.
    until("the header shows ● LIVE", lambda: "● LIVE" in term.screen(), term, log, START_WITHIN_S)
    until("local.json is written", (data / "local.json").exists, term, log)
    local = json.loads((data / "local.json").read_text())
    screen = term.screen()
    found = re.search(r"Flovyn ● LIVE  (http://127\.0\.0\.1:(\d+))  tenant local", screen)
    assert found, screen
    url, port = found.group(1), int(found.group(2))
    assert f'worker: Worker("{url}", tenant="local", token="{local["workerToken"]}"' in screen
    assert "0 executions" in screen, screen

    # A workflow triggered through the CLI: no worker runs it, so it stays PENDING.
    done = subprocess.run(
        [
            sys.executable, "-m", "flovyn_tui.cli", "workflow", "trigger", "term-check",
            "--server", url, "--tenant", local["tenant"], "--api-key", local["apiKey"],
            "--input", '{"n": 1}', "--output", "json",
        ],
        env=term.env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    wf_id = json.loads(done.stdout)["workflowExecutionId"]
    row = re.compile(rf"○ PENDING\s+term-check\s+{wf_id[:8]}\s")
    until("the new row in the list", lambda: bool(row.search(term.screen())), term, log)
    until("the count of it", lambda: "1 executions" in term.screen(), term, log)

    # enter opens the execution (its summary line carries the whole id), escape goes back.
    term.keys("Enter")
    summary = re.compile(rf"○ PENDING\s+term-check\s+{wf_id[:8]}\s+{wf_id}")
    until("the execution's summary line", lambda: bool(summary.search(term.screen())), term, log)
    assert "1 Tree" in term.screen()
    term.keys("Escape")
    until(
        "back on the list",
        lambda: wf_id not in (s := term.screen()) and bool(row.search(s)) and "STATUS" in s,
        term,
        log,
    )

    # ? shows the help; escape closes it.
    term.keys("?")
    until("the help", lambda: "this help" in term.screen(), term, log)
    term.keys("Escape")
    until("the help closed", lambda: "this help" not in term.screen(), term, log)

    # q quits: exit status 0, and the embedded server stopped with the dashboard.
    assert answers(port)
    term.keys("q")
    until("the program exits", status_file.exists, term, log)
    until("the exit status is written", lambda: status_file.read_text().strip() != "", term, log)
    assert status_file.read_text().strip() == "0", log.read_text(errors="replace")[-3000:]
    assert not answers(port), f"the embedded server still answers on port {port}"
