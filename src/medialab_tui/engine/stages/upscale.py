"""`upscale`: image → larger image (built-in `lanczos`; ESRGAN models later)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from medialab_tui.engine.stages.base import StageParams, StageSpec


class UpscaleParams(StageParams):
    """Parameters of an `upscale` stage (SPEC §4)."""

    type: Literal["upscale"] = "upscale"
    model: str = Field(default="lanczos", min_length=1, description="lanczos, or an upscaler")
    scale: float = Field(default=2.0, gt=1.0, le=8.0, description="Size multiplier")


SPEC = StageSpec(
    type="upscale",
    title="Upscale",
    takes="image",
    gives="image",
    params=UpscaleParams,
    uses_model=True,
    model_kinds=("upscaler",),
    builtin_models=("lanczos",),
)
