"""Engine overhead: `medialab run` against a bare diffusers loop, both whole processes.

Both sides make the same images on the same demo model: N txt2img jobs of S steps
at W×W, each saved as a PNG. The engine side is the real command a person types
(CLI start, database, host lock, worker subprocess, artifact indexing); the
baseline is the shortest honest script: import diffusers, load, loop, save.
Runs alternate (engine, bare, engine, bare, …) so drift hits both alike; the
figure is the ratio of the medians. Goal: ≤ 1.05 for 16 jobs of 8 steps at 64×64.
Every engine run is a cold one: the engine host that `run` starts is stopped after
it (untimed), so each timed run starts a host and loads the model, as the bare
script does (`warm_run.py` measures the warm host).

    .venv/bin/python benchmarks/engine_overhead.py [--jobs 16] [--steps 8] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BARE_LOOP = """
import sys, time
from pathlib import Path
import torch
from diffusers import StableDiffusionPipeline
model, out, jobs, steps, size, threads = sys.argv[1], Path(sys.argv[2]), *map(int, sys.argv[3:7])
torch.set_num_threads(threads)
pipe = StableDiffusionPipeline.from_pretrained(model, local_files_only=True, safety_checker=None,
                                               requires_safety_checker=False)
pipe.set_progress_bar_config(disable=True)
out.mkdir(parents=True, exist_ok=True)
for i in range(jobs):
    g = torch.Generator("cpu").manual_seed(i)
    image = pipe("a lighthouse at dusk", negative_prompt="", num_inference_steps=steps,
                 guidance_scale=7.0, width=size, height=size, generator=g).images[0]
    image.save(out / f"{i:02d}.png")
"""


def timed(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"benchmark command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr}")
    return elapsed


MEDIALAB = [sys.executable, "-m", "medialab_tui"]


def demo_home(tmp: str, config: str) -> tuple[Path, dict[str, str]]:
    """A data directory in `tmp` with `config.toml` and the demo models; its env."""
    home = Path(tmp) / "home"
    home.mkdir()
    (home / "config.toml").write_text(config)
    env = {**os.environ, "MEDIALAB_HOME": str(home)}
    subprocess.run([*MEDIALAB, "models", "demo"], env=env, check=True, capture_output=True)
    return home, env


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=16)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="medialab-bench-") as tmp:
        home, env = demo_home(tmp, f"threads = {args.threads}\n")
        medialab = MEDIALAB
        pipeline = Path(tmp) / "bench.toml"
        pipeline.write_text(
            f'name = "bench"\n[inputs]\nprompts = ["a lighthouse at dusk"]\n'
            f"seeds = {json.dumps(list(range(args.jobs)))}\n"
            f'[[stages]]\ntype = "txt2img"\nmodel = "demo-sd15"\nsteps = {args.steps}\n'
            f"cfg = 7.0\nwidth = {args.size}\nheight = {args.size}\n"
        )
        engine_cmd = [*medialab, "run", str(pipeline)]
        bare_cmd = [
            sys.executable,
            "-c",
            BARE_LOOP,
            str(home / "models" / "demo-sd15"),
            str(Path(tmp) / "bare"),
            str(args.jobs),
            str(args.steps),
            str(args.size),
            str(args.threads),
        ]
        stop_cmd = [*medialab, "stop"]
        # One untimed pass of each warms the page cache and compiled bytecode.
        timed(engine_cmd, env)
        timed(stop_cmd, env)
        timed(bare_cmd, env)
        engine, bare = [], []
        for i in range(args.rounds):
            engine.append(timed(engine_cmd, env))
            timed(stop_cmd, env)
            bare.append(timed(bare_cmd, env))
            print(
                f"round {i + 1}: engine {engine[-1]:.2f} s, bare loop {bare[-1]:.2f} s", flush=True
            )

    e, b = statistics.median(engine), statistics.median(bare)
    print(
        f"{args.jobs} jobs × {args.steps} steps at {args.size}×{args.size}, "
        f"{args.threads} threads, {args.rounds} rounds"
    )
    print(f"medialab run: median {e:.2f} s")
    print(f"bare diffusers loop: median {b:.2f} s")
    print(f"ratio: {e / b:.3f} (goal ≤ 1.05)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
