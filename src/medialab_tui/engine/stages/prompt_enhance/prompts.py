"""Prompt enhancement: one prompt → many detailed variants, with no model at all.

A variant is the stage's template with `{prompt}` filled in, phrases drawn from
the built-in banks (composition, texture, mood, camera, quality), the style and
theme hints, and every `__name__` wildcard replaced by a line of its list
(nested wildcards too). Then each combination of the chosen sets is applied to
every variant, so `count = 2` with `sets = ["angles"]` shows the same two
variants from six angles.

Draws come from `random.Random(f"{seed}:{n}")`, which seeds from the text's
SHA-512 rather than Python's per-process `hash()`, so the same prompt, parameters,
seed and wildcard lists give the same variants in every process. Pure: the TUI
imports this for a live preview, the worker for the real thing.
"""

from __future__ import annotations

import itertools
import random
import re
from dataclasses import dataclass, field

from medialab_tui.engine.stages.prompt_enhance.spec import (
    DEFAULT_TEMPLATE,
    SETS,
    WILDCARD,
    PromptEnhanceParams,
    template_fields,
)

# One phrase of each bank fills its placeholder; `{detail}` takes one of each bank
# the template does not name itself.
BANKS: dict[str, tuple[str, ...]] = {
    "composition": (
        "centered composition",
        "rule of thirds composition",
        "symmetrical composition",
        "close-up shot",
        "medium shot",
        "full body shot",
        "wide establishing shot",
        "dynamic diagonal composition",
        "minimalist composition",
        "layered foreground and background",
        "off-center framing",
        "tight crop",
    ),
    "texture": (
        "intricate details",
        "fine surface texture",
        "richly detailed background",
        "delicate ornamentation",
        "crisp clean edges",
        "subtle film grain",
        "weathered textures",
        "detailed reflections",
        "soft gradients",
        "tactile materials",
        "hyper-detailed textures",
        "ornate patterns",
    ),
    "mood": (
        "serene atmosphere",
        "dramatic mood",
        "whimsical mood",
        "melancholic atmosphere",
        "mysterious atmosphere",
        "joyful mood",
        "tense atmosphere",
        "dreamy atmosphere",
        "epic mood",
        "cozy atmosphere",
        "nostalgic mood",
        "quiet, calm mood",
    ),
    "camera": (
        "35mm lens",
        "50mm lens",
        "85mm portrait lens",
        "wide-angle lens",
        "telephoto lens",
        "macro lens",
        "shallow depth of field",
        "deep focus",
        "soft bokeh",
        "tilt-shift",
        "eye-level shot",
        "long exposure",
    ),
    "quality": (
        "highly detailed",
        "masterpiece",
        "best quality",
        "sharp focus",
        "high resolution",
        "award-winning",
        "ultra detailed",
        "professional",
        "8k",
        "crisp and clean",
        "intricate",
        "fine art quality",
    ),
}
# How deep wildcards may nest before we call it a cycle.
MAX_DEPTH = 10
# Fresh draws tried when a variant repeats an earlier one of the same job.
DISTINCT_TRIES = 20
# Stands where the set phrases go until each combination is applied.
_SETS_MARK = "\x00sets\x00"


class PromptError(ValueError):
    """A template or wildcard the variants cannot be made from, as one sentence."""


@dataclass(frozen=True)
class Variant:
    """One enhanced prompt and what made it."""

    text: str
    # The phrase each chosen set contributed, e.g. {"angles": "side profile"}.
    choices: dict[str, str] = field(default_factory=dict)
    # Which of the stage's `count` variants this is (0-based).
    number: int = 0


def enhance(
    prompt: str, params: PromptEnhanceParams, seed: int, wildcards: dict[str, list[str]]
) -> list[str]:
    """The enhanced prompts of `prompt`: `params.outputs_per_job()` of them."""
    return [v.text for v in variants(prompt, params, seed, wildcards)]


def variants(
    prompt: str, params: PromptEnhanceParams, seed: int, wildcards: dict[str, list[str]]
) -> list[Variant]:
    """Every variant of `prompt` with its set choices: for each combination of the
    chosen sets (in SETS order), each of the `count` variants."""
    template = params.template or DEFAULT_TEMPLATE
    try:
        fields = template_fields(template)
    except ValueError as exc:
        raise PromptError(f"the template {exc}") from None
    bases: list[str] = []
    for number in range(params.count):
        text = ""
        for attempt in range(DISTINCT_TRIES):
            key = f"{seed}:{number}" if attempt == 0 else f"{seed}:{number}:{attempt}"
            text = _draw(prompt, params, template, fields, random.Random(key), wildcards)
            if text not in bases:
                break
        bases.append(text)
    chosen = params.chosen_sets()
    out: list[Variant] = []
    for combo in itertools.product(*(SETS[name] for name in chosen)):
        choices = dict(zip(chosen, combo, strict=True))
        for number, base in enumerate(bases):
            out.append(Variant(_tidy(base.replace(_SETS_MARK, ", ".join(combo))), choices, number))
    return out


def _draw(
    prompt: str,
    params: PromptEnhanceParams,
    template: str,
    fields: list[str],
    rng: random.Random,
    wildcards: dict[str, list[str]],
) -> str:
    """One variant before the sets are applied, its set phrases marked."""
    # One draw per bank, always in the same order, whatever the template uses.
    picks = {name: rng.choice(bank) for name, bank in BANKS.items()}
    values = {
        **picks,
        "prompt": prompt,
        "sets": _SETS_MARK,
        "style": params.style or "",
        "theme": params.theme or "",
        "detail": ", ".join(picks[name] for name in BANKS if name not in fields),
    }
    if "sets" not in fields:
        # The set phrases matter most, so they go right after the prompt.
        values["prompt"] = f"{prompt}, {_SETS_MARK}"
    text = template.format_map(values)
    if _SETS_MARK not in text:
        text = f"{_SETS_MARK}, {text}"
    head, mark, tail = text.partition(_SETS_MARK)
    text = head + mark + tail.replace(_SETS_MARK, "")
    hints = [values[k] for k in ("style", "theme") if k not in fields and values[k]]
    return _expand(", ".join([text, *hints]), rng, wildcards, 0)


def _expand(text: str, rng: random.Random, wildcards: dict[str, list[str]], depth: int) -> str:
    """Replace each `__name__`, left to right, by a line of its list, expanded in turn."""

    def pick(match: re.Match[str]) -> str:
        name = match.group(1)
        lines = wildcards.get(name)
        if not lines:
            raise PromptError(f"wildcard __{name}__ has no list (<data>/wildcards/{name}.txt)")
        if depth >= MAX_DEPTH:
            raise PromptError(
                f"wildcard __{name}__ nests more than {MAX_DEPTH} levels deep; "
                "do its files refer to each other in a cycle?"
            )
        return _expand(rng.choice(lines), rng, wildcards, depth + 1)

    return WILDCARD.sub(pick, text)


def _tidy(text: str) -> str:
    """One space between words and ", " between phrases, with empty phrases (an unset
    style, no sets) dropped."""
    parts = (" ".join(part.split()) for part in text.split(","))
    return ", ".join(part for part in parts if part)
