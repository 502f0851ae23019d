"""TUI start-up: exec to the first full frame at 100×30 while an engine host runs.

Starts `medialab serve` on a data directory holding 100 runs of 10 jobs, then opens
`medialab` in a detached tmux pane of 100×30 several times and polls
`tmux capture-pane -p` until the frame is full: the header with the screen tabs and
the host's state, and the builder's stage list and form filled. The figure is the
median of the runs, from just before tmux is asked to start the process. Goal ≤ 1.0 s.

The same run times a bare Textual app (`tui_bare_app.py`: a header, a footer, a table
of 10 rows) to its first frame the same way, so the ratio of the two says what medialab
adds to what Python and Textual cost on this machine, whatever its speed that day.

    .venv/bin/python benchmarks/tui_start.py [--runs 7]

`benchmarks/tui_idle.py` uses the same pieces (a host, a pane) to measure idle CPU.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tui_bare_app import LAST_ROW, MARK
from tui_scale import fill

from medialab_tui.config import DataDir
from medialab_tui.engine.host import HostLock

GOAL_S = 1.0
SIZE = (100, 30)
POLL_S = 0.02
# The builder's stage list shows its first stage; the form shows the stage's fields.
STAGE_ROW = re.compile(r"\b1 txt2img\b")


def medialab(*args: str) -> list[str]:
    """The command line that runs `medialab` with this interpreter."""
    return [sys.executable, "-m", "medialab_tui", *args]


def make_home(root: Path, jobs: int) -> DataDir:
    """A data directory holding `jobs` jobs (runs of 10, one artifact each)."""
    data = DataDir(root).ensure()
    fill(data, jobs)
    return data


@contextmanager
def engine_host(data: DataDir) -> Iterator[subprocess.Popen[bytes]]:
    """`medialab serve` in the background, ready (it holds the lock); SIGTERM at the end."""
    log = (data.root / "serve-bench.log").open("wb")
    proc = subprocess.Popen(
        medialab("serve"),
        env={**os.environ, "MEDIALAB_HOME": str(data.root)},
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    try:
        lock = HostLock(data.lock_path)
        deadline = time.monotonic() + 60
        while lock.holder() is None:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"medialab serve did not start; see {log.name}")
            time.sleep(0.05)
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


class Tmux:
    """A private tmux server (its own socket) for panes of a fixed size."""

    def __init__(self) -> None:
        self.socket = f"medialab-bench-{os.getpid()}"
        # A session that lives as long as the server, so starting a pane never
        # includes starting tmux itself.
        self("new-session", "-d", "-s", "keeper", "-x", "20", "-y", "5", "sleep 100000")

    def __call__(self, *args: str) -> str:
        return subprocess.run(
            ["tmux", "-L", self.socket, *args], capture_output=True, text=True, check=True
        ).stdout

    def open(self, name: str, command: list[str], env: dict[str, str]) -> None:
        """A detached session of SIZE whose only process is `command` (exec'd by the shell)."""
        exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
        line = f"exec env {exports} {shlex.join(command)}"
        cols, rows = SIZE
        self("new-session", "-d", "-s", name, "-x", str(cols), "-y", str(rows), line)

    def screen(self, name: str) -> list[str]:
        return self("capture-pane", "-p", "-t", name).splitlines()

    def pid(self, name: str) -> int:
        return int(self("display-message", "-p", "-t", name, "#{pane_pid}").strip())

    def close(self, name: str) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-session", "-t", name], capture_output=True)

    def shutdown(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True)


def full_frame(lines: list[str]) -> bool:
    """The header (screen tabs and the host's state) and the builder's stage list and form."""
    if not lines:
        return False
    header, body = lines[0], lines[1:]
    return (
        "1 Builder" in header
        and bool(header.partition("│")[2].strip())
        and any(STAGE_ROW.search(line) for line in body)
        and any(" steps " in line for line in body)
    )


def wait_for_screen(
    tmux: Tmux, name: str, condition: Callable[[list[str]], bool], timeout: float = 60
) -> float:
    """Poll the pane until `condition` holds on its text; the perf_counter time it did."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        try:
            lines = tmux.screen(name)
        except subprocess.CalledProcessError:  # the pane is gone: the app died
            raise SystemExit("medialab exited before its first full frame") from None
        if condition(lines):
            return time.perf_counter()
        time.sleep(POLL_S)
    raise SystemExit(f"no full frame within {timeout} s:\n" + "\n".join(tmux.screen(name)))


def tui_env(data: DataDir) -> dict[str, str]:
    env = {"MEDIALAB_HOME": str(data.root), "TERM": "xterm-256color"}
    if "PYTHONPATH" in os.environ:  # measure another checkout's code with the same script
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    return env


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # The fields after the command name, which is in parentheses and may hold spaces.
    fields = stat.rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


BARE_APP = Path(__file__).with_name("tui_bare_app.py")


def bare_frame(lines: list[str]) -> bool:
    """The bare app's header and its table's last row."""
    return bool(lines) and MARK in lines[0] and any(LAST_ROW in line for line in lines)


def first_frame_s(
    tmux: Tmux, data: DataDir, name: str, *, bare: bool = False
) -> tuple[float, float]:
    """Seconds from asking tmux to start `medialab` (or the bare app) to its first full
    frame, and the CPU seconds the process had used by then (steadier than wall time on
    a busy machine)."""
    start = time.perf_counter()
    command = [sys.executable, str(BARE_APP)] if bare else medialab()
    tmux.open(name, command, tui_env(data))
    try:
        wall = wait_for_screen(tmux, name, bare_frame if bare else full_frame) - start
        return wall, cpu_seconds(tmux.pid(name))
    finally:
        tmux.close(name)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--jobs", type=int, default=1000, help="jobs in the store (1000)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="medialab-start-bench-") as tmp:
        data = make_home(Path(tmp) / "home", args.jobs)
        tmux = Tmux()
        try:
            with engine_host(data):
                # The first start reads the code from disk; the figure is for a warm cache.
                first_frame_s(tmux, data, "warmup")
                first_frame_s(tmux, data, "bare-warmup", bare=True)
                runs, bare = [], []
                for i in range(args.runs):  # interleaved: both see the same load
                    runs.append(first_frame_s(tmux, data, f"run{i}"))
                    bare.append(first_frame_s(tmux, data, f"bare{i}", bare=True))
        finally:
            tmux.shutdown()
    times = [wall for wall, _ in runs]
    median = statistics.median(times)
    print("runs (s): " + " ".join(f"{t:.2f}" for t in times))
    cpu = statistics.median(c for _, c in runs)
    print(f"CPU of the TUI by its first full frame: median {cpu:.2f} s")
    print(f"load average (1 min) at the end: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    bare_median = statistics.median(wall for wall, _ in bare)
    bare_cpu = statistics.median(c for _, c in bare)
    print("bare Textual app runs (s): " + " ".join(f"{t:.2f}" for t, _ in bare))
    print(f"CPU of the bare app by its first frame: median {bare_cpu:.2f} s")
    verdict = "meets" if median <= GOAL_S else "misses"
    print(
        f"TUI first full frame at {SIZE[0]}×{SIZE[1]}, host running: median {median:.2f} s "
        f"(goal ≤ {GOAL_S} s: {verdict}); a bare Textual app: {bare_median:.2f} s, "
        f"ratio {median / bare_median:.2f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
