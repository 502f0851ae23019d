"""Loading SD1.x pipelines (worker only)."""

from __future__ import annotations

from typing import Any

from diffusers import DiffusionPipeline, StableDiffusionPipeline


def pipeline_class(arch: str) -> type[DiffusionPipeline]:
    """The text-to-image pipeline class of `arch`."""
    return StableDiffusionPipeline


def load_kwargs(arch: str) -> dict[str, Any]:
    """SD1.5 folders often list a safety checker and its feature extractor; skip both."""
    return {"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False}
