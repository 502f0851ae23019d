"""Ctrl+C during `medialab run`: once cancels the run (after a short grace), twice
leaves it queued for the next engine, as the README says."""

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


def test_two_ctrl_c_leave_the_run_queued_for_the_next_engine(home: Home) -> None:
    run = Running(home, steps=300)
    run.interrupt()
    # Two signals sent at once reach a process as one; a person presses twice.
    wait_for(lambda: run.said("Ctrl+C again to leave it queued"), timeout=30)
    run.interrupt()
    run.proc.wait(timeout=60)
    statuses = [row[0] for row in query(home, "SELECT status FROM job")]
    assert statuses == ["queued", "queued"], (statuses, run.output)
    assert query(home, "SELECT status FROM run")[0][0] in ("pending", "running")


def test_one_ctrl_c_cancels_the_run(home: Home) -> None:
    run = Running(home, steps=300)
    run.interrupt()
    assert run.proc.wait(timeout=60) == 3
    assert query(home, "SELECT status FROM run")[0][0] == "cancelled"
    assert {row[0] for row in query(home, "SELECT status FROM job")} == {"cancelled"}
