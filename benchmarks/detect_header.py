"""Family detection of a full-size checkpoint's header, against reading that header.

An SDXL checkpoint names about 2,500 tensors; the registry runs `detect_arch` on every
new file it finds. The baseline, measured in the same run, is the least any detection
must do: open the file, read the header's length and its JSON, and parse it. Goal:
detection ≤ 3× the bare header read (the checks of every tensor's offsets and the
family rules cost at most twice the parse itself).

    .venv/bin/python benchmarks/detect_header.py [--tensors 2500] [--runs 50]
"""

from __future__ import annotations

import argparse
import json
import statistics
import struct
import sys
import tempfile
import time
from pathlib import Path

from medialab_tui.engine.model_files import detect_arch

GOAL_RATIO = 3.0
DM = "model.diffusion_model."
# The keys that tell an SDXL base checkpoint (UNet width 2048, ADM 2816, two text encoders).
SDXL_KEYS = {
    f"{DM}input_blocks.0.0.weight": [320, 4, 3, 3],
    f"{DM}input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight": [640, 2048],
    f"{DM}out.2.weight": [4, 320, 3, 3],
    f"{DM}label_emb.0.0.weight": [1280, 2816],
    "conditioner.embedders.0.transformer.text_model.final_layer_norm.weight": [768],
    "conditioner.embedders.1.model.ln_final.weight": [1280],
}


def write_header(path: Path, tensors: int) -> Path:
    """A safetensors file holding only the header of `tensors` SDXL-like tensors."""
    shapes = dict(SDXL_KEYS)
    for i in range(tensors - len(shapes)):
        shapes[f"{DM}output_blocks.{i % 9}.1.transformer_blocks.{i}.ff.net.0.proj.weight"] = [
            10240,
            1280,
        ]
    header = {n: {"dtype": "F16", "shape": s, "data_offsets": [0, 0]} for n, s in shapes.items()}
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw)
    return path


def bare_read(path: Path) -> dict:
    with path.open("rb") as f:
        (size,) = struct.unpack("<Q", f.read(8))
        return json.loads(f.read(size))


def median_s(call, path: Path, runs: int) -> float:
    call(path)  # the file in the disk cache, the code warm
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call(path)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tensors", type=int, default=2500)
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="medialab-detect-bench-") as tmp:
        path = write_header(Path(tmp) / "big.safetensors", args.tensors)
        found = detect_arch(path)
        if found != ("checkpoint", "sdxl", "safetensors"):
            raise SystemExit(f"detection gave {found}, not an SDXL checkpoint")
        bare = median_s(bare_read, path, args.runs)
        detect = median_s(detect_arch, path, args.runs)
    ratio = detect / bare
    ok = ratio <= GOAL_RATIO
    print(f"header of {args.tensors} tensors, median of {args.runs}")
    print(f"bare header read   {bare * 1000:7.2f} ms")
    print(f"detect_arch        {detect * 1000:7.2f} ms")
    print(f"ratio {ratio:.2f} (goal ≤ {GOAL_RATIO:.0f}): {'met' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
