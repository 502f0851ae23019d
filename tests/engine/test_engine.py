"""The engine end to end: real `medialab` processes, the real worker, the real SQLite file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from conftest import (
    EXAMPLES,
    Home,
    job_row,
    process_gone,
    query,
    run_status,
    submit,
    txt2img_toml,
    wait_for,
    worker_pid,
)
from medialab_tui.engine.host import HostLock

pytestmark = pytest.mark.slow


def test_demo_pipeline_runs_headless_and_writes_tagged_pngs_with_sidecars(home: Home) -> None:
    proc = home.cli("run", str(EXAMPLES / "demo.toml"), "--json", timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    summary = lines[-1]
    assert summary["status"] == "succeeded"
    assert len(summary["artifacts"]) == 4
    assert any(e.get("event") == "job" and e["status"] == "running" for e in lines[:-1])
    for path in summary["all_artifacts"]:
        png = Path(path)
        assert png.exists()
        with Image.open(png) as im:
            assert "parameters" in im.info and "medialab" in im.info
            meta = json.loads(im.info["medialab"])
        assert json.loads(png.with_suffix(".json").read_text()) == meta
        assert "Seed: " in Image.open(png).info["parameters"]
    for path in summary["artifacts"]:
        with Image.open(path) as im:
            assert im.size == (128, 128)  # 64×64 upscaled 2×
    # Lineage: every upscaled image names the txt2img image it came from.
    upscaled = home.json("gallery", "--search", "knight")
    ups = [a for a in upscaled if a["stage"] == "upscale"]
    assert len(ups) == 2
    shown = home.json("show", ups[0]["id"])
    parent = home.json("show", shown["parents"][0])
    assert parent["stage"] == "txt2img" and parent["seed"] == shown["seed"]


def test_a_job_submitted_from_another_process_runs_on_the_host(home: Home, serve) -> None:
    host = serve()
    run_id = submit(home, txt2img_toml(prompts=["a lighthouse"], seeds=[5]))
    wait_for(lambda: run_status(home, run_id) == "succeeded", timeout=60)
    assert host.poll() is None
    shown = home.json("show", f"r{run_id}")
    assert [j["status"] for j in shown["jobs"]] == ["succeeded"]


def test_only_one_engine_host_at_a_time(home: Home, serve) -> None:
    host = serve()
    second = home.cli("serve", timeout=30)
    assert second.returncode == 4
    assert f"pid {host.pid}" in second.stderr
    assert "Traceback" not in second.stderr


def test_run_no_wait_no_start_only_submits_and_says_the_run_waits(home: Home) -> None:
    path = home.pipeline("p", txt2img_toml(prompts=["x"], seeds=[1]))
    proc = home.cli("run", str(path), "--no-wait", "--no-start", check=True)
    assert "No engine is running: the work waits in the queue" in proc.stdout
    assert query(home, "SELECT status FROM job") == [("queued",)]
    assert HostLock(home.root / "engine.lock").holder() is None


def test_killed_worker_mid_job_is_retried_and_the_host_lives_on(home: Home, serve) -> None:
    host = serve()
    run_id = submit(home, txt2img_toml(prompts=["slow"], seeds=[1], steps=60))
    job_id = query(home, "SELECT id FROM job WHERE run_id=?", run_id)[0][0]
    wait_for(lambda: job_row(home, job_id)["step"] >= 3)
    pid = worker_pid(home)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: job_row(home, job_id)["status"] == "succeeded", timeout=120)
    row = job_row(home, job_id)
    assert row["attempts"] == 2 and row["crashes"] == 1
    assert host.poll() is None
    assert worker_pid(home) != pid


def test_killed_host_mid_run_the_next_host_finishes_every_job(home: Home, serve) -> None:
    first = serve()
    run_id = submit(home, txt2img_toml(prompts=["a", "b", "c"], seeds=[1], steps=40))
    wait_for(lambda: query(home, "SELECT 1 FROM job WHERE status='running' AND step > 2"))
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    assert run_status(home, run_id) == "running"
    serve()
    wait_for(lambda: run_status(home, run_id) == "succeeded", timeout=180)
    statuses = query(home, "SELECT status FROM job WHERE run_id=?", run_id)
    assert statuses == [("succeeded",)] * 3
    assert len(query(home, "SELECT id FROM artifact WHERE run_id=?", run_id)) == 3


def test_poison_job_fails_after_three_crashes_and_the_rest_of_the_queue_completes(
    home: Home, serve
) -> None:
    serve()
    poison_run = submit(home, txt2img_toml(prompts=["poison"], seeds=[1], steps=300), "poison")
    other_run = submit(home, txt2img_toml(prompts=["fine"], seeds=[2]), "fine")
    poison = query(home, "SELECT id FROM job WHERE run_id=?", poison_run)[0][0]
    killed: list[int] = []

    def poison_ended() -> bool:
        """the poison job to fail, killing the worker each time it runs it"""
        row = job_row(home, poison)
        if row["status"] == "running" and row["step"] >= 2 and row["attempts"] > len(killed):
            pid = worker_pid(home)
            if pid is not None and pid not in killed:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
        return row["status"] == "failed"

    wait_for(poison_ended, timeout=240)
    row = job_row(home, poison)
    assert len(killed) == 3 and row["crashes"] == 3
    assert "3 times" in row["error"]
    wait_for(lambda: run_status(home, other_run) == "succeeded", timeout=60)
    assert run_status(home, poison_run) == "failed"


def test_cancel_of_a_running_job_takes_effect_within_one_step(home: Home, serve) -> None:
    serve()
    run_id = submit(home, txt2img_toml(prompts=["long"], seeds=[1], steps=400, size=128))
    job_id = query(home, "SELECT id FROM job WHERE run_id=?", run_id)[0][0]
    wait_for(lambda: job_row(home, job_id)["step"] >= 3)
    home.cli("cancel", f"j{job_id}", check=True)
    wait_for(lambda: job_row(home, job_id)["status"] == "cancelled", timeout=10)
    events = dict(
        query(
            home,
            "SELECT action, details FROM event WHERE object_id=? AND action IN "
            "('job.cancel_sent', 'job.stopped')",
            job_id,
        )
    )
    sent = json.loads(events["job.cancel_sent"])["step"]
    stopped = json.loads(events["job.stopped"])["step"]
    # The worker finishes the step it is in, and no more.
    assert stopped - sent <= 1, (sent, stopped)
    assert run_status(home, run_id) == "cancelled"


def test_listing_jobs_does_not_import_torch(home: Home) -> None:
    code = f"""
import json, sys
from medialab_tui.cli import main
rc = main(["--data-dir", {str(home.root)!r}, "jobs", "--json"])
heavy = [m for m in ("torch", "diffusers", "transformers") if m in sys.modules]
print(json.dumps(heavy), file=sys.stderr)
sys.exit(rc)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == []
    assert json.loads(proc.stderr.strip().splitlines()[-1]) == []


def test_a_worker_that_ignores_a_cancel_is_killed_after_five_seconds(home: Home, serve) -> None:
    host = serve()
    run_id = submit(home, txt2img_toml(prompts=["stuck"], seeds=[1], steps=300))
    job_id = query(home, "SELECT id FROM job WHERE run_id=?", run_id)[0][0]
    wait_for(lambda: job_row(home, job_id)["step"] >= 2)
    stuck = worker_pid(home)
    assert stuck is not None
    os.kill(stuck, signal.SIGSTOP)  # as if stuck in a model load: it reads no commands
    try:
        home.cli("cancel", f"j{job_id}", check=True)
        wait_for(lambda: job_row(home, job_id)["status"] == "cancelled", timeout=20)
    finally:
        try:
            os.kill(stuck, signal.SIGCONT)
        except ProcessLookupError:
            pass

    wait_for(process_gone(stuck), timeout=10)  # the engine killed the worker that did not answer
    assert host.poll() is None
    after = submit(home, txt2img_toml(prompts=["next"], seeds=[2]), "next")
    wait_for(lambda: run_status(home, after) == "succeeded", timeout=90)
