"""Loading and running LTX-Video pipelines (worker only)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from diffusers import DiffusionPipeline, LTXImageToVideoPipeline

from medialab_tui.engine.families.base import VideoRequest
from medialab_tui.engine.families.wan.load import prompted_video, spatial_tiles


def pipeline_class(arch: str) -> type[DiffusionPipeline]:
    return LTXImageToVideoPipeline


def load_kwargs(arch: str) -> dict[str, Any]:
    return {}


def prepare(pipe: Any) -> None:
    """Decode in chunks: overlapping runs of frames, each in spatial tiles."""
    pipe.vae.enable_tiling()
    pipe.vae.use_framewise_decoding = True


def decode_calls(pipe: Any, request: VideoRequest) -> int:
    """How many times the VAE's decoder runs for one video: once per temporal chunk and
    tile (as `AutoencoderKLLTXVideo._temporal_tiled_decode` and `tiled_decode` split it)."""
    vae = pipe.vae
    ratio, temporal = vae.spatial_compression_ratio, vae.temporal_compression_ratio
    latent_frames = (request.frames - 1) // temporal + 1
    tiles = spatial_tiles(vae, ratio, request.width // ratio, request.height // ratio)
    if vae.use_framewise_decoding and latent_frames > vae.tile_sample_min_num_frames // temporal:
        chunks = len(range(0, latent_frames, vae.tile_sample_stride_num_frames // temporal))
        return chunks * tiles
    return tiles


def generate(
    pipe: Any, request: VideoRequest, generator: torch.Generator, on_step: Callable[..., Any]
) -> Any:
    """One video as frames (F, H, W, 3) in [0, 1]; LTX also conditions on the frame rate."""
    return prompted_video(pipe, request, generator, on_step, frame_rate=request.fps)
