"""How close a made frame is to the real one."""

from __future__ import annotations

import math

import numpy as np


def psnr(made: np.ndarray, real: np.ndarray) -> float:
    """Peak signal-to-noise ratio of two uint8 frames of one shape, in dB
    (infinite when they are equal)."""
    if made.shape != real.shape:
        raise ValueError(f"frames differ in shape: {made.shape} and {real.shape}")
    error = np.mean((made.astype(np.float64) - real.astype(np.float64)) ** 2)
    return math.inf if error == 0 else 10.0 * math.log10(255.0**2 / error)
