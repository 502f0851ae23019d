"""CLI listings cold: exec to exit of `medialab jobs --json` and friends.

Each figure is the median wall time of several fresh processes (the disk cache warm,
the interpreter cold) on a data directory holding 1,000 jobs in 100 runs and 1,000
artifacts. Goal ≤ 0.5 s for `jobs --json` and `runs --json`; the other listings
are shown beside them.

    .venv/bin/python benchmarks/cli_cold.py [--runs 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from tui_start import make_home, medialab

GOAL_S = 0.5
LISTINGS = (
    ("jobs", "--json"),
    ("runs", "--json"),
    ("jobs",),
    ("gallery", "--json"),
    ("show", "r1", "--json"),
    ("models", "list", "--json"),
)
WITH_GOAL = {("jobs", "--json"), ("runs", "--json")}


def cold_s(args: tuple[str, ...], env: dict[str, str]) -> float:
    """Wall seconds of one `medialab …` process, from exec to exit."""
    start = time.perf_counter()
    proc = subprocess.run(medialab(*args), env=env, capture_output=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"medialab {' '.join(args)} failed: {proc.stderr.decode()}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--jobs", type=int, default=1000, help="jobs in the store (1000)")
    args = parser.parse_args()
    misses = 0
    with tempfile.TemporaryDirectory(prefix="medialab-cli-bench-") as tmp:
        data = make_home(Path(tmp) / "home", args.jobs)
        env = {**os.environ, "MEDIALAB_HOME": str(data.root)}
        for listing in LISTINGS:
            cold_s(listing, env)  # reads the code and the database into the disk cache
            times = [cold_s(listing, env) for _ in range(args.runs)]
            median = statistics.median(times)
            line = f"medialab {' '.join(listing):<24} median {median:.3f} s"
            if listing in WITH_GOAL:
                ok = median <= GOAL_S
                misses += not ok
                line += f"  (goal ≤ {GOAL_S} s: {'meets' if ok else 'misses'})"
            print(line)
    return 0 if not misses else 1


if __name__ == "__main__":
    raise SystemExit(main())
