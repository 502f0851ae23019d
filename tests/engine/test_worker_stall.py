"""A worker that stops answering (SIGSTOP, a hung driver) is noticed within a minute
by its missing heartbeats, killed and restarted, and its job retried."""

from __future__ import annotations

import os
import signal
import time

import pytest

from conftest import Home, job_row, query, submit, txt2img_toml, wait_for, worker_pid
from medialab_tui.engine.scheduler import STALL_S

pytestmark = pytest.mark.slow


def test_a_stopped_worker_is_replaced_within_a_minute_and_its_job_finishes(
    home: Home, serve
) -> None:
    serve()
    run_id = submit(home, txt2img_toml(prompts=["a lighthouse"], seeds=[3], steps=60))
    job_id = query(home, "SELECT id FROM job WHERE run_id=?", run_id)[0][0]
    wait_for(lambda: job_row(home, job_id)["step"] > 0, timeout=120)
    stopped = worker_pid(home)
    assert stopped is not None
    os.kill(stopped, signal.SIGSTOP)
    t0 = time.monotonic()
    try:
        wait_for(lambda: worker_pid(home) not in (None, stopped), timeout=90)
        noticed = time.monotonic() - t0
    finally:
        try:  # a worker still there (the test failing) must not stay stopped
            os.kill(stopped, signal.SIGCONT)
        except ProcessLookupError:
            pass
    assert STALL_S <= 60 and noticed <= 60, noticed
    wait_for(lambda: job_row(home, job_id)["status"] == "succeeded", timeout=300)
    row = job_row(home, job_id)
    assert row["attempts"] == 2 and row["crashes"] == 1
