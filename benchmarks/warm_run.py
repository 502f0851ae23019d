"""Warm runs: N sequential `medialab run`s of one image against N bare diffusers
processes making the same image, in one run.

A script that makes images one call at a time pays, with bare diffusers, the torch
import and the model load on every call. `medialab run` hands the work to the
engine host, which stays up for `keep_alive` seconds with the model loaded, so only
the first call pays them. Both sides make one 4-step 64×64 image per call on the
demo SD1.5 model and save it as a PNG; calls alternate (medialab, bare, …) so drift
hits both alike. The host is started (and the model loaded) by one untimed call
first, as a script's earlier calls would have done. Goal: ratio of the totals ≤ 0.3.

It also reports how soon a warm `medialab run` starts generating: from exec to the
job's `started_at` in the store (goal ≤ 0.5 s).

    .venv/bin/python benchmarks/warm_run.py [--calls 10] [--threads 2]
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from engine_overhead import BARE_LOOP, MEDIALAB, demo_home, timed  # noqa: E402


def started_after_exec(db: Path, called_at: float) -> float:
    """Seconds from the call to the newest job's start, as the engine wrote it."""
    conn = sqlite3.connect(db)
    try:
        (started,) = conn.execute("SELECT started_at FROM job ORDER BY id DESC LIMIT 1").fetchone()
    finally:
        conn.close()
    at = datetime.fromisoformat(started).replace(tzinfo=UTC).timestamp()
    return at - called_at


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="medialab-bench-") as tmp:
        home, env = demo_home(tmp, f"threads = {args.threads}\nkeep_alive = 600\n")
        medialab = MEDIALAB
        pipeline = Path(tmp) / "one.toml"
        pipeline.write_text(
            'name = "one"\n[inputs]\nprompts = ["a lighthouse at dusk"]\nseeds = [1]\n'
            f'[[stages]]\ntype = "txt2img"\nmodel = "demo-sd15"\nsteps = {args.steps}\n'
            f"cfg = 7.0\nwidth = {args.size}\nheight = {args.size}\n"
        )
        run_cmd = [*medialab, "run", str(pipeline)]
        bare_cmd = [
            sys.executable,
            "-c",
            BARE_LOOP,
            str(home / "models" / "demo-sd15"),
            str(Path(tmp) / "bare"),
            "1",
            str(args.steps),
            str(args.size),
            str(args.threads),
        ]
        try:
            timed(run_cmd, env)  # starts the host and loads the model
            timed(bare_cmd, env)  # warms the page cache for the baseline alike
            warm, bare, to_start = [], [], []
            for i in range(args.calls):
                called = time.time()
                warm.append(timed(run_cmd, env))
                to_start.append(started_after_exec(home / "medialab.db", called))
                bare.append(timed(bare_cmd, env))
                print(
                    f"call {i + 1}: medialab run {warm[-1]:.2f} s "
                    f"(generating after {to_start[-1]:.2f} s), bare {bare[-1]:.2f} s",
                    flush=True,
                )
        finally:
            subprocess.run([*medialab, "stop", "--now"], env=env, capture_output=True)

    total_warm, total_bare = sum(warm), sum(bare)
    print(
        f"{args.calls} calls of one {args.steps}-step {args.size}×{args.size} image, "
        f"{args.threads} threads"
    )
    for label, times in (("medialab run (warm host)", warm), ("bare diffusers processes", bare)):
        print(f"{label}: {sum(times):.2f} s in all, median {statistics.median(times):.2f} s")
    print(f"ratio: {total_warm / total_bare:.3f} (goal ≤ 0.3)")
    print(
        f"exec to generating: median {statistics.median(to_start):.2f} s, "
        f"worst {max(to_start):.2f} s (goal ≤ 0.5 s)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
