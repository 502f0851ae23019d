"""Random weights for the demo models that come out byte-identical everywhere."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

SEED = 0


def seeded(factory: Callable[..., torch.nn.Module], **kwargs: Any) -> torch.nn.Module:
    """Build one component and give it weights that depend only on the seed."""
    module = factory(**kwargs)
    draw_weights(module)
    return module.eval()


def draw_weights(module: torch.nn.Module) -> None:
    """Set every parameter from a generator seeded with ``SEED``, portably.

    The constructors' own initialisation is not byte-identical across machines:
    ``normal_`` (used by transformers) has an AVX2-only kernel that rounds
    differently from the scalar one used on ARM, and ``uniform_(-b, b)`` (used
    by torch layers) computes ``u * 2b - b``, which compilers may fuse into one
    FMA on some builds only. Here matrices get ``torch.rand``, which draws
    serially and exactly, then an exact scale and shift to +-1/sqrt(fan_in);
    biases are 0 and norm scales 1, as in most initialisations.
    """
    import torch

    generator = torch.Generator(device="cpu").manual_seed(SEED)
    with torch.no_grad():
        for name, param in module.named_parameters():
            if param.ndim >= 2:
                bound = 1.0 / math.sqrt(param[0].numel())
                noise = torch.rand(param.shape, generator=generator, dtype=param.dtype)
                param.copy_(noise.mul_(2 * bound).sub_(bound))
            elif name.endswith("bias"):
                param.zero_()
            else:  # the only other vectors are LayerNorm and GroupNorm scales
                param.fill_(1.0)
