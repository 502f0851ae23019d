"""Loading SDXL pipelines (worker only)."""

from __future__ import annotations

from typing import Any

from diffusers import DiffusionPipeline, StableDiffusionXLImg2ImgPipeline, StableDiffusionXLPipeline


def pipeline_class(arch: str) -> type[DiffusionPipeline]:
    """The base pipeline class of `arch`: a refiner's is already image-to-image."""
    return StableDiffusionXLImg2ImgPipeline if arch == "sdxl-refiner" else StableDiffusionXLPipeline


def load_kwargs(arch: str) -> dict[str, Any]:
    return {}
