"""A tiny RIFE demo interpolator, so the learned `interpolate` method runs with no download.

``write_demo_interpolator`` writes ``demo-rife.safetensors``: an IFNet in the
RIFE v4.6 layout (four blocks, coarse to fine) with 8 features per block, keyed
as RIFE's ``flownet`` state dict, so the registry detects it as kind
``interpolator`` and `interpolation.learned` loads it like real weights.

Its weights are random, drawn from a fixed seed, except that each block's last
convolution is scaled down: the flows it estimates are a small fraction of a
pixel and its mask stays near one half, so the output is close to a cross-fade
of the two frames. It only serves to exercise the loader and the stage.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from medialab_tui.engine.demo.publish import publish_safetensors

if TYPE_CHECKING:
    import torch

DEMO_RIFE = "demo-rife.safetensors"

_SEED = 0
_WIDTHS = (8, 8, 8, 8)
# An exact power of two, so the scaled weights round the same everywhere.
_LAST_SCALE = 1.0 / 64


def write_demo_interpolator(models_dir: Path) -> list[Path]:
    """Write the demo interpolator into ``models_dir`` unless it is already there.

    Returns its path; written to a temporary name and renamed, its bytes depend
    only on the seed and the torch and safetensors versions.
    """
    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    target = models_dir / DEMO_RIFE
    publish_safetensors(target, demo_rife_state, {"format": "pt"})
    return [target]


def demo_rife_state() -> dict[str, torch.Tensor]:
    """The demo interpolator's weights, keyed as a RIFE v4.6 ``flownet``."""
    import torch

    generator = torch.Generator(device="cpu").manual_seed(_SEED)
    state: dict[str, torch.Tensor] = {}
    for key, shape in _ifnet_shapes().items():
        if key.endswith(".bias"):
            state[key] = torch.zeros(shape)
        elif key.endswith(".beta"):
            state[key] = torch.ones(shape)
        else:
            # Transposed convs keep (in, out, k, k): their fan-in is the in channels.
            fan_in = shape[0] * shape[2] * shape[3] if ".lastconv." in key else math.prod(shape[1:])
            bound = 1.0 / math.sqrt(fan_in)
            state[key] = torch.rand(shape, generator=generator).mul_(2 * bound).sub_(bound)
            if ".lastconv." in key:
                state[key].mul_(_LAST_SCALE)
    return {k: v.contiguous() for k, v in state.items()}


def _ifnet_shapes() -> dict[str, tuple[int, ...]]:
    """Tensor shapes of an IFNet (v4.6 layout: 7 inputs to block 0, 12 to the rest)."""
    shapes: dict[str, tuple[int, ...]] = {}
    for i, c in enumerate(_WIDTHS):
        c_in = 7 if i == 0 else 12
        block = f"block{i}"
        shapes[f"{block}.conv0.0.0.weight"] = (c // 2, c_in, 3, 3)
        shapes[f"{block}.conv0.0.0.bias"] = (c // 2,)
        shapes[f"{block}.conv0.1.0.weight"] = (c, c // 2, 3, 3)
        shapes[f"{block}.conv0.1.0.bias"] = (c,)
        for r in range(8):
            shapes[f"{block}.convblock.{r}.conv.weight"] = (c, c, 3, 3)
            shapes[f"{block}.convblock.{r}.conv.bias"] = (c,)
            shapes[f"{block}.convblock.{r}.beta"] = (1, c, 1, 1)
        shapes[f"{block}.lastconv.0.weight"] = (c, 24, 4, 4)
        shapes[f"{block}.lastconv.0.bias"] = (24,)
    return shapes
