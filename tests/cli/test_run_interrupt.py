"""Ctrl+C during `medialab run`: once cancels the run (after a short grace), twice
leaves it running in the engine host, as the README says."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading

import pytest

from conftest import ROOT, Home, query, txt2img_toml, wait_for

pytestmark = pytest.mark.slow


class Running:
    """`medialab run` in a child process, its output collected as it comes."""

    def __init__(self, home: Home, steps: int) -> None:
        path = home.pipeline("long", txt2img_toml(prompts=["a", "b"], seeds=[1], steps=steps))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "medialab_tui", "run", str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=home.env(),
            cwd=ROOT,
        )
        self.output: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

        def denoising() -> bool:
            """a job of the run to be denoising"""
            return bool(query(home, "SELECT id FROM job WHERE status='running' AND step > 0"))

        wait_for(denoising, timeout=120)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)

    def said(self, words: str) -> bool:
        return words in "".join(self.output)

    def interrupt(self) -> None:
        self.proc.send_signal(signal.SIGINT)


def test_two_ctrl_c_leave_the_run_running_in_the_engine(home: Home) -> None:
    run = Running(home, steps=300)
    run.interrupt()
    # Two signals sent at once reach a process as one; a person presses twice.
    wait_for(lambda: run.said("Ctrl+C again to leave it running in the engine"), timeout=30)
    run.interrupt()
    assert run.proc.wait(timeout=60) == 0
    assert run.said("goes on in the engine host")
    rows = query(home, "SELECT status, attempts FROM job ORDER BY id")
    assert rows[0] == ("running", 1) and rows[1] == ("queued", 0), (rows, run.output)
    step = query(home, "SELECT step FROM job ORDER BY id")[0][0]
    wait_for(lambda: query(home, "SELECT step FROM job ORDER BY id")[0][0] > step)
    assert query(home, "SELECT status FROM run")[0][0] == "running"


def test_one_ctrl_c_cancels_the_run(home: Home) -> None:
    run = Running(home, steps=300)
    run.interrupt()
    assert run.proc.wait(timeout=60) == 3
    assert query(home, "SELECT status FROM run")[0][0] == "cancelled"
    assert {row[0] for row in query(home, "SELECT status FROM job")} == {"cancelled"}
