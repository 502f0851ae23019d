"""Loading SD3 / SD3.5 pipelines (worker only)."""

from __future__ import annotations

from typing import Any

from diffusers import DiffusionPipeline, StableDiffusion3Pipeline


def pipeline_class(arch: str) -> type[DiffusionPipeline]:
    return StableDiffusion3Pipeline


def load_kwargs(arch: str) -> dict[str, Any]:
    return {}
