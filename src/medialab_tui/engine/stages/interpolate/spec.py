"""`interpolate`: video → the same video at a higher frame rate (SPEC §5).

Exactly one of `multiplier` (an integer ≥ 2) or `fps` (a target that is an integer
multiple of the source's rate, compared as rationals: 29.97 fps is 30000/1001, and
`fps = 59.94` from it is exactly twice that). `method` is `flow`, the built-in
optical-flow interpolator, or a registered model of kind `interpolator`.

The output keeps the source's duration exactly: N source frames at rate r become
N·m frames at m·r. Between two source frames come m − 1 new ones; the last source
frame has nothing after it to move towards, so it is held for its m output frames.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Literal

from pydantic import Field, field_validator, model_validator

from medialab_tui.engine.stages.base import StageParams, StageSpec

# The built-in method; any other name is a registry model of kind `interpolator`.
FLOW = "flow"
# Multipliers beyond this make files no one plays (a 30 fps clip at 1920 fps).
MAX_MULTIPLIER = 64


def rate_value(value: float | str) -> Fraction:
    """A frame rate as written in a file (`120`, `59.94`, `"60000/1001"`) as a rational:
    the NTSC rates as their exact /1001 forms (`store.videos.as_fraction`)."""
    from medialab_tui.store.videos import as_fraction

    return as_fraction(value)


def rate_words(rate: Fraction) -> str:
    """`60`, `29.97`: a rate as a sentence says it (the exact form is in `fps_exact`)."""
    if rate.denominator == 1:
        return str(rate.numerator)
    return f"{float(rate):.3f}".rstrip("0").rstrip(".")


class InterpolateParams(StageParams):
    """Parameters of an `interpolate` stage."""

    type: Literal["interpolate"] = "interpolate"
    multiplier: int | None = Field(
        default=None, ge=2, le=MAX_MULTIPLIER, description="Frames out per frame in (2: ×2)"
    )
    fps: float | str | None = Field(
        default=None,
        description="Target frame rate: an integer multiple of the source's (60 → 120)",
    )
    method: str = Field(
        default=FLOW, min_length=1, description="flow (built in), or an interpolator model"
    )

    @field_validator("fps")
    @classmethod
    def _positive_rate(cls, value: float | str | None) -> float | str | None:
        if value is None:
            return None
        try:
            rate = rate_value(value)
        except (ValueError, ZeroDivisionError):
            raise ValueError(
                f'must be a frame rate like 60 or "60000/1001" (got {value!r})'
            ) from None
        if not rate > 0 or rate > 10_000:
            raise ValueError(f"must be a frame rate above 0 and at most 10000 (got {value!r})")
        return value

    @model_validator(mode="after")
    def _one_of(self) -> InterpolateParams:
        if self.multiplier is None and self.fps is None:
            raise ValueError("needs one of 'multiplier' (2, 3, …) or 'fps' (a target rate)")
        if self.multiplier is not None and self.fps is not None:
            raise ValueError("takes 'multiplier' or 'fps', not both")
        return self

    @property
    def target(self) -> Fraction | None:
        """The `fps` key as a rational (None when `multiplier` is given)."""
        return None if self.fps is None else rate_value(self.fps)

    def factor(self, rate: Fraction) -> int:
        """How many output frames each source frame at `rate` becomes (checked at submit
        by `rate_problem`; a rate that does not divide gives its nearest multiple)."""
        if self.multiplier is not None:
            return self.multiplier
        target = self.target or rate
        return max(1, round(target / rate))

    def output_rate(self, rate: Fraction | None, arch: str | None = None) -> Fraction | None:
        if self.target is not None:
            return self.target
        return None if rate is None else rate * (self.multiplier or 1)

    def rate_problem(self, rate: Fraction, whose: str) -> tuple[str, str] | None:
        target = self.target
        if target is None:
            return None
        ratio = target / rate
        if ratio.denominator == 1 and ratio >= 2:
            return None
        low = max(2, math.floor(ratio))
        would = " or ".join(rate_words(rate * m) for m in (low, low + 1))
        if ratio <= 1:
            return (
                "fps",
                f"{rate_words(target)} fps is not above {whose} {rate_words(rate)} fps; "
                f"{would} would be",
            )
        return (
            "fps",
            f"{rate_words(target)} fps is not an integer multiple of {whose} "
            f"{rate_words(rate)} fps; {would} would be",
        )


SPEC = StageSpec(
    type="interpolate",
    order=90,
    title="Interpolate",
    takes="video",
    gives="video",
    params=InterpolateParams,
    uses_model=True,
    model_kinds=("interpolator",),
    builtin_models=(FLOW,),
    model_key="method",
    guess_job_seconds=5.0,
)
