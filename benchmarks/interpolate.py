"""Frame interpolation on real footage: drop every other frame, make it again, compare.

The clip (Big Buck Bunny, 1280×720 at 25 fps; `../shared/media/README.md` has its
licence) is decoded with `store.videos.read_frames`. Frames 0, 2, 4, … are kept;
each dropped frame 2k+1 is made again from frames 2k and 2k+2 (t = 0.5) and
compared with the original (PSNR over RGB, mean of the frames). Methods:

- `flow`: medialab's built-in method (`FlowInterpolator`, OpenCV DIS flow);
- `blend`: a plain cross-fade (ffmpeg's `framerate`, `minterpolate mi_mode=blend`);
- `minterpolate`: ffmpeg's motion-compensated interpolation (`mi_mode=mci`, its
  defaults otherwise), when an `ffmpeg` binary is on PATH; skipped with a note
  otherwise. It reads the kept frames as raw RGB on stdin at 12.5 fps and writes
  25 fps raw RGB to stdout, so no codec time is counted on its side either.

Speed is frames made per second of wall time (frames already decoded in memory
for `flow` and `blend`; the whole ffmpeg process for `minterpolate`). Goal: flow
at least minterpolate's PSNR + 0.5 dB, at twice its speed or more.

    .venv/bin/python benchmarks/interpolate.py [--clip PATH] [--frames N] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np

from medialab_tui.engine.interpolation.flow import FlowInterpolator, blend
from medialab_tui.engine.interpolation.metrics import psnr
from medialab_tui.store.videos import read_frames

CLIP = Path(__file__).resolve().parents[2] / "shared" / "media" / "bigbuckbunny-1280x720-25fps.mp4"
PSNR_MARGIN_DB = 0.5
SPEED_RATIO = 2.0

Between = Callable[[np.ndarray, np.ndarray, Sequence[float]], list[np.ndarray]]


def restore(between: Between, kept: list[np.ndarray]) -> tuple[list[np.ndarray], float]:
    """The frame halfway between each pair of kept frames, and the seconds taken."""
    start = time.perf_counter()
    made = [between(a, b, [0.5])[0] for a, b in zip(kept, kept[1:], strict=False)]
    return made, time.perf_counter() - start


def minterpolate(kept: list[np.ndarray], ffmpeg: str) -> tuple[list[np.ndarray], float]:
    """ffmpeg's motion-compensated frames between the kept ones, and the seconds taken."""
    height, width = kept[0].shape[:2]
    cmd = [
        ffmpeg, "-hide_banner", "-loglevel", "error",
        "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-r", "25/2",
        "-i", "-",
        "-vf", "minterpolate=fps=25:mi_mode=mci",
        "-f", "rawvideo", "-pix_fmt", "rgb24", "-",
    ]  # fmt: skip
    start = time.perf_counter()
    proc = subprocess.run(cmd, input=b"".join(f.tobytes() for f in kept), capture_output=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"ffmpeg failed ({proc.returncode}): {proc.stderr.decode(errors='replace')}")
    size = width * height * 3
    out = [
        np.frombuffer(proc.stdout[i : i + size], np.uint8).reshape(height, width, 3)
        for i in range(0, len(proc.stdout) - size + 1, size)
    ]
    # Output frame 2k+1 lies halfway between kept frames k and k+1.
    return out[1 : 2 * len(kept) - 1 : 2], elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", type=Path, default=CLIP)
    parser.add_argument("--frames", type=int, default=0, help="first N frames only (0: all)")
    parser.add_argument("--threads", type=int, default=2, help="OpenCV threads")
    parser.add_argument("--preset", help="DIS preset (default: FlowInterpolator's)")
    parser.add_argument(
        "--flow-side", type=int, help="flow resolution (default: FlowInterpolator's)"
    )
    parser.add_argument("--json", type=Path, default=Path("interpolate-benchmark.json"))
    args = parser.parse_args()

    cv2.setNumThreads(args.threads)
    frames = [frame for _, frame in read_frames(args.clip)]
    if args.frames:
        frames = frames[: args.frames]
    kept, dropped = frames[0::2], frames[1::2]
    height, width = frames[0].shape[:2]
    print(f"{args.clip.name}: {len(frames)} frames {width}×{height}; "
          f"{len(kept) - 1} dropped frames made again", flush=True)  # fmt: skip

    options = {"preset": args.preset, "flow_side": args.flow_side}
    flow = FlowInterpolator(**{k: v for k, v in options.items() if v is not None})
    methods: dict[str, Callable[[], tuple[list[np.ndarray], float]]] = {
        "flow": lambda: restore(flow.between, kept),
        "blend": lambda: restore(blend, kept),
    }
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is not None:
        methods["minterpolate"] = lambda: minterpolate(kept, ffmpeg)
    else:
        print("minterpolate: skipped (no ffmpeg binary on PATH)")

    results: dict[str, dict[str, float]] = {}
    for name, run in methods.items():
        made, seconds = run()
        scores = [psnr(m, real) for m, real in zip(made, dropped, strict=False)]
        results[name] = {
            "frames": len(scores),
            "psnr_db": float(np.mean(scores)),
            "psnr_min_db": float(np.min(scores)),
            "seconds": seconds,
            "fps": len(made) / seconds,
        }
        r = results[name]
        print(f"{name:>13}: {r['psnr_db']:6.2f} dB (worst {r['psnr_min_db']:5.2f}), "
              f"{r['fps']:7.2f} frames/s", flush=True)  # fmt: skip

    summary: dict[str, object] = {
        "clip": args.clip.name,
        "size": [width, height],
        "threads": args.threads,
        "preset": flow.preset,
        "flow_side": flow.flow_side,
        "methods": results,
    }
    if "minterpolate" in results:
        mci, ours = results["minterpolate"], results["flow"]
        gain = ours["psnr_db"] - mci["psnr_db"]
        speed = ours["fps"] / mci["fps"]
        met = gain >= PSNR_MARGIN_DB and speed >= SPEED_RATIO
        summary.update(psnr_gain_db=gain, speed_ratio=speed, goal_met=met)
        print(f"flow vs minterpolate: {gain:+.2f} dB (goal ≥ +{PSNR_MARGIN_DB}), "
              f"{speed:.1f}× its speed (goal ≥ {SPEED_RATIO:.0f}×): "
              f"{'met' if met else 'NOT met'}")  # fmt: skip
    args.json.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
