"""A tiny ESRGAN demo upscaler, so the model-based `upscale` stage runs with no downloads.

``write_demo_upscaler`` writes ``demo-esrgan-x4.safetensors``: an RRDBNet (the
ESRGAN generator) with one RRDB block and 16 features, scale 4, in the original
("old arch") key layout that spandrel and every ESRGAN loader detect.

Its weights are random, drawn from a fixed seed, except for an identity path:
the first three feature channels carry the picture's RGB through the network
and the two upsampling convolutions smooth it. The output is therefore the
input enlarged ×4 with a faint random texture on top, which makes tiling seams
and lost pixels visible in tests, where pure noise would hide them. It only
serves to exercise the loader, the tiling and the pipeline plumbing.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from medialab_tui.engine.demo.publish import publish_safetensors

if TYPE_CHECKING:
    import torch

DEMO_ESRGAN = "demo-esrgan-x4.safetensors"
DEMO_ESRGAN_SCALE = 4

_SEED = 0
_FEATURES = 16
_BLOCKS = 1
# Exact powers of two, so scaling the random weights rounds the same everywhere.
_TEXTURE = 0.125


def write_demo_upscaler(models_dir: Path) -> list[Path]:
    """Write the demo ESRGAN into ``models_dir`` unless it is already there.

    Returns its path. The file is written to a temporary name and renamed, so a
    crash never leaves half a model under the real name; its bytes depend only
    on the seed and the torch and safetensors versions.
    """
    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    target = models_dir / DEMO_ESRGAN
    # One metadata key: safetensors writes a map, whose order is not fixed.
    publish_safetensors(target, demo_esrgan_state, {"format": "pt"})
    return [target]


def demo_esrgan_state() -> dict[str, torch.Tensor]:
    """The demo upscaler's weights, keyed as an original ESRGAN checkpoint."""
    import torch

    generator = torch.Generator(device="cpu").manual_seed(_SEED)
    shapes = _esrgan_shapes()
    state: dict[str, torch.Tensor] = {}
    for key, shape in shapes.items():
        if key.endswith(".bias"):
            state[key] = torch.zeros(shape)
            continue
        # rand draws serially and exactly; the scale and shift are exact too.
        bound = 1.0 / math.sqrt(math.prod(shape[1:]))
        state[key] = torch.rand(shape, generator=generator).mul_(2 * bound).sub_(bound)

    # The identity path for the first three channels: copied in, smoothed while
    # upsampling, copied through the high-resolution conv, and read out.
    smooth = torch.tensor([1.0, 2.0, 1.0])
    smooth = torch.outer(smooth, smooth) / 16.0
    state["model.1.sub.1.weight"].mul_(_TEXTURE)
    state["model.10.weight"].mul_(_TEXTURE)
    for channel in range(3):
        for key in ("model.0.weight", "model.3.weight", "model.6.weight", "model.8.weight"):
            state[key][channel].zero_()
        state["model.0.weight"][channel, channel, 1, 1] = 1.0
        state["model.3.weight"][channel, channel] = smooth
        state["model.6.weight"][channel, channel] = smooth
        state["model.8.weight"][channel, channel, 1, 1] = 1.0
        state["model.10.weight"][channel, channel, 1, 1] += 1.0
    return {k: v.contiguous() for k, v in state.items()}


def _esrgan_shapes() -> dict[str, tuple[int, ...]]:
    """Tensor shapes of an old-arch RRDBNet (growth 32, as every ESRGAN uses)."""
    nf, growth = _FEATURES, 32
    shapes: dict[str, tuple[int, ...]] = {}

    def conv(key: str, c_in: int, c_out: int) -> None:
        shapes[f"{key}.weight"] = (c_out, c_in, 3, 3)
        shapes[f"{key}.bias"] = (c_out,)

    conv("model.0", 3, nf)
    for block in range(_BLOCKS):
        for rdb in (1, 2, 3):
            for i in range(1, 6):
                c_out = growth if i < 5 else nf
                conv(f"model.1.sub.{block}.RDB{rdb}.conv{i}.0", nf + (i - 1) * growth, c_out)
    conv(f"model.1.sub.{_BLOCKS}", nf, nf)
    # Each ×2 step is [upsample, conv, activation]: convs at 3 and 6 for ×4.
    upsamples = int(math.log2(DEMO_ESRGAN_SCALE))
    for step in range(upsamples):
        conv(f"model.{3 + 3 * step}", nf, nf)
    last = 3 + 3 * upsamples
    conv(f"model.{last - 1}", nf, nf)
    conv(f"model.{last + 1}", nf, 3)
    return shapes
