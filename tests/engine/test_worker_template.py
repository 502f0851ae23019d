"""The worker template forks ready CPU workers for every host of the user: a job runs
on a forked worker, a killed one is replaced by another fork, the template can be
turned off, it leaves when idle, refuses bad requests and replaces a dead one's socket."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import Home, job_row, query, submit, txt2img_toml, wait_for, worker_pid
from medialab_tui.engine.worker import template
from medialab_tui.engine.worker.template import ENV_TEMPLATE, template_key

pytestmark = pytest.mark.slow


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def template_pids(directory: Path) -> set[int]:
    """The templates serving in `directory` (one per environment key)."""
    return {int(p.read_text()) for p in directory.glob("*.pid")}


def job_of(home: Home, run_id: int) -> int:
    return query(home, "SELECT id FROM job WHERE run_id=?", run_id)[0][0]


def test_a_killed_worker_comes_back_forked_from_the_template_and_finishes_the_next_job(
    home: Home, serve
) -> None:
    directory = Path(os.environ[ENV_TEMPLATE])
    serve()
    first = job_of(home, submit(home, txt2img_toml(prompts=["a harbour"], seeds=[1])))
    wait_for(lambda: job_row(home, first)["status"] == "succeeded", timeout=300)
    # The session's template may be one this host started, or an earlier host's.
    wait_for(lambda: template_pids(directory), timeout=120)
    worker = worker_pid(home)
    assert worker is not None
    if parent_of(worker) not in template_pids(directory):
        # This host's first worker started fresh while the template imported: the
        # next one is forked.
        os.kill(worker, signal.SIGKILL)
        second = job_of(home, submit(home, txt2img_toml(prompts=["a quay"], seeds=[2])))
        wait_for(lambda: job_row(home, second)["status"] == "succeeded", timeout=300)
        worker = worker_pid(home)
        assert worker is not None
    assert parent_of(worker) in template_pids(directory)
    os.kill(worker, signal.SIGKILL)
    third = job_of(home, submit(home, txt2img_toml(prompts=["a pier"], seeds=[3])))
    wait_for(lambda: job_row(home, third)["status"] == "succeeded", timeout=300)
    replaced = worker_pid(home)
    assert replaced is not None and replaced != worker
    assert parent_of(replaced) in template_pids(directory)


def test_with_the_template_off_the_host_starts_its_worker_itself(
    home: Home, serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_TEMPLATE, "off")
    host = serve()
    job = job_of(home, submit(home, txt2img_toml(prompts=["a bay"], seeds=[4])))
    wait_for(lambda: job_row(home, job)["status"] == "succeeded", timeout=300)
    worker = worker_pid(home)
    assert worker is not None and parent_of(worker) == host.pid


def start_template(directory: Path, key: str, env: dict[str, str], idle: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "medialab_tui.engine.worker.template", str(directory), key, idle],
        env=template.template_env(env),
        cwd=directory,
    )


def refusal(sock: Path) -> str:
    """Send a request with one pipe instead of three; the template's answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(30)
        conn.connect(str(sock))
        request = {"argv": ["--device", "cpu"], "env": {}, "cwd": "/", "umask": 0o077}
        r, w = os.pipe()
        try:
            socket.send_fds(conn, [json.dumps(request).encode() + b"\n"], [r])
        finally:
            os.close(r)
            os.close(w)
        return str(json.loads(conn.recv(4096))["refused"])


async def forked_worker_exit(env: dict[str, str], log: Path) -> tuple[dict, int, int]:
    """A worker forked by the template: its `ready` line, its parent, and its code
    once killed."""
    with log.open("ab") as fh:
        child = await template.fork_worker(
            ["--device", "cpu", "--threads", "1"], env, fh.fileno(), 1 << 20
        )
    assert child is not None, "the template gave no worker"
    ready = json.loads(await asyncio.wait_for(child.stdout.readline(), 120))
    parent = parent_of(child.pid)
    child.kill()
    return ready, parent, await asyncio.wait_for(child.wait(), 60)


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A folder of a short path: a socket's path must fit `sockaddr_un`."""
    path = Path(tempfile.mkdtemp(prefix="medialab-test-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_a_template_forks_refuses_leaves_when_idle_and_replaces_a_dead_ones_socket(
    tmp_path: Path, short_dir: Path
) -> None:
    directory = short_dir / "templates"
    env = {**os.environ, ENV_TEMPLATE: str(directory), "PYTHONUNBUFFERED": "1"}
    key = template_key(env)
    sock = directory / f"{key}.sock"
    directory.mkdir(mode=0o700)
    # A dead template's socket: bound once, nobody listens.
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(sock))
    stale.close()
    # Nobody answers: the host starts its worker itself and a template for the next.
    r, w = os.pipe()
    try:
        assert asyncio.run(template.fork_worker(["--device", "cpu"], env, w, 1 << 16)) is None
    finally:
        os.close(r)
        os.close(w)
    wait_for(lambda: (directory / f"{key}.pid").exists(), timeout=120)
    pid = int((directory / f"{key}.pid").read_text())
    ready, parent, code = asyncio.run(forked_worker_exit(env, tmp_path / "worker.log"))
    assert ready["event"] == "ready" and ready["device"] == "cpu" and ready["threads"] == 1
    assert parent == pid
    assert code == -signal.SIGKILL
    assert "instead of 3" in refusal(sock)
    template.stop_templates(directory)
    assert not template._alive(pid)
    assert not sock.exists()
    # One started with a short idle time leaves by itself and takes its socket along.
    idle = start_template(directory, key, env, "1")
    assert idle.wait(timeout=120) == 0
    assert not sock.exists()
    assert oct(directory.stat().st_mode & 0o777) == "0o700"
