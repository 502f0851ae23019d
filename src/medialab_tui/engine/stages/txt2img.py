"""`txt2img`: prompt → images with a diffusers text-to-image pipeline."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from medialab_tui.engine.stages.base import (
    Dimension,
    PerInput,
    Sampler,
    StageParams,
    StageSpec,
    Steps,
)


class Txt2ImgParams(StageParams):
    """Parameters of a `txt2img` stage (SPEC §4)."""

    type: Literal["txt2img"] = "txt2img"
    model: str = Field(min_length=1, description="Registry name, path, or hash prefix")
    steps: Steps = Field(default=20, description="Denoising steps")
    cfg: float = Field(default=7.0, ge=0.0, le=50.0, description="Guidance scale")
    width: Dimension = Field(default=512, description="Width in pixels (multiple of 8)")
    height: Dimension = Field(default=512, description="Height in pixels (multiple of 8)")
    per_input: PerInput = Field(default=1, description="Images per prompt and seed")
    sampler: Sampler = Field(default="default", description="Scheduler")
    negative: str | None = Field(default=None, description="Overrides inputs.negative")


SPEC = StageSpec(
    type="txt2img",
    title="Text to image",
    takes="prompt",
    gives="image",
    params=Txt2ImgParams,
    uses_model=True,
    model_kinds=("checkpoint",),
)
