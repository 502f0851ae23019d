"""`prompt_enhance`: one prompt → many detailed variants, offline.

Templates, wildcards (`__name__` picks a line of `<data>/wildcards/name.txt`),
style and theme hints, and "set mode" variations: each named set multiplies the
variants by its size, e.g. `count = 2` with `sets = ["angles"]` makes 2 × 6.
The same input and seed always give the same variants.
"""

from __future__ import annotations

import math
import re
from string import Formatter
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from medialab_tui.engine.stages.base import ResolveContext, StageParams, StageSpec
from medialab_tui.engine.stages.prompt_enhance.wildcards import read_wildcards

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

# What a template may name. `{detail}` is one phrase from each phrase bank that the
# template does not name on its own; `{sets}` is where the set phrases go (else
# right after the prompt). `prompts.py` beside this file holds the banks.
PLACEHOLDERS = (
    "prompt",
    "sets",
    "style",
    "theme",
    "detail",
    "composition",
    "texture",
    "mood",
    "camera",
    "quality",
)
DEFAULT_TEMPLATE = "{prompt}, {detail}"
# One prompt may fan out into this many variants at most (count × the sets' sizes).
MAX_VARIANTS = 1000


def template_fields(template: str) -> list[str]:
    """The placeholders `template` names, in order. A ValueError that reads after
    "key 'template'" for an unknown placeholder or a stray brace (`{{`, `}}` are braces)."""
    try:
        parsed = list(Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(
            f"is not a valid template: {exc} (write {{{{ or }}}} for a brace)"
        ) from None
    fields = []
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if name not in PLACEHOLDERS:
            known = ", ".join("{" + p + "}" for p in PLACEHOLDERS)
            raise ValueError(f"has an unknown placeholder {{{name}}} (known: {known})")
        if spec or conversion:
            raise ValueError(f"has {{{name}}} with a format or conversion, which it cannot take")
        fields.append(name)
    return fields


class PromptEnhanceParams(StageParams):
    """Parameters of a `prompt_enhance` stage."""

    type: Literal["prompt_enhance"] = "prompt_enhance"
    count: int = Field(default=5, ge=1, le=64, description="Variants per prompt (per set choice)")
    template: str | None = Field(
        default=None,
        description=(
            "Default '{prompt}, {detail}'. Placeholders: "
            + ", ".join("{" + p + "}" for p in PLACEHOLDERS)
        ),
    )
    style: str | None = Field(
        default=None, description="Style hint, e.g. 'oil painting' (at {style}, else at the end)"
    )
    theme: str | None = Field(
        default=None, description="Theme hint, e.g. 'cyberpunk' (at {theme}, else at the end)"
    )
    sets: list[SetName] = Field(
        default_factory=list,
        description="Variation sets (angles, expressions, poses, outfits, lighting); "
        "each multiplies the count",
    )

    @field_validator("template")
    @classmethod
    def _check_template(cls, value: str | None) -> str | None:
        if value is not None:
            template_fields(value)
        return value

    @field_validator("sets")
    @classmethod
    def _check_sets(cls, value: list[str]) -> list[str]:
        for name in value:
            if value.count(name) > 1:
                raise ValueError(f"lists '{name}' twice")
        return value

    @model_validator(mode="after")
    def _check_variants(self) -> PromptEnhanceParams:
        if self.outputs_per_job() > MAX_VARIANTS:
            raise ValueError(
                f"count {self.count} with sets {', '.join(self.sets)} makes "
                f"{self.outputs_per_job()} variants per prompt; at most {MAX_VARIANTS}"
            )
        return self

    def chosen_sets(self) -> list[str]:
        """The chosen sets in SETS order, the order their phrases are applied in."""
        return [name for name in SETS if name in self.sets]

    def outputs_per_job(self) -> int:
        return self.count * math.prod(len(SETS[name]) for name in self.sets)

    def wildcard_names(self, prompt: str = "") -> list[str]:
        """The wildcard files this stage reads for `prompt`, in order of appearance."""
        text = " ".join(t for t in (prompt, self.template, self.style, self.theme) if t)
        return list(dict.fromkeys(WILDCARD.findall(text)))


def resolve_wildcards(stage: PromptEnhanceParams, ctx: ResolveContext) -> dict[str, Any]:
    """Every wildcard list the stage can reach, read at submit: a re-run uses the same lists."""
    return {"wildcards": read_wildcards(stage.wildcard_names, ctx)}


SPEC = StageSpec(
    type="prompt_enhance",
    order=10,
    title="Prompt enhance",
    takes="prompt",
    gives="prompt",
    params=PromptEnhanceParams,
    uses_model=False,
    guess_job_seconds=0.01,
    resolve=resolve_wildcards,
)
