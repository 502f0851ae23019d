"""`i2v`: image → video with a video model (Stable Video Diffusion, Wan, LTX-Video).

What a family accepts (frame counts, sizes, frame rates) is its `VideoLimits`;
`check_family` holds a stage's keys against them at submit, so a frame count the
model cannot make fails with the family's numbers in the sentence, before anything
runs. Keys left unset take the family's defaults (fps, guidance) or the input
image's size, rounded down to the family's multiple.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Annotated, ClassVar, Literal

from pydantic import Field

from medialab_tui.engine.families import family_of
from medialab_tui.engine.families.base import VideoLimits
from medialab_tui.engine.stages.base import (
    Cfg,
    ModelProblem,
    PerInput,
    PromptText,
    Size,
    StageParams,
    StageSpec,
    Steps,
    Sweep,
)

# The family says which multiple; this only bounds the value.
VideoDimension = Annotated[int, Field(ge=8, le=4096)]
# SVD-XT's 25 is also 4k+1 and 8k+1: a count every family makes.
DEFAULT_FRAMES = 25


class I2VParams(StageParams):
    """Parameters of an `i2v` stage (SPEC §5)."""

    type: Literal["i2v"] = "i2v"
    model: str = Field(min_length=1, description="A video model (SVD, Wan, LTX-Video)")
    frames: int = Field(
        default=DEFAULT_FRAMES,
        ge=1,
        le=1024,
        description="Frames per video (SVD 2–64, Wan 4k+1, LTX 8k+1)",
    )
    fps: int | None = Field(
        default=None, ge=1, le=240, description="Frame rate (default: the family's)"
    )
    steps: Steps = Field(default=25, description="Denoising steps")
    cfg: Cfg | None = Field(default=None, description="Guidance scale (default: the family's)")
    motion: int | None = Field(
        default=None, ge=1, le=255, description="SVD motion bucket (more moves more; 127)"
    )
    noise_aug: float | None = Field(
        default=None, ge=0.0, le=1.0, description="SVD noise added to the image (0.02)"
    )
    decode_chunk_size: int | None = Field(
        default=None, ge=1, le=64, description="SVD frames decoded at once (8)"
    )
    prompt: PromptText | None = Field(
        default=None, description="Motion prompt (Wan, LTX; default: the input's prompt)"
    )
    negative: PromptText | None = Field(default=None, description="Overrides inputs.negative")
    width: VideoDimension | None = Field(
        default=None, description="Width (default: the input's, to the family's multiple)"
    )
    height: VideoDimension | None = Field(
        default=None, description="Height (default: the input's, to the family's multiple)"
    )
    per_input: PerInput = Field(default=1, description="Videos per input image (seeds + i)")
    sweep: Sweep | None = Field(
        default=None, description="Jobs over the product of these values: {frames = [25, 49]}"
    )

    size_key: ClassVar[str | None] = "width"

    def output_size(self, size: Size | None) -> Size | None:
        if size is None:
            return (self.width, self.height) if self.width and self.height else None
        return (self.width or size[0], self.height or size[1])

    def output_rate(self, rate: Fraction | None, arch: str | None = None) -> Fraction | None:
        """The videos play at `fps`, else at the model family's default rate."""
        if self.fps is not None:
            return Fraction(self.fps)
        family = family_of(arch) if arch else None
        limits = family.video if family else None
        return Fraction(limits.default_fps) if limits else None


# SVD's defaults for its own keys, used when the stage leaves them unset.
SVD_MOTION = 127
SVD_NOISE_AUG = 0.02
SVD_DECODE_CHUNK = 8


def frames_problem(title: str, limits: VideoLimits, frames: int) -> str | None:
    """What is wrong with `frames` for a family, in its numbers; None when it is valid."""
    if frames > limits.max_frames:
        return f"{title} makes at most {limits.max_frames} frames, not {frames}"
    if frames < limits.min_frames:
        return f"{title} makes at least {limits.min_frames} frames, not {frames}"
    if not limits.valid_frames(frames):
        near = ", ".join(str(n) for n in limits.nearest_frames(frames))
        return f"{title} needs {limits.frame_rule()} frames (…, {near}, …), not {frames}"
    return None


def check_family(stage: I2VParams, arch: str) -> ModelProblem | None:
    """The stage's keys held against its model family's limits."""
    family = family_of(arch)
    limits = family.video if family else None
    if family is None or limits is None:
        return None
    title = family.title
    problem = frames_problem(title, limits, stage.frames)
    if problem:
        return ModelProblem(problem, "frames")
    if stage.fps is not None and not limits.fps_min <= stage.fps <= limits.fps_max:
        return ModelProblem(
            f"{title} plays at {limits.fps_min}–{limits.fps_max} fps, not {stage.fps}", "fps"
        )
    for key in ("width", "height"):
        value = getattr(stage, key)
        if value is not None and value % limits.size_multiple:
            lower = value // limits.size_multiple * limits.size_multiple
            return ModelProblem(
                f"{title} needs sizes that are multiples of {limits.size_multiple}, not {value} "
                f"(try {max(lower, limits.size_multiple)} or {lower + limits.size_multiple})",
                key,
            )
    if not limits.motion:
        for key in ("motion", "noise_aug", "decode_chunk_size"):
            if getattr(stage, key) is not None:
                return ModelProblem(
                    f"{key} is a Stable Video Diffusion key; {title} takes a motion prompt instead",
                    key,
                )
    if not limits.prompt and stage.prompt is not None:
        return ModelProblem(
            f"{title} takes no prompt: its motion comes from motion (the motion bucket)", "prompt"
        )
    return None


SPEC = StageSpec(
    type="i2v",
    order=70,
    title="Image to video",
    takes="image",
    gives="video",
    params=I2VParams,
    uses_model=True,
    model_kinds=("video",),
    check_model=check_family,
)
