"""Run the real server, or a worker script, in a subprocess (for integration tests).

    with ServerProcess(database_url, tmp_path / "server") as server:
        ...  # HTTP against server.url
        server.kill()      # crash it
        server.restart()   # same port, same database

Output goes to a fresh log file per start (`server-<n>.log`, `worker-<n>.log`) so a failing
test can show `log_tail()`.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Self

HEALTH_PATH = "/_/health"
START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0

# Loopback requests must not go through an HTTP proxy configured in the environment.
_NO_PROXY_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _next_log_path(folder: Path, stem: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    n = 1
    while (path := folder / f"{stem}-{n}.log").exists():
        n += 1
    return path


class _ChildProcess:
    """A subprocess whose stdout and stderr go to a log file."""

    log_stem = "process"

    def __init__(self, log_dir: Path, env_extra: Mapping[str, str] | None) -> None:
        self.log_dir = Path(log_dir)
        self.env_extra = dict(env_extra or {})
        self.log_path: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def _spawn(self, argv: Sequence[str], env: Mapping[str, str]) -> None:
        if self.alive:
            raise RuntimeError(f"{self.log_stem} already running (pid {self.pid})")
        self._close_log()
        self.log_path = _next_log_path(self.log_dir, self.log_stem)
        self._log = self.log_path.open("wb")
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **env}
        self._proc = subprocess.Popen(
            list(argv),
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self._proc is None else self._proc.poll()

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the process to exit on its own; return its exit code."""
        if self._proc is None:
            raise RuntimeError(f"{self.log_stem} was never started")
        code = self._proc.wait(timeout)
        self._close_log()
        return code

    def kill(self) -> int | None:
        """SIGKILL (a crash: no cleanup runs) and reap; the exit code, None if not started."""
        if self._proc is None:
            return None
        if self._proc.poll() is None:
            self._proc.kill()
        code = self._proc.wait()
        self._close_log()
        return code

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> int | None:
        """SIGTERM, wait up to `timeout` seconds, then SIGKILL; the exit code."""
        if self._proc is None:
            return None
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
        code = self._proc.wait()
        self._close_log()
        return code

    def log_text(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        if self._log is not None:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def log_tail(self, n: int = 40) -> str:
        """The last `n` lines of the current log."""
        return "\n".join(self.log_text().splitlines()[-n:])

    def wait_for_log(self, pattern: str, timeout: float = 10.0) -> re.Match[str]:
        """Poll the log until the regular expression `pattern` matches; fail if it exits."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            match = regex.search(self.log_text())
            if match is not None:
                return match
            if not self.alive:
                raise RuntimeError(
                    f"{self.log_stem} exited ({self.returncode}) before logging {pattern!r}:\n"
                    + self.log_tail()
                )
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{self.log_stem} did not log {pattern!r} within {timeout}s:\n"
                    + self.log_tail()
                )
            time.sleep(0.05)

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Self:
        if not self.alive:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> Self:
        raise NotImplementedError


class ServerProcess(_ChildProcess):
    """`python -m flovyn_tui.cli server` on 127.0.0.1, kept on one port across restarts."""

    log_stem = "server"

    def __init__(
        self,
        database_url: str,
        data_dir: Path | str,
        *,
        admin_key: str = "test-admin-key",
        env_extra: Mapping[str, str] | None = None,
        port: int | None = None,
    ) -> None:
        super().__init__(Path(data_dir), env_extra)
        self.database_url = database_url
        self.data_dir = Path(data_dir)
        self.admin_key = admin_key
        self.port = port if port is not None else _free_port()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def argv(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "flovyn_tui.cli",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
            "--database",
            self.database_url,
        ]

    def start(self, timeout: float = START_TIMEOUT_S) -> Self:
        """Spawn the server and return once `/_/health` answers 200."""
        self._spawn(self.argv(), {"FLOVYN_ADMIN_KEY": self.admin_key, **self.env_extra})
        try:
            self._wait_healthy(timeout)
        except BaseException:
            self.kill()
            raise
        return self

    def restart(self, timeout: float = START_TIMEOUT_S) -> Self:
        """Stop it if it still runs (SIGTERM), then start again on the same port."""
        self.stop()
        return self.start(timeout)

    def healthy(self) -> bool:
        try:
            with _NO_PROXY_OPENER.open(self.url + HEALTH_PATH, timeout=1.0) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def _wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self.healthy():
            if not self.alive:
                raise RuntimeError(
                    f"server exited with code {self.returncode} before it was healthy "
                    f"(log {self.log_path}):\n{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"server not healthy at {self.url}{HEALTH_PATH} after {timeout}s "
                    f"(log {self.log_path}):\n{self.log_tail()}"
                )
            time.sleep(0.05)


class WorkerProcess(_ChildProcess):
    """`python <script_path> *args`, logging to `worker-<n>.log` in `log_dir`."""

    log_stem = "worker"

    def __init__(
        self,
        script_path: Path | str,
        args: Sequence[str] = (),
        *,
        log_dir: Path | str | None = None,
        env_extra: Mapping[str, str] | None = None,
    ) -> None:
        script = Path(script_path)
        super().__init__(Path(log_dir) if log_dir is not None else script.parent, env_extra)
        self.script_path = script
        self.args = list(args)

    def start(self) -> Self:
        self._spawn([sys.executable, str(self.script_path), *self.args], self.env_extra)
        return self
