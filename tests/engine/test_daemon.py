"""The engine host as a daemon: started detached by clients, warm between runs,
leaving by itself after `keep_alive`, ended by `medialab stop`, and never disturbed
by a client leaving. Attempts count crashes only."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import signal
import struct
import subprocess
import sys
import termios
import time

import pytest
from PIL import Image

from conftest import (
    ROOT,
    Home,
    job_row,
    query,
    submit,
    txt2img_toml,
    wait_for,
)
from medialab_tui.engine.host import HostLock

pytestmark = pytest.mark.slow


def host_pid(home: Home) -> int | None:
    holder = HostLock(home.root / "engine.lock").holder()
    return (holder or {}).get("pid")


def set_keep_alive(home: Home, seconds: float) -> None:
    config = home.root / "config.toml"
    config.write_text(config.read_text() + f"keep_alive = {seconds}\n")


def host_card(home: Home) -> dict:
    rows = query(home, "SELECT value FROM setting WHERE key='host.info'")
    return json.loads(rows[0][0]) if rows else {}


def test_run_starts_a_detached_host_that_stays_warm_for_the_next_run(home: Home) -> None:
    path = home.pipeline("one", txt2img_toml(prompts=["a fox"], seeds=[1]))
    first = json.loads(home.cli("run", str(path), "--json", check=True).stdout.splitlines()[-1])
    assert first["status"] == "succeeded"
    pid = host_pid(home)
    assert pid is not None and pid != os.getpid()
    # The host outlived the `run` that started it, in a session of its own.
    assert os.getsid(pid) == pid
    log = (home.root / "logs" / "engine.log").read_text()
    assert f"pid {pid}" in log
    # The host writes its card after the job's end, a moment after `run` saw it.
    assert wait_for(lambda: host_card(home).get("loaded"), timeout=30), "the model it holds"

    second = json.loads(home.cli("run", str(path), "--json", check=True).stdout.splitlines()[-1])
    assert second["status"] == "succeeded"
    assert host_pid(home) == pid  # the same host, not a new one
    loads = query(home, "SELECT load_seconds FROM job ORDER BY id")
    assert loads[1][0] == 0.0 or loads[1][0] < loads[0][0] / 5, loads

    doctor = home.json("doctor")
    assert doctor["engine_pid"] == pid
    assert doctor["engine_models"] == "demo-sd15"
    assert "left of 10.0 min" in doctor["engine_keep_alive"]

    # The second run was handed to the warm host, which validated and submitted it.
    log = (home.root / "logs" / "engine.log").read_text()
    assert f"submitted run {second['run_id']} for pid" in log
    assert f"submitted run {first['run_id']} " not in log  # the first client submitted its own
    assert host_card(home)["wake"] == "SIGUSR1"

    # Handed over too: a relative image path starts at the pipeline file's folder, not
    # at the host's working directory.
    Image.new("RGB", (64, 64), "teal").save(path.parent / "teal.png")
    i2i = home.pipeline(
        "i2i",
        '[inputs]\nimages = ["teal.png"]\nprompts = ["a fox"]\n'
        '[[stages]]\ntype = "img2img"\nmodel = "demo-sd15"\nsteps = 2\nstrength = 0.5\n',
    )
    third = json.loads(home.cli("run", str(i2i), "--json", check=True).stdout.splitlines()[-1])
    assert third["status"] == "succeeded", third
    assert f"submitted run {third['run_id']} for pid" in engine_log(home)

    # An input error on the warm host: the same sentence as validating here (a dry run
    # never hands over), exit 2, nothing stored, and the host said it refused it.
    runs = query(home, "SELECT count(*) FROM run")
    bad = home.pipeline(
        "bad", txt2img_toml(prompts=["a fox"], seeds=[1], steps=4).replace("steps = 4", "steps = 0")
    )
    handed = home.cli("run", str(bad))
    local = home.cli("run", str(bad), "--dry-run")
    assert (handed.returncode, local.returncode) == (2, 2)
    assert handed.stderr == local.stderr and "key 'steps' must be at least 1" in handed.stderr
    assert handed.stdout == ""
    assert "refused a handed-over run" in engine_log(home)
    # A run that needs the operator's yes is asked here, as without a host.
    large = home.pipeline("large", txt2img_toml(prompts=["a fox"], seeds=list(range(600))))
    proc = home.cli("run", str(large), "--no-wait")
    assert proc.returncode == 2 and "pass --yes" in proc.stderr, proc.stderr
    assert query(home, "SELECT count(*) FROM run") == runs
    assert query(home, "SELECT count(*) FROM setting WHERE key LIKE 'submit.%'") == [(0,)]
    assert host_pid(home) == pid


def engine_log(home: Home) -> str:
    return (home.root / "logs" / "engine.log").read_text()


def test_a_host_that_does_not_take_a_handed_over_run_leaves_it_to_the_client(
    home: Home,
) -> None:
    """A host that holds the lock but never looks at the store (hung, or a restore
    holding it): after HANDOFF_TAKE_S the client withdraws its request and submits
    the run itself, once."""
    from medialab_tui.cli import HANDOFF_TAKE_S

    lock = HostLock(home.root / "engine.lock")
    assert lock.try_acquire("serve")
    try:
        path = home.pipeline("one", txt2img_toml(prompts=["a fox"], seeds=[1]))
        started = time.monotonic()
        proc = home.cli("run", str(path), "--no-wait", "--json", timeout=120)
        waited = time.monotonic() - started
    finally:
        lock.release()
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["status"] == "pending"
    assert waited >= HANDOFF_TAKE_S
    assert query(home, "SELECT count(*) FROM run WHERE status='pending'") == [(1,)]
    assert query(home, "SELECT count(*) FROM setting WHERE key LIKE 'submit.%'") == [(0,)]


def test_run_no_wait_starts_a_host_unless_told_not_to(home: Home) -> None:
    path = home.pipeline("one", txt2img_toml(prompts=["a fox"], seeds=[1]))
    proc = home.cli("run", str(path), "--no-wait", check=True)
    assert "Started the engine host" in proc.stdout
    wait_for(lambda: query(home, "SELECT status FROM job") == [("succeeded",)], timeout=120)
    assert host_pid(home) is not None


def test_a_host_with_a_short_keep_alive_leaves_when_the_queue_is_empty(home: Home, serve) -> None:
    set_keep_alive(home, 2)
    submit(home, txt2img_toml(prompts=["a fox"], seeds=[1]))
    host = serve()
    wait_for(lambda: query(home, "SELECT status FROM job") == [("succeeded",)], timeout=120)
    host.wait(timeout=30)
    _, err = host.communicate()
    assert host.returncode == 0
    assert "with no TUI attached" in err
    assert host_pid(home) is None
    assert host_card(home) == {}


def test_an_attached_tui_keeps_the_host_past_its_keep_alive(home: Home, serve) -> None:
    from medialab_tui.config import DataDir
    from medialab_tui.engine import daemon
    from medialab_tui.store.db import Store

    set_keep_alive(home, 1)
    store = Store(DataDir(home.root).db_path)
    key = "client.test.1"
    daemon.beat(store, key)
    host = serve()

    def idle_past_keep_alive() -> bool:
        """the host to have idled for twice its keep-alive"""
        daemon.beat(store, key)
        since = host_card(home).get("idle_since")
        return since is not None and time.time() - since > 2.0

    wait_for(idle_past_keep_alive, timeout=60)
    assert host.poll() is None, "a heartbeating TUI keeps the host"
    daemon.leave(store, key)
    host.wait(timeout=30)
    assert host.returncode == 0


def test_stop_waits_for_the_running_job_then_ends_the_host(home: Home, serve) -> None:
    host = serve()
    run_id = submit(home, txt2img_toml(prompts=["a", "b"], seeds=[1], steps=150))
    first = query(home, "SELECT id FROM job WHERE run_id=? ORDER BY id", run_id)[0][0]
    wait_for(lambda: job_row(home, first)["step"] >= 1, timeout=120)
    proc = home.cli("stop", check=True, timeout=180)
    assert "after its running job" in proc.stdout
    assert host.wait(timeout=30) == 0
    statuses = query(home, "SELECT status, attempts FROM job WHERE run_id=? ORDER BY id", run_id)
    assert statuses == [("succeeded", 1), ("queued", 0)]
    assert home.cli("stop", check=True).stdout.strip() == "No engine is running."


def test_stop_now_hands_the_running_job_back_without_an_attempt(home: Home, serve) -> None:
    host = serve()
    run_id = submit(home, txt2img_toml(prompts=["slow"], seeds=[1], steps=300))
    job = query(home, "SELECT id FROM job WHERE run_id=?", run_id)[0][0]
    wait_for(lambda: job_row(home, job)["step"] >= 2, timeout=120)
    home.cli("stop", "--now", check=True, timeout=60)
    assert host.wait(timeout=30) == 0
    row = job_row(home, job)
    assert (row["status"], row["attempts"], row["crashes"]) == ("queued", 0, 0), row


def test_sigterm_hands_the_running_job_back_without_an_attempt(home: Home, serve) -> None:
    host = serve()
    run_id = submit(home, txt2img_toml(prompts=["slow"], seeds=[1], steps=300))
    job = query(home, "SELECT id FROM job WHERE run_id=?", run_id)[0][0]
    wait_for(lambda: job_row(home, job)["step"] >= 2, timeout=120)
    host.send_signal(signal.SIGTERM)
    host.wait(timeout=30)
    row = job_row(home, job)
    assert (row["status"], row["attempts"], row["crashes"]) == ("queued", 0, 0), row
    # The next host starts it as a first attempt.
    serve()
    wait_for(lambda: job_row(home, job)["attempts"] == 1, timeout=60)


def test_a_hang_up_of_the_tui_leaves_the_job_running_at_its_step(home: Home) -> None:
    """An SSH drop: the TUI's terminal hangs up mid-job. The job goes on in the host
    it started, at its step, with its attempt count unchanged."""
    pid, fd = pty.fork()
    if pid == 0:  # the TUI, on a terminal of its own, 100×30 like an SSH session's
        fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 600, 1000))
        os.chdir(ROOT)
        env = {**home.env(), "TERM": "xterm-256color", "COLUMNS": "100", "LINES": "30"}
        os.execve(sys.executable, [sys.executable, "-m", "medialab_tui"], env)
    try:
        drain = subprocess.Popen(["cat"], stdin=fd, stdout=subprocess.DEVNULL)
        wait_for(lambda: host_pid(home) is not None, timeout=120)
        run_id = submit(home, txt2img_toml(prompts=["slow"], seeds=[1], steps=300))
        job = query(home, "SELECT id FROM job WHERE run_id=?", run_id)[0][0]
        wait_for(lambda: job_row(home, job)["step"] >= 2, timeout=120)
        host = host_pid(home)
        # The SSH connection drops: the terminal's master side closes and the kernel
        # hangs up the TUI's session.
        drain.kill()
        os.close(fd)
        fd = -1

        def tui_gone() -> bool:
            """the TUI to end on the hang-up"""
            return os.waitpid(pid, os.WNOHANG)[0] == pid

        wait_for(tui_gone, timeout=30)
        step = job_row(home, job)["step"]
        wait_for(lambda: job_row(home, job)["step"] > step + 2, timeout=60)
        row = job_row(home, job)
        assert (row["status"], row["attempts"], row["crashes"]) == ("running", 1, 0), row
        assert host_pid(home) == host
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if fd >= 0:
            os.close(fd)
        drain.kill()
