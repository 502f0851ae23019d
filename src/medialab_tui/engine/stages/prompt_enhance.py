"""`prompt_enhance`: one prompt → many detailed variants, offline.

Templates, wildcards (`__name__` picks a line of `<data>/wildcards/name.txt`),
style and theme hints, and "set mode" variations: each named set multiplies the
variants by its size, e.g. `count = 2` with `sets = ["angles"]` makes 2 × 6.
The same input and seed always give the same variants.
"""

from __future__ import annotations

import math
import re
from typing import Literal

from pydantic import Field

from medialab_tui.engine.stages.base import StageParams, StageSpec

# The variations of "set mode", in the order they are applied.
SETS: dict[str, tuple[str, ...]] = {
    "angles": (
        "front view",
        "three-quarter view",
        "side profile",
        "view from above",
        "low angle view",
        "view from behind",
    ),
    "expressions": ("smiling", "serious expression", "laughing", "surprised", "pensive"),
    "poses": ("standing", "sitting", "walking", "arms crossed", "looking over the shoulder"),
    "outfits": ("casual clothes", "formal suit", "winter coat", "sportswear", "evening gown"),
    "lighting": (
        "soft daylight",
        "golden hour",
        "studio lighting",
        "neon night lighting",
        "dramatic rim light",
    ),
}
SetName = Literal["angles", "expressions", "poses", "outfits", "lighting"]

WILDCARD = re.compile(r"__([A-Za-z0-9_\-]+)__")


class PromptEnhanceParams(StageParams):
    """Parameters of a `prompt_enhance` stage."""

    type: Literal["prompt_enhance"] = "prompt_enhance"
    count: int = Field(default=5, ge=1, le=64, description="Variants per prompt (per set choice)")
    template: str | None = Field(
        default=None, description="e.g. '{prompt}, {detail}' ({prompt} is the input)"
    )
    style: str | None = Field(default=None, description="Style hint, e.g. 'oil painting'")
    theme: str | None = Field(default=None, description="Theme hint, e.g. 'cyberpunk'")
    sets: list[SetName] = Field(
        default_factory=list, description="Variation sets; each multiplies the count"
    )

    def outputs_per_job(self) -> int:
        return self.count * math.prod(len(SETS[name]) for name in self.sets)

    def wildcard_names(self, prompt: str = "") -> list[str]:
        """The wildcard files this stage reads for `prompt`, in order of appearance."""
        text = " ".join(t for t in (prompt, self.template, self.style, self.theme) if t)
        return list(dict.fromkeys(WILDCARD.findall(text)))


SPEC = StageSpec(
    type="prompt_enhance",
    title="Prompt enhance",
    takes="prompt",
    gives="prompt",
    params=PromptEnhanceParams,
    uses_model=False,
)
