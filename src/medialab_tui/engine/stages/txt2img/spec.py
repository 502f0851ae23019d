"""`txt2img`: prompt → images with a diffusers text-to-image pipeline."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from medialab_tui.engine.stages.base import (
    DiffusionOptions,
    Dimension,
    PerInput,
    Size,
    StageSpec,
    check_image_family,
)


class Txt2ImgParams(DiffusionOptions):
    """Parameters of a `txt2img` stage (SPEC §4)."""

    type: Literal["txt2img"] = "txt2img"
    width: Dimension = Field(default=512, description="Width in pixels (the family's multiple)")
    height: Dimension = Field(default=512, description="Height in pixels (the family's multiple)")
    per_input: PerInput = Field(default=1, description="Images per prompt and seed")

    size_key: ClassVar[str | None] = "width"
    size_keys: ClassVar[tuple[str, ...]] = ("width", "height")

    def output_size(self, size: Size | None) -> Size | None:
        return (self.width, self.height)


SPEC = StageSpec(
    type="txt2img",
    order=20,
    title="Text to image",
    takes="prompt",
    gives="image",
    params=Txt2ImgParams,
    uses_model=True,
    model_kinds=("checkpoint", "diffusion_model"),
    options=True,
    check_model=check_image_family,
)
