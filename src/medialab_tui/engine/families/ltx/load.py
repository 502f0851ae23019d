"""Loading LTX-Video pipelines (worker only)."""

from __future__ import annotations

from typing import Any

from diffusers import DiffusionPipeline, LTXImageToVideoPipeline

from medialab_tui.engine.families.wan.load import spatial_tiles


def pipeline_class(arch: str) -> type[DiffusionPipeline]:
    return LTXImageToVideoPipeline


def load_kwargs(arch: str) -> dict[str, Any]:
    return {}


def prepare(pipe: Any) -> None:
    """Decode in chunks: overlapping runs of frames, each in spatial tiles."""
    pipe.vae.enable_tiling()
    pipe.vae.use_framewise_decoding = True


def decode_calls(pipe: Any, frames: int, size: tuple[int, int], decode_chunk_size: int) -> int:
    """How many times the VAE's decoder runs for one video: once per temporal chunk and
    tile (as `AutoencoderKLLTXVideo._temporal_tiled_decode` and `tiled_decode` split it)."""
    vae = pipe.vae
    ratio, temporal = vae.spatial_compression_ratio, vae.temporal_compression_ratio
    latent_frames = (frames - 1) // temporal + 1
    tiles = spatial_tiles(vae, ratio, size[0] // ratio, size[1] // ratio)
    if vae.use_framewise_decoding and latent_frames > vae.tile_sample_min_num_frames // temporal:
        chunks = len(range(0, latent_frames, vae.tile_sample_stride_num_frames // temporal))
        return chunks * tiles
    return tiles
