"""What every stage declares: its typed parameters and what it takes and gives.

A stage is one package, `stages/<type>/`: `spec.py` holds its parameter model and
its `SPEC` (no torch), `run.py` the worker side (`run(job, params)`), the only code
of that stage that touches torch. The parameter models are shared by the
pipeline-file parser, the CLI and the TUI's forms, so the three can never disagree
about a range or a default.
"""

from __future__ import annotations

import builtins
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from medialab_tui.engine.families import family_of

Kind = Literal["prompt", "image", "video"]

# The worker's `loading.SAMPLERS` has the same names (a test keeps them in step);
# which of them a model takes is its family's (`ImageRules.samplers`).
Sampler = Literal[
    "default",
    "euler",
    "euler_a",
    "heun",
    "ddim",
    "dpmpp_2m",
    "dpmpp_2m_karras",
    "dpmpp_2m_sde_karras",
    "unipc",
    "pndm",
    "flow_euler",
    "flow_euler_karras",
    "flow_euler_stochastic",
]
SAMPLERS: tuple[str, ...] = Sampler.__args__  # type: ignore[attr-defined]

# Sizes the diffusion models accept: positive multiples of 8 up to 4096.
Dimension = Annotated[int, Field(ge=8, le=4096, multiple_of=8)]
Steps = Annotated[int, Field(ge=1, le=500)]
# Longer prompts are refused: nothing reads that much (CLIP reads 77 tokens), and a
# prompt is stored with every job and artifact it reaches.
MAX_PROMPT_CHARS = 10_000
PromptText = Annotated[str, Field(max_length=MAX_PROMPT_CHARS)]
PerInput = Annotated[int, Field(ge=1, le=64)]
# Seeds are 32-bit, as every tool that reads them back takes them.
SEED_MAX = 2**32 - 1
# An image's (width, height) in pixels.
Size = tuple[int, int]
# `sweep = { cfg = [4, 7], steps = [10, 20] }`: key → the values its jobs are made
# over (`engine.sweep` checks each value as the key itself and expands them).
Sweep = dict[str, list[Any]]


class StageParams(BaseModel):
    """Keys every stage has. Unknown keys and wrong types are errors."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    type: str
    review: bool = Field(default=False, description="Pause the run after this stage")

    # The key that sets how large the outputs are (`scale`, `width`), named when they
    # would pass `max_output_pixels`; None: they keep the input's size.
    size_key: ClassVar[str | None] = None

    def outputs_per_job(self) -> int:
        """Outputs of one job; stages with `per_input` make that many."""
        return int(getattr(self, "per_input", 1))

    def output_size(self, size: Size | None) -> Size | None:
        """How large this stage's images are from an input of `size` (None: no image
        in or out); most image stages keep the input's size."""
        return size

    def output_rate(self, rate: Fraction | None, arch: str | None = None) -> Fraction | None:
        """The frame rate of this stage's videos from an input at `rate` (None: no video
        or not known), `arch` being the family of the stage's model; stages that make
        videos at a rate of their own (`i2v`'s `fps`, else its family's) or raise it
        (`interpolate`) say so. Only read for stages that give videos."""
        return rate

    def rate_problem(self, rate: Fraction, whose: str) -> tuple[str, str] | None:
        """(key, what is wrong) when this stage cannot take videos at `rate`; `whose`
        names where they come from ("the clip's", "stage 1 (i2v)'s") for the sentence."""
        return None


class RatedVideo(Protocol):
    """What `constant_rate` reads of a probed video (`store.videos.VideoInfo`)."""

    @property
    def fps(self) -> Fraction: ...

    @property
    def variable_rate(self) -> bool: ...


def constant_rate(video: RatedVideo) -> Fraction:
    """The constant rate a video stage reads a clip at: its own rate; a variable-rate
    clip is resampled to its average rate snapped to a common one (the nearest whole
    rate, or an NTSC /1001 rate within 0.006 fps of it), so its checks at submit and
    its frames in the worker agree."""
    if not video.variable_rate:
        return video.fps
    from medialab_tui.store.videos import as_fraction

    snapped = as_fraction(float(video.fps))
    if snapped.denominator not in (1, 1001):
        snapped = Fraction(max(1, round(float(video.fps))))
    return snapped


class ResolveContext(Protocol):
    """What a stage's `resolve` hook may use at submit (the queue provides it)."""

    # The prompts of the first stage's items ([""] for later stages).
    prompts: list[str]
    # Where relative paths of the pipeline file are resolved from.
    base_dir: Path
    wildcards_dir: Path
    # The most pixels an output image may have (config `max_output_pixels`).
    max_output_pixels: int

    def lookup(self, ref: str, kinds: tuple[str, ...], key: str) -> dict[str, Any]:
        """A registry entry of one of `kinds` as a job needs it, or an InputError at `key`."""
        ...

    def error(self, text: str, key: str | None = None) -> Exception:
        """An InputError located at this stage (and `key`)."""
        ...


if TYPE_CHECKING:
    Resolver = Callable[[Any, ResolveContext], dict[str, Any]]


@dataclass(frozen=True)
class ModelProblem:
    """A stage key whose value the stage's model cannot take (`frames` for a family
    with a frame rule): the sentence, and the key it is about."""

    text: str
    key: str


@dataclass(frozen=True)
class StageSpec:
    """A stage type: its name, its parameter model and its input/output kinds."""

    type: str
    title: str
    takes: Kind
    gives: Kind
    params: builtins.type[StageParams]
    uses_model: bool
    # The model kinds (registry `kind`) that the stage's `model` key accepts.
    model_kinds: tuple[str, ...] = ()
    # Built-in model names that need no registry entry.
    builtin_models: tuple[str, ...] = ()
    # The key that names the stage's model (`interpolate` calls it `method`).
    model_key: str = "model"
    # True when one job takes every input at once (blend) instead of one job each.
    gathers: bool = False
    # How many inputs a stage that gathers needs (blend two, a grid one).
    min_gathered: int = 2
    # True when the stage takes `loras` and `control` options.
    options: bool = False
    # Where the stage comes in lists (the builder's, error messages): chain order.
    order: int = 0
    # Seconds one job takes when nothing was measured yet and the work does not
    # depend on a model family (text, upscales); None: estimated per family.
    guess_job_seconds: float | None = None
    # Extras the stage reads at submit beside its model (a detector, wildcard lists),
    # so that a mistake fails the submit, not a job an hour later.
    resolve: Resolver | None = None
    # A rule on the stage's model beyond its kind and family: (params, arch) → what is
    # wrong with that model for these parameters (a clause after the model's name, or
    # a `ModelProblem` at another key), or None.
    check_model: Callable[[Any, str], str | ModelProblem | None] | None = None

    def outputs_of(self, params: StageParams) -> int:
        """How many outputs one job of this stage makes."""
        return params.outputs_per_job()

    def runner(self) -> Callable[[Any, Any], dict[str, Any]]:
        """The worker side of the stage: `run(job, params)` of `stages/<type>/run.py`."""
        module = importlib.import_module(f"{__package__}.{self.type}.run")
        runner: Callable[[Any, Any], dict[str, Any]] = module.run
        return runner


Strength = Annotated[float, Field(ge=0.0, le=1.0)]
Cfg = Annotated[float, Field(ge=0.0, le=50.0)]
Guidance = Annotated[float, Field(ge=0.0, le=30.0)]


class LoraRef(BaseModel):
    """One LoRA of `loras = [{model = "x", weight = 0.8}]`."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    model: str = Field(min_length=1, description="A LoRA from the registry")
    weight: float = Field(default=1.0, ge=-4.0, le=4.0, description="How strongly it applies")


class ControlRef(BaseModel):
    """`control = {model = "y", image = "pose.png", kind = "canny"}`."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    model: str = Field(min_length=1, description="A ControlNet from the registry")
    image: str = Field(min_length=1, description="The control image (a path)")
    kind: Literal["canny", "none"] = Field(
        default="canny", description="Preprocessor: canny edges, or none (image used as is)"
    )
    scale: float = Field(default=1.0, ge=0.0, le=2.0, description="Conditioning strength")
    low: int = Field(default=100, ge=0, le=255, description="Canny low threshold")
    high: int = Field(default=200, ge=0, le=255, description="Canny high threshold")


class DiffusionParams(StageParams):
    """What every diffusion stage shares: model, steps, guidance, sampler."""

    # The keys that are pixel sizes, held to the model family's multiple.
    size_keys: ClassVar[tuple[str, ...]] = ()

    model: str = Field(min_length=1, description="Registry name, path, or hash prefix")
    steps: Steps = Field(default=20, description="Denoising steps (unset: the family's)")
    cfg: Cfg = Field(default=7.0, description="Guidance scale, CFG (unset: the family's)")
    guidance: Guidance | None = Field(
        default=None, description="Flux dev's distilled guidance, in place of cfg (3.5)"
    )
    sampler: Sampler = Field(default="default", description="Scheduler (the family's own)")
    negative: PromptText | None = Field(
        default=None, description="Overrides inputs.negative (Flux reads none: ignored)"
    )
    sweep: Sweep | None = Field(
        default=None, description="Jobs over the product of these values: {cfg = [4, 7]}"
    )

    def with_family_defaults(self, arch: str) -> DiffusionParams:
        """This stage with the keys it leaves unset (steps, cfg, guidance) taken from
        its model's family: schnell's 4 steps, Flux dev's guidance 3.5, SD3's CFG 4.5."""
        family = family_of(arch)
        if family is None:
            return self
        rules = family.image_rules(arch)
        given = self.model_fields_set
        update: dict[str, Any] = {}
        if "steps" not in given:
            update["steps"] = rules.steps
        if "cfg" not in given and rules.cfg is not None:
            update["cfg"] = rules.cfg
        if "guidance" not in given and rules.guidance is not None:
            update["guidance"] = rules.guidance
        return self.model_copy(update=update) if update else self


def check_image_family(stage: DiffusionParams, arch: str) -> ModelProblem | None:
    """The stage's keys held against its model family's `ImageRules`: the sampler,
    CFG or distilled guidance, and sizes that are the family's multiple."""
    family = family_of(arch)
    if family is None:
        return None
    rules = family.image_rules(arch)
    label = family.label(arch)
    if stage.sampler not in rules.samplers:
        return ModelProblem(
            f"{label} does not sample with {stage.sampler}; it takes {', '.join(rules.samplers)}",
            "sampler",
        )
    if stage.guidance is not None and rules.guidance is None:
        instead = "cfg" if rules.cfg is not None else "no guidance of either kind"
        return ModelProblem(
            f"{label} takes no distilled guidance (a Flux dev key); it takes {instead}", "guidance"
        )
    if "cfg" in stage.model_fields_set and rules.cfg is None:
        instead = "guidance" if rules.guidance is not None else "no guidance of either kind"
        return ModelProblem(f"{label} takes no classifier-free guidance; it takes {instead}", "cfg")
    if getattr(stage, "control", None) is not None and stage.type not in family.control_stages:
        return ModelProblem(
            f"{label} takes a ControlNet in {', '.join(family.control_stages)} only, "
            f"not in {stage.type}",
            "control",
        )
    multiple = rules.size_multiple
    for key in stage.size_keys:
        value = getattr(stage, key)
        if value % multiple:
            lower = value // multiple * multiple
            return ModelProblem(
                f"{label} needs sizes that are multiples of {multiple}, not {value} "
                f"(try {max(lower, multiple)} or {lower + multiple})",
                key,
            )
    return None


class DiffusionOptions(DiffusionParams):
    """txt2img, img2img and refine also take LoRAs and a ControlNet (SPEC §5)."""

    loras: list[LoraRef] = Field(default_factory=list, description="LoRAs and their weights")
    control: ControlRef | None = Field(default=None, description="A ControlNet and its image")
