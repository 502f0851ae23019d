"""`blend`: several reference images → new images.

One job takes every input image: their latents are averaged by spherical
interpolation (with `weights`), then denoised by img2img at `strength`. Every
source is recorded as a parent of every output.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from medialab_tui.engine.stages.base import (
    DiffusionParams,
    Dimension,
    PerInput,
    PromptText,
    Size,
    StageSpec,
    Strength,
    check_image_family,
)


class BlendParams(DiffusionParams):
    """Parameters of a `blend` stage."""

    type: Literal["blend"] = "blend"
    strength: Strength = Field(default=0.6, description="How far from the blended references")
    per_input: PerInput = Field(default=1, description="Images per blend")
    weights: list[float] | None = Field(
        default=None, description="One weight per reference (default: equal)"
    )
    width: Dimension = Field(default=512, description="References are resized to this width")
    height: Dimension = Field(default=512, description="References are resized to this height")
    prompt: PromptText | None = Field(default=None, description="Overrides the input's prompt")

    size_key: ClassVar[str | None] = "width"

    def output_size(self, size: Size | None) -> Size | None:
        return (self.width, self.height)

    @model_validator(mode="after")
    def _check_weights(self) -> BlendParams:
        if self.weights is not None:
            if any(w < 0 for w in self.weights) or not any(w > 0 for w in self.weights):
                raise ValueError("'weights' must be zero or more, and not all zero")
        return self


SPEC = StageSpec(
    type="blend",
    order=70,
    title="Blend references",
    takes="image",
    gives="image",
    params=BlendParams,
    uses_model=True,
    model_kinds=("checkpoint",),
    gathers=True,
    check_model=check_image_family,
)
