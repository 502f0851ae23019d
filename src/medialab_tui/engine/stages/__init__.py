"""Stage types, one module each. `STAGES` maps a pipeline's `type` to its spec."""

from __future__ import annotations

from medialab_tui.engine.stages import txt2img, upscale
from medialab_tui.engine.stages.base import StageParams, StageSpec

STAGES: dict[str, StageSpec] = {spec.type: spec for spec in (txt2img.SPEC, upscale.SPEC)}

# Stage types of the contract (SPEC §4) that this version does not run yet.
PLANNED = ("prompt_enhance", "img2img", "refine", "detail", "blend", "i2v", "interpolate")

__all__ = ["PLANNED", "STAGES", "StageParams", "StageSpec"]
