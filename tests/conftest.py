"""Fixtures that build real things: data directories, the demo models, CLI processes."""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from medialab_tui.store.values import TERMINAL_RUN

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


@pytest.fixture(scope="session")
def demo_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo models, written once per test session by the real `models demo` and
    shared by every test process (pytest-xdist workers wait for the first to write
    them). Tests read them in place or copy them; none writes into this folder."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the session's folder, shared by all workers
    home = root / "demo-home"
    done = root / "demo-home.done"
    with (root / "demo-home.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            proc = subprocess.run(
                [sys.executable, "-m", "medialab_tui", "--data-dir", str(home)]
                + ["models", "demo", "--json"],
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert proc.returncode == 0, proc.stderr
            assert len(json.loads(proc.stdout)) >= 2
            done.write_text(proc.stdout)
    return home / "models"


class Home:
    """A temporary data directory and a way to run `medialab` commands against it."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def env(self, **extra: str) -> dict[str, str]:
        env = {**os.environ, "MEDIALAB_HOME": str(self.root)}
        env.pop("COLUMNS", None)
        env.update(extra)
        return env

    def cli(
        self, *args: str, timeout: float = 180, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """`medialab ARGS` on this data directory: its exit code, stdout and stderr.

        Commands that only talk to the store (and start a detached host, like `run`)
        run the CLI's own `main` in this process; a subprocess would spend half a
        second of CPU importing what this process has imported already. The host, the
        TUI and `models demo` (torch) run as real processes.
        """
        if in_process(args):
            proc = self._cli_here(args, timeout)
        else:
            proc = subprocess.run(
                [sys.executable, "-m", "medialab_tui", *args],
                capture_output=True,
                text=True,
                timeout=timeout,
                env=self.env(),
                cwd=ROOT,
            )
        if check:
            assert proc.returncode == 0, f"{args}: {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        return proc

    def _cli_here(self, args: tuple[str, ...], timeout: float) -> subprocess.CompletedProcess[str]:
        """`main` on a thread of its own (a Pilot test's event loop may be running on
        this one, and `run` runs one of its own), with this directory's environment."""
        env = self.env()
        saved = dict(os.environ)
        os.environ.clear()
        os.environ.update(env)
        result: list[tuple[int, str, str]] = []
        thread = threading.Thread(target=lambda: result.append(call_main(list(args))))
        try:
            thread.start()
            thread.join(timeout)
        finally:
            os.environ.clear()
            os.environ.update(saved)
        if not result:
            raise subprocess.TimeoutExpired(["medialab", *args], timeout)
        code, stdout, stderr = result[0]
        return subprocess.CompletedProcess(["medialab", *args], code, stdout, stderr)

    def spawn(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "medialab_tui", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env(),
            cwd=ROOT,
        )

    def json(self, *args: str) -> object:
        proc = self.cli(*args, "--json", check=True)
        return json.loads(proc.stdout)

    def pipeline(self, name: str, text: str) -> Path:
        path = self.root.parent / f"{name}.toml"
        path.write_text(text)
        return path


def in_process(args: tuple[str, ...]) -> bool:
    """Whether `Home.cli` may run this command's `main` in the test process: not the
    host (`serve`, `--headless`), not the TUI (no command), not `models demo`."""
    words = [a for a in args if not a.startswith("-")]
    if not words or words[0] == "serve" or "--headless" in args:
        return False
    return words[:2] != ["models", "demo"]


def call_main(argv: list[str]) -> tuple[int, str, str]:
    """The CLI's `main(argv)` in this process: (exit code, stdout, stderr), as the
    process would end. No terminal (stdin is empty); the umask `main` sets for its
    own files is put back; a crash is a traceback on stderr and exit 1."""
    from medialab_tui import cli

    stdout, stderr = io.StringIO(), io.StringIO()
    umask = os.umask(0o077)
    os.umask(umask)
    stdin = sys.stdin
    sys.stdin = io.StringIO()
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                code = cli.main(argv)
            except SystemExit as exc:  # argparse: a bad flag, or --help
                code = exc.code if isinstance(exc.code, int) else 1 if exc.code else 0
            except KeyboardInterrupt:
                code = 130
            except Exception:
                traceback.print_exc()
                code = 1
    finally:
        sys.stdin = stdin
        os.umask(umask)
    return code, stdout.getvalue(), stderr.getvalue()


@pytest.fixture(scope="session")
def scanned_home(tmp_path_factory: pytest.TempPathFactory, demo_models_dir: Path) -> Path:
    """A data directory whose registry has scanned the demo models, made once per test
    process by the real `models scan`; every `home` starts as a copy of it."""
    root = tmp_path_factory.mktemp("scanned") / "home"
    root.mkdir()
    (root / "config.toml").write_text(f'model_roots = ["{demo_models_dir}"]\nthreads = 1\n')
    Home(root).cli("models", "scan", check=True)
    return root


@pytest.fixture
def home(tmp_path: Path, scanned_home: Path) -> Iterator[Home]:
    """A fresh data directory that sees the session's demo models, one torch thread."""
    root = tmp_path / "home"
    # Nobody has the template's database open: a plain copy of its files is consistent.
    shutil.copytree(scanned_home, root)
    h = Home(root)
    yield h
    stop_engine_host(root)


@pytest.fixture(scope="session", autouse=True)
def no_engine_host_left(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """At the end, stop every engine host a test started in its data directories
    (module fixtures' included): none outlives the test session. The session's worker
    template (`engine.worker.template`) lives in its temporary folder and ends too: one
    for every test process (xdist's controller ends it once they are all done)."""
    from medialab_tui.engine.worker.template import ENV_TEMPLATE, stop_templates

    shared = os.environ.get("PYTEST_XDIST_WORKER") is not None
    templates = templates_dir(tmp_path_factory.getbasetemp(), under_xdist=shared)
    os.environ[ENV_TEMPLATE] = str(templates)
    yield
    for lock in tmp_path_factory.getbasetemp().rglob("engine.lock"):
        stop_engine_host(lock.parent)
    if not shared:
        stop_templates(templates)


def templates_dir(basetemp: Path, *, under_xdist: bool) -> Path:
    """The session's worker templates: an xdist test process's basetemp is a folder of
    the controller's (`popen-gw<n>`), and the processes share the controller's."""
    return (basetemp.parent if under_xdist else basetemp) / "templates"


def pytest_sessionfinish(session: pytest.Session) -> None:
    """xdist's controller, after every test process has ended: end their template."""
    if getattr(session.config, "workerinput", None) is not None:
        return  # a test process: the controller ends the template
    if session.config.pluginmanager.hasplugin("dsession"):
        from medialab_tui.engine.worker.template import stop_templates

        factory = session.config._tmp_path_factory  # type: ignore[attr-defined]
        stop_templates(templates_dir(factory.getbasetemp(), under_xdist=False))


def stop_engine_host(root: Path) -> None:
    """End the engine host a test started (clients start `medialab serve` detached,
    and it would stay for its keep-alive)."""
    from medialab_tui.engine.host import HostLock

    holder = HostLock(root / "engine.lock").holder() if (root / "engine.lock").exists() else None
    pid = (holder or {}).get("pid")
    if not pid or pid == os.getpid():
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and HostLock(root / "engine.lock").holder() is not None:
        time.sleep(0.05)
    if HostLock(root / "engine.lock").holder() is not None:
        os.kill(pid, signal.SIGKILL)


@pytest.fixture
def empty_home(tmp_path: Path) -> Home:
    """A data directory with no models at all."""
    root = tmp_path / "empty"
    root.mkdir()
    return Home(root)


def txt2img_toml(
    *,
    prompts: list[str],
    seeds: list[int],
    steps: int = 4,
    size: int = 64,
    per_input: int = 1,
    model: str = "demo-sd15",
    extra: str = "",
    mode: str = "auto",
    review: bool = False,
) -> str:
    return f"""
name = "test"
mode = "{mode}"
[inputs]
prompts = {json.dumps(prompts)}
seeds = {json.dumps(seeds)}
[[stages]]
type = "txt2img"
model = "{model}"
steps = {steps}
width = {size}
height = {size}
per_input = {per_input}
review = {"true" if review else "false"}
{extra}
"""


def query(home: Home, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(home.root / "medialab.db", timeout=30)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def wait_for(what: Callable[[], Any], timeout: float = 90.0, every: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = what()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what.__doc__ or what}")


async def until(pilot: Any, what: Callable[[], Any], timeout: float = 60.0) -> Any:
    """Let a Pilot-driven app run until `what()` is true; its value is returned."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = what()
        if value:
            return value
        await pilot.pause(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what.__doc__ or what}")


def process_gone(pid: int) -> Callable[[], bool]:
    """A `wait_for` condition: the process `pid` has ended (and was reaped)."""

    def gone() -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False

    gone.__doc__ = f"process {pid} to end"
    return gone


def job_row(home: Home, job_id: int) -> dict[str, Any]:
    rows = query(home, "SELECT status, step, attempts, crashes, error FROM job WHERE id=?", job_id)
    status, step, attempts, crashes, error = rows[0]
    return {
        "status": status,
        "step": step,
        "attempts": attempts,
        "crashes": crashes,
        "error": error,
    }


def worker_pid(home: Home) -> int | None:
    rows = query(home, "SELECT value FROM setting WHERE key='worker_info'")
    return json.loads(rows[0][0])["pid"] if rows else None


def submit(home: Home, text: str, name: str = "p") -> int:
    """Queue a run without starting an engine host (tests start theirs with `serve`).

    The CLI's own `main` runs in this process (the same parsing, validation and
    submit as `medialab run --no-wait --no-start --json`): a subprocess would spend
    half a second importing what this process has imported already.
    """
    path = home.pipeline(name, text)
    argv = ["run", "--data-dir", str(home.root), str(path), "--no-wait", "--no-start", "--json"]
    code, stdout, stderr = call_main(argv)
    assert code == 0, f"{argv}: {code}\n{stdout}\n{stderr}"
    out = json.loads(stdout)
    assert out["status"] == "pending"
    return int(out["run_id"].removeprefix("r"))


def run_status(home: Home, run_id: int) -> str:
    return query(home, "SELECT status FROM run WHERE id=?", run_id)[0][0]


def settled(home: Home, runs: dict[str, int], timeout: float = 600.0) -> dict[str, str]:
    """Wait until every run has ended; their statuses by name.

    The engine serves runs fairly, so a later run can end before an earlier one's
    last stage: waiting on the last run alone is not enough.
    """

    def statuses() -> dict[str, str] | None:
        found = {name: run_status(home, i) for name, i in runs.items()}
        return found if all(s in TERMINAL_RUN for s in found.values()) else None

    statuses.__doc__ = f"runs {sorted(runs.values())} to end"
    return wait_for(statuses, timeout=timeout)


@pytest.fixture
def serve(home: Home) -> Iterator[Callable[[], subprocess.Popen[str]]]:
    """Start `medialab serve` processes; every one is stopped at the end of the test."""
    procs: list[subprocess.Popen[str]] = []

    def start() -> subprocess.Popen[str]:
        proc = home.spawn("serve")
        procs.append(proc)
        lock = home.root / "engine.lock"

        def hosting() -> bool:
            """the new serve process to take the host lock"""
            text = lock.read_text() if lock.exists() else ""
            return bool(text) and json.loads(text)["pid"] == proc.pid

        wait_for(hosting, timeout=30)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture
def studio(home: Home):
    """Make the real TUI app on a data directory with the demo models.

    `studio(host_engine=True)` starts a detached engine host when none runs, like
    `medialab` does (the `home` fixture stops it at the end);
    use it inside `async with app.run_test(size=(120, 36)) as pilot:`.
    """
    from medialab_tui.app import MedialabApp
    from medialab_tui.config import DataDir, load_config
    from medialab_tui.store.db import Store

    apps = []

    def make(*, host_engine: bool = False, pipeline: Path | None = None) -> MedialabApp:
        data = DataDir(home.root).ensure()
        app = MedialabApp(
            data, load_config(data), Store(data.db_path), pipeline=pipeline, host_engine=host_engine
        )
        apps.append(app)
        return app

    yield make
