"""The `flovyn` command: the demo runs end to end; bad settings are one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from flovyn_tui.cli import entry as main


def test_demo_completes_its_workflows(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "flovyn_tui.cli",
            "demo",
            "--headless",
            "--workflows",
            "5",
            "--data-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "COMPLETED 5" in done.stdout
    assert "WORKFLOW_COMPLETED" in done.stdout
    assert "Traceback" not in done.stderr
    assert (tmp_path / "flovyn.db").exists()


def test_unsupported_database_url(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["server", "--database", "mysql://nope"]) == 2
    assert "unsupported database URL" in capsys.readouterr().err


def test_malformed_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FLOVYN_PORT", "eighty")
    assert main(["server"]) == 2
    assert "FLOVYN_" in capsys.readouterr().err


def test_server_and_demo_have_help(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--help"], ["server", "--help"], ["demo", "--help"]):
        assert main(argv) == 0
        assert "Usage: flovyn" in capsys.readouterr().out
