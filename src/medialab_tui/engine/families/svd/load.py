"""Loading and running Stable Video Diffusion pipelines (worker only)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from diffusers import DiffusionPipeline, StableVideoDiffusionPipeline

from medialab_tui.engine.families.base import VideoRequest


def pipeline_class(arch: str) -> type[DiffusionPipeline]:
    return StableVideoDiffusionPipeline


def load_kwargs(arch: str) -> dict[str, Any]:
    return {}


def prepare(pipe: Any) -> None:
    """Nothing to set: SVD decodes `decode_chunk_size` frames at a time by itself."""


def decode_calls(pipe: Any, request: VideoRequest) -> int:
    """How many times the VAE's decoder runs for one video: once per chunk of frames."""
    return math.ceil(request.frames / request.decode_chunk_size)


def generate(
    pipe: Any, request: VideoRequest, generator: torch.Generator, on_step: Callable[..., Any]
) -> Any:
    """One video as frames (F, H, W, 3) in [0, 1]. SVD reads no prompt: the image, the
    frame rate, the motion bucket and the noise added to the image condition it;
    guidance rises from 1 on the first frame to `cfg` on the last."""
    return pipe(
        image=request.image,
        width=request.width,
        height=request.height,
        num_frames=request.frames,
        num_inference_steps=request.steps,
        min_guidance_scale=1.0,
        max_guidance_scale=request.cfg,
        fps=request.fps,
        motion_bucket_id=request.motion,
        noise_aug_strength=request.noise_aug,
        decode_chunk_size=request.decode_chunk_size,
        generator=generator,
        callback_on_step_end=on_step,
        output_type="np",
    ).frames[0]
