"""Loading and running Wan image-to-video pipelines (worker only)."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import torch
from diffusers import DiffusionPipeline, WanImageToVideoPipeline
from diffusers.pipelines.wan import pipeline_wan_i2v

from medialab_tui.engine.families.base import VideoRequest

if not hasattr(pipeline_wan_i2v, "ftfy"):
    # Wan cleans prompts with ftfy (mojibake repair) and fails by name without it;
    # medialab's prompts are already clean text, so its other cleaning suffices.
    pipeline_wan_i2v.ftfy = SimpleNamespace(fix_text=lambda text: text)


def pipeline_class(arch: str) -> type[DiffusionPipeline]:
    return WanImageToVideoPipeline


def load_kwargs(arch: str) -> dict[str, Any]:
    return {}


def prepare(pipe: Any) -> None:
    """Decode in spatial tiles: the VAE already decodes one latent frame at a time
    (through its causal cache); tiles bound the memory of each for large frames."""
    pipe.vae.enable_tiling()


def decode_calls(pipe: Any, request: VideoRequest) -> int:
    """How many times the VAE's decoder runs for one video: once per latent frame and
    tile (as `AutoencoderKLWan._decode` and `tiled_decode` split the work)."""
    vae = pipe.vae
    ratio = vae.spatial_compression_ratio
    latent_frames = (request.frames - 1) // pipe.vae_scale_factor_temporal + 1
    return latent_frames * spatial_tiles(
        vae, ratio, request.width // ratio, request.height // ratio
    )


def spatial_tiles(vae: Any, ratio: int, width: int, height: int) -> int:
    """The tiles a video VAE with tiling on splits a `width`×`height` latent into (Wan's
    and LTX's split alike): one when it fits a tile."""
    if not vae.use_tiling or (
        width <= vae.tile_sample_min_width // ratio
        and height <= vae.tile_sample_min_height // ratio
    ):
        return 1
    rows = len(range(0, height, vae.tile_sample_stride_height // ratio))
    return rows * len(range(0, width, vae.tile_sample_stride_width // ratio))


def generate(
    pipe: Any, request: VideoRequest, generator: torch.Generator, on_step: Callable[..., Any]
) -> Any:
    """One video as frames (F, H, W, 3) in [0, 1], from the image and the motion prompt."""
    return prompted_video(pipe, request, generator, on_step)


def prompted_video(
    pipe: Any,
    request: VideoRequest,
    generator: torch.Generator,
    on_step: Callable[..., Any],
    **extra: Any,
) -> Any:
    """A call of an image-to-video pipeline that takes a prompt (Wan's and LTX's)."""
    return pipe(
        image=request.image,
        prompt=request.prompt,
        negative_prompt=request.negative or None,
        width=request.width,
        height=request.height,
        num_frames=request.frames,
        num_inference_steps=request.steps,
        guidance_scale=request.cfg,
        generator=generator,
        callback_on_step_end=on_step,
        output_type="np",
        **extra,
    ).frames[0]
