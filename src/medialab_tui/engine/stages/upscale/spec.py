"""`upscale`: image → larger image, by `lanczos` or an ESRGAN-family model (spandrel)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from medialab_tui.engine.stages.base import Size, StageParams, StageSpec


class UpscaleParams(StageParams):
    """Parameters of an `upscale` stage (SPEC §4).

    A model upscales by its own factor (often 4); the result is then resized to
    `scale` × the input, so a ×4 model can serve a `scale = 2` stage.
    """

    type: Literal["upscale"] = "upscale"
    model: str = Field(default="lanczos", min_length=1, description="lanczos, or an upscaler")
    scale: float = Field(default=2.0, gt=1.0, le=8.0, description="Size multiplier")
    tile: int = Field(default=512, ge=0, le=4096, description="Tile size in px (0: no tiling)")
    tile_overlap: int = Field(default=32, ge=0, le=512, description="Overlap between tiles (px)")

    size_key: ClassVar[str | None] = "scale"

    def output_size(self, size: Size | None) -> Size | None:
        """The input's size × `scale`, rounded as the worker rounds it."""
        if size is None:
            return None
        return (max(1, round(size[0] * self.scale)), max(1, round(size[1] * self.scale)))


SPEC = StageSpec(
    type="upscale",
    order=60,
    title="Upscale",
    takes="image",
    gives="image",
    params=UpscaleParams,
    uses_model=True,
    model_kinds=("upscaler",),
    builtin_models=("lanczos",),
    guess_job_seconds=0.2,
)
