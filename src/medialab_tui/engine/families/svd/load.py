"""Loading Stable Video Diffusion pipelines (worker only)."""

from __future__ import annotations

import math
from typing import Any

from diffusers import DiffusionPipeline, StableVideoDiffusionPipeline


def pipeline_class(arch: str) -> type[DiffusionPipeline]:
    return StableVideoDiffusionPipeline


def load_kwargs(arch: str) -> dict[str, Any]:
    return {}


def prepare(pipe: Any) -> None:
    """Nothing to set: SVD decodes `decode_chunk_size` frames at a time by itself."""


def decode_calls(pipe: Any, frames: int, size: tuple[int, int], decode_chunk_size: int) -> int:
    """How many times the VAE's decoder runs for one video: once per chunk of frames."""
    return math.ceil(frames / decode_chunk_size)
