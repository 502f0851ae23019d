"""`detail`: find regions (faces first), inpaint each at a higher resolution, blend back.

The built-in detector is OpenCV's Haar face cascade (no download); a registered
detector model is used when `detector` names one. Repeatable: a pipeline may hold
several `detail` stages with different prompts and targets.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from medialab_tui.engine.stages.base import (
    DiffusionParams,
    Dimension,
    PromptText,
    ResolveContext,
    StageSpec,
    Strength,
    check_image_family,
)


class DetailParams(DiffusionParams):
    """Parameters of a `detail` stage."""

    type: Literal["detail"] = "detail"
    target: Literal["face", "eyes", "body"] = Field(default="face", description="What to find")
    detector: str = Field(default="opencv", min_length=1, description="opencv, or a detector")
    prompt: PromptText | None = Field(
        default=None, description="Prompt for the regions (else input's)"
    )
    strength: Strength = Field(default=0.4, description="How far each region may change")
    size: Dimension = Field(default=512, description="Each region is inpainted at this size")
    padding: float = Field(default=0.3, ge=0.0, le=2.0, description="Context around a region")
    feather: int = Field(default=16, ge=0, le=256, description="Soft edge of the blend (px)")
    max_regions: int = Field(default=8, ge=1, le=64, description="At most this many regions")
    min_size: int = Field(default=16, ge=4, le=4096, description="Smallest region (px)")

    size_keys: ClassVar[tuple[str, ...]] = ("size",)


def resolve_detector(stage: DetailParams, ctx: ResolveContext) -> dict[str, Any]:
    """A registered detector, looked up at submit; OpenCV's own cascades need none."""
    if stage.detector == "opencv":
        return {}
    return {"detector": ctx.lookup(stage.detector, ("detector",), "detector")}


SPEC = StageSpec(
    type="detail",
    order=50,
    title="Detail",
    takes="image",
    gives="image",
    params=DetailParams,
    uses_model=True,
    model_kinds=("checkpoint", "diffusion_model"),
    resolve=resolve_detector,
    check_model=check_image_family,
)
