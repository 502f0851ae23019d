"""Stage types, one module each. `STAGES` maps a pipeline's `type` to its spec."""

from __future__ import annotations

from medialab_tui.engine.stages import (
    blend,
    detail,
    img2img,
    prompt_enhance,
    refine,
    txt2img,
    upscale,
)
from medialab_tui.engine.stages.base import StageParams, StageSpec

STAGES: dict[str, StageSpec] = {
    spec.type: spec
    for spec in (
        prompt_enhance.SPEC,
        txt2img.SPEC,
        img2img.SPEC,
        refine.SPEC,
        detail.SPEC,
        upscale.SPEC,
        blend.SPEC,
    )
}

# Stage types of the contract (SPEC §4) that this version does not run yet.
PLANNED = ("i2v", "interpolate")

__all__ = ["PLANNED", "STAGES", "StageParams", "StageSpec"]
