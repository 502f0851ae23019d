"""`refine`: image → refined image, by an SDXL refiner or a hires-fix pass.

`hires`: upscale the pixels by `scale`, then img2img at low strength with the
stage's model. `refiner`: img2img with a refiner (or any SDXL) model at the same size.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from medialab_tui.engine.families import family_of, refiner_archs
from medialab_tui.engine.stages.base import (
    DiffusionOptions,
    ModelProblem,
    PromptText,
    Size,
    StageSpec,
    Strength,
    check_image_family,
)


class RefineParams(DiffusionOptions):
    """Parameters of a `refine` stage."""

    type: Literal["refine"] = "refine"
    method: Literal["hires", "refiner"] = Field(
        default="hires", description="hires: upscale then img2img; refiner: an SDXL refiner pass"
    )
    scale: float = Field(default=1.5, ge=1.0, le=4.0, description="hires: size multiplier")
    strength: Strength = Field(default=0.3, description="How far from the input")
    prompt: PromptText | None = Field(default=None, description="Overrides the input's prompt")

    size_key: ClassVar[str | None] = "scale"

    def output_size(self, size: Size | None) -> Size | None:
        """hires: the input's size × `scale`; refiner: the input's size."""
        if size is None or self.method != "hires":
            return size
        return (max(1, round(size[0] * self.scale)), max(1, round(size[1] * self.scale)))


def check_method(stage: RefineParams, arch: str) -> str | ModelProblem | None:
    """A refiner pass needs a model made for it; a refiner-only model does nothing else."""
    family = family_of(arch)
    if family is None:
        return None
    if stage.method == "refiner" and arch not in family.refiners:
        return (
            f'is a {arch} model; method = "refiner" takes a refiner or an SDXL base '
            f'({", ".join(refiner_archs())}); use method = "hires" with it'
        )
    if stage.method != "refiner" and not family.runs(arch, "txt2img"):
        return f'is a refiner ({arch}); use method = "refiner"'
    return check_image_family(stage, arch)


SPEC = StageSpec(
    type="refine",
    order=40,
    title="Refine",
    takes="image",
    gives="image",
    params=RefineParams,
    uses_model=True,
    model_kinds=("checkpoint", "diffusion_model"),
    options=True,
    check_model=check_method,
)
