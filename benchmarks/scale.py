"""Scale out: the same 8-job run on 1 local worker, 2 local workers and 2 Dask workers.

Each setup is a warm engine host (`medialab serve`) on a data directory with the demo
models: config `devices = ["cpu"]`, `devices = ["cpu", "cpu"]`, or `cluster =` the
address of a `distributed.LocalCluster` started here (worker processes with
`GPU=1` each, on a node data directory of their own). Every worker gets one torch
thread, so the figures say what a second worker adds, not how torch splits cores.
A warm-up run loads the model on every worker; the timed runs go from the first
job's start to the last job's end (as the store records them), best of `--rounds`.
It also runs 1 Dask worker against 1 local worker: the Dask path's own overhead
(goal ≤ 1.15).

    .venv/bin/python benchmarks/scale.py [--jobs 8] [--steps 8] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

MEDIALAB = [sys.executable, "-m", "medialab_tui"]


def pipeline(jobs: int, steps: int, seed0: int) -> str:
    seeds = list(range(seed0, seed0 + jobs))
    return f"""
name = "scale"
[inputs]
prompts = ["a lighthouse at dusk"]
seeds = {json.dumps(seeds)}
[[stages]]
type = "txt2img"
model = "demo-sd15"
steps = {steps}
width = 64
height = 64
"""


def query(home: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(home / "medialab.db", timeout=30)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def wait(what: Any, timeout: float, why: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = what()
        if value:
            return value
        time.sleep(0.1)
    sys.exit(f"timed out waiting for {why}")


def run_once(home: Path, env: dict[str, str], jobs: int, steps: int, seed0: int) -> float:
    """Seconds from the run's first job start to its last job end."""
    file = home / f"scale-{seed0}.toml"
    file.write_text(pipeline(jobs, steps, seed0))
    out = subprocess.run(
        [*MEDIALAB, "run", str(file), "--no-wait", "--no-start", "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    run_id = int(json.loads(out.stdout)["run_id"].removeprefix("r"))

    def ended() -> str | None:
        status = query(home, "SELECT status FROM run WHERE id=?", run_id)[0][0]
        return status if status in ("succeeded", "failed", "cancelled") else None

    status = wait(ended, 600, f"run r{run_id}")
    if status != "succeeded":
        sys.exit(
            f"run r{run_id} {status}: {query(home, 'SELECT error FROM job WHERE run_id=?', run_id)}"
        )
    rows = query(home, "SELECT started_at, finished_at FROM job WHERE run_id=?", run_id)
    start = min(datetime.fromisoformat(str(a)) for a, _ in rows)
    end = max(datetime.fromisoformat(str(b)) for _, b in rows)
    return (end - start).total_seconds()


def measure(base: Path, name: str, extra: str, slots: int, args: argparse.Namespace) -> float:
    """Best seconds of `args.rounds` timed runs on a warm host configured with `extra`."""
    home = base / name
    shutil.copytree(base / "template", home)
    with (home / "config.toml").open("a") as f:
        f.write(extra + "keep_alive = 600\n")
    env = {**os.environ, "MEDIALAB_HOME": str(home)}
    proc = subprocess.Popen([*MEDIALAB, "serve"], env=env, stderr=subprocess.DEVNULL)
    try:
        run_once(home, env, slots * 2, args.steps, 1000)  # warm every worker
        return min(run_once(home, env, args.jobs, args.steps, r * 100) for r in range(args.rounds))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    import distributed

    with tempfile.TemporaryDirectory(prefix="medialab-scale-") as tmp:
        base = Path(tmp)
        template = base / "template"
        template.mkdir()
        (template / "config.toml").write_text("threads = 1\n")
        env = {**os.environ, "MEDIALAB_HOME": str(template)}
        subprocess.run([*MEDIALAB, "models", "demo"], env=env, check=True, capture_output=True)
        node = base / "node"
        shutil.copytree(template, node)
        seconds: dict[str, float] = {}
        seconds["local 1"] = measure(base, "local1", 'devices = ["cpu"]\n', 1, args)
        seconds["local 2"] = measure(base, "local2", 'devices = ["cpu", "cpu"]\n', 2, args)
        for n in (2, 1):
            with distributed.LocalCluster(
                n_workers=n,
                processes=True,
                threads_per_worker=1,
                resources={"GPU": 1},
                dashboard_address=":0",
                env={"MEDIALAB_HOME": str(node)},
            ) as cluster:
                extra = f'cluster = "{cluster.scheduler_address}"\n'
                seconds[f"dask {n}"] = measure(base, f"dask{n}", extra, n, args)

    base_rate = args.jobs / seconds["local 1"]
    print(
        f"{args.jobs} jobs of {args.steps} steps at 64x64, demo SD 1.5, one torch thread a worker"
    )
    print(f"machine: {os.cpu_count()} cores")
    for name, s in seconds.items():
        rate = args.jobs / s
        print(f"  {name:<8} {s:6.2f} s  {rate:5.2f} jobs/s  x{rate / base_rate:.2f}")
    overhead = seconds["dask 1"] / seconds["local 1"]
    print(f"Dask path overhead, 1 worker vs 1 local worker: {overhead:.2f} (goal <= 1.15)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
