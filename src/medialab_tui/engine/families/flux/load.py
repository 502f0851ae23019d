"""Loading Flux pipelines (worker only)."""

from __future__ import annotations

from typing import Any

from diffusers import DiffusionPipeline, FluxPipeline


def pipeline_class(arch: str) -> type[DiffusionPipeline]:
    """dev and schnell load alike; the transformer's config says whether it embeds guidance."""
    return FluxPipeline


def load_kwargs(arch: str) -> dict[str, Any]:
    return {}
