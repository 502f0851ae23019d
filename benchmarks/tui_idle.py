"""Idle TUI: the CPU `medialab` uses while nothing happens, as % of one core.

Starts `medialab serve` on a data directory holding a few finished runs, opens
`medialab` in a detached tmux pane of 100×30, waits for its first full frame and a
few seconds more (it builds the other screens just after start), then reads the
process's user and system time from /proc/<pid>/stat over a quiet window on each
screen in turn (Builder, then Queue; `--screens` takes any of the four). Goal ≤ 2 % of
a core.

    .venv/bin/python benchmarks/tui_idle.py [--seconds 20] [--screens builder,queue]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from tui_start import (
    Tmux,
    cpu_seconds,
    engine_host,
    full_frame,
    make_home,
    medialab,
    tui_env,
    wait_for_screen,
)

GOAL_PERCENT = 2.0
SETTLE_S = 4.0
SCREEN_KEYS = {"builder": "1", "queue": "2", "models": "3", "gallery": "4"}


def idle_percent(pid: int, seconds: float) -> float:
    """% of one core the process used over the next `seconds`."""
    cpu, wall = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    return 100 * (cpu_seconds(pid) - cpu) / (time.monotonic() - wall)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="per screen (20)")
    parser.add_argument("--screens", default="builder,queue")
    parser.add_argument("--jobs", type=int, default=30, help="jobs in the store (30)")
    args = parser.parse_args()
    screens = [s.strip() for s in args.screens.split(",") if s.strip()]
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="medialab-idle-bench-") as tmp:
        data = make_home(Path(tmp) / "home", args.jobs)
        tmux = Tmux()
        try:
            with engine_host(data):
                tmux.open("idle", medialab(), tui_env(data))
                wait_for_screen(tmux, "idle", full_frame)
                pid = tmux.pid("idle")
                time.sleep(SETTLE_S)
                for screen in screens:
                    tmux("send-keys", "-t", "idle", SCREEN_KEYS[screen])
                    time.sleep(SETTLE_S)
                    results[screen] = idle_percent(pid, args.seconds)
                tmux.close("idle")
        finally:
            tmux.shutdown()
    for screen, percent in results.items():
        print(f"{screen:<8} {percent:5.2f} % of a core over {args.seconds:.0f} s")
    print(f"load average (1 min) at the end: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    worst = max(results.values())
    verdict = "meets" if worst <= GOAL_PERCENT else "misses"
    print(f"idle TUI: at most {worst:.2f} % of a core (goal ≤ {GOAL_PERCENT} %: {verdict})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
