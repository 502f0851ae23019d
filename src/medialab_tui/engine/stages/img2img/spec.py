"""`img2img`: image + prompt → images; also generation from reference images."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from medialab_tui.engine.stages.base import (
    DiffusionOptions,
    PerInput,
    PromptText,
    StageSpec,
    Strength,
    check_image_family,
)


class Img2ImgParams(DiffusionOptions):
    """Parameters of an `img2img` stage. The output keeps the input's size (to a multiple of 8)."""

    type: Literal["img2img"] = "img2img"
    strength: Strength = Field(default=0.6, description="How far from the input (0 keeps it)")
    per_input: PerInput = Field(default=1, description="Images per input image")
    prompt: PromptText | None = Field(default=None, description="Overrides the input's prompt")


SPEC = StageSpec(
    type="img2img",
    order=30,
    title="Image to image",
    takes="image",
    gives="image",
    params=Img2ImgParams,
    uses_model=True,
    model_kinds=("checkpoint", "diffusion_model"),
    options=True,
    check_model=check_image_family,
)
