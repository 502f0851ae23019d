"""`refine`: image → refined image, by an SDXL refiner or a hires-fix pass.

`hires`: upscale the pixels by `scale`, then img2img at low strength with the
stage's model. `refiner`: img2img with a refiner (or any SDXL) model at the same size.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from medialab_tui.engine.stages.base import DiffusionOptions, StageSpec, Strength


class RefineParams(DiffusionOptions):
    """Parameters of a `refine` stage."""

    type: Literal["refine"] = "refine"
    method: Literal["hires", "refiner"] = Field(
        default="hires", description="hires: upscale then img2img; refiner: an SDXL refiner pass"
    )
    scale: float = Field(default=1.5, ge=1.0, le=4.0, description="hires: size multiplier")
    strength: Strength = Field(default=0.3, description="How far from the input")
    prompt: str | None = Field(default=None, description="Overrides the input's prompt")


SPEC = StageSpec(
    type="refine",
    order=40,
    title="Refine",
    takes="image",
    gives="image",
    params=RefineParams,
    uses_model=True,
    model_kinds=("checkpoint",),
    options=True,
)
