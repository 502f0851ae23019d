"""Loading Wan image-to-video pipelines (worker only)."""

from __future__ import annotations

from typing import Any

from diffusers import DiffusionPipeline, WanImageToVideoPipeline


def pipeline_class(arch: str) -> type[DiffusionPipeline]:
    return WanImageToVideoPipeline


def load_kwargs(arch: str) -> dict[str, Any]:
    return {}


def prepare(pipe: Any) -> None:
    """Decode in spatial tiles: the VAE already decodes one latent frame at a time
    (through its causal cache); tiles bound the memory of each for large frames."""
    pipe.vae.enable_tiling()


def decode_calls(pipe: Any, frames: int, size: tuple[int, int], decode_chunk_size: int) -> int:
    """How many times the VAE's decoder runs for one video: once per latent frame and
    tile (as `AutoencoderKLWan._decode` and `tiled_decode` split the work)."""
    vae = pipe.vae
    ratio = vae.spatial_compression_ratio
    latent_frames = (frames - 1) // pipe.vae_scale_factor_temporal + 1
    return latent_frames * spatial_tiles(vae, ratio, size[0] // ratio, size[1] // ratio)


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
