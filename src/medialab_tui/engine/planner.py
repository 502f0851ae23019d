"""Expansion: how a pipeline's inputs become jobs, stage by stage, and what it costs.

`product` crosses every prompt with every seed (or image); `zip` pairs them one
to one. Each job of stage k makes `per_input` outputs; each output becomes one
job of stage k+1. Estimates come from measured history (seconds per pixel-step
of the same stage and model), else from a guess per architecture.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from sqlmodel import col, select

from medialab_tui.engine.families import family_of
from medialab_tui.engine.pipeline import Pipeline
from medialab_tui.engine.stages import STAGES, StageParams, job_params
from medialab_tui.engine.stages.base import Size
from medialab_tui.engine.sweep import apply_cell, cells
from medialab_tui.engine.worker.protocol import ModelRef
from medialab_tui.errors import ErrorLoc, InputError
from medialab_tui.store.db import Store
from medialab_tui.store.tables import Job

# Seconds per step at 512×512 when nothing was measured yet and the family does
# not say (each family knows its own: `Family.step_seconds`).
GUESS_STEP_SECONDS = 2.0
DEMO_STEP_SECONDS = 0.02  # the tiny demo models, at 512×512
HISTORY_JOBS = 20


@dataclass
class StagePlan:
    """One stage of a dry run: how many jobs and outputs, and how long."""

    index: int
    type: str
    jobs: int
    outputs: int
    seconds: float
    basis: str  # "history" | "guess"
    cells: int = 1  # the combinations of the stage's sweep, each job made once per cell


def _pair(left: list[Any], right: list[Any], expand: str, what: str) -> list[tuple[Any, Any]]:
    if expand == "product":
        return [(a, b) for a in left for b in right]
    if len(right) == 1:
        return [(a, right[0]) for a in left]
    if len(left) == 1:
        return [(left[0], b) for b in right]
    if len(left) != len(right):
        raise InputError(
            f'expand = "zip" pairs {what} one to one, but there are {len(left)} and {len(right)}'
        )
    return list(zip(left, right, strict=True))


def initial_items(pipeline: Pipeline, fallback_seed: int) -> list[dict[str, Any]]:
    """The input items of the first stage: one job each."""
    inputs = pipeline.inputs
    first = STAGES[pipeline.stages[0].type]
    seeds = inputs.seed_list(fallback_seed)
    prompts = [p for p in inputs.prompts if p.strip()]
    items: list[dict[str, Any]] = []
    if first.takes == "prompt":
        for prompt, seed in _pair(prompts, seeds, pipeline.expand, "prompts and seeds"):
            items.append(
                {
                    "prompt": prompt,
                    "negative": inputs.negative,
                    "seed": seed,
                    "images": [],
                    "parents": [],
                }
            )
    elif first.gathers:
        # One job takes every image, once per prompt and seed.
        for prompt, seed in _pair(prompts or [""], seeds, pipeline.expand, "prompts and seeds"):
            items.append(
                {
                    "prompt": prompt,
                    "negative": inputs.negative,
                    "seed": seed,
                    "images": list(inputs.images),
                    "parents": [],
                }
            )
    else:
        video = first.takes == "video"
        paths = list(inputs.videos if video else inputs.images)
        what = f"{first.takes}s and prompts"
        for path, prompt in _pair(paths, prompts or [""], pipeline.expand, what):
            item: dict[str, Any] = {
                "prompt": prompt,
                "negative": inputs.negative,
                "seed": seeds[0],
                "images": [] if video else [path],
                "parents": [],
            }
            if video:
                item["videos"] = [path]
            items.append(item)
    return items


def item_from_artifact(artifact: Any) -> dict[str, Any]:
    """The next stage's input item made from one output of this stage.

    A text output (an enhanced prompt) carries its prompt and no image; a video
    output carries its file under `videos`.
    """
    params = artifact.params or {}
    item = {
        "prompt": artifact.prompt,
        "negative": params.get("negative", ""),
        "seed": artifact.seed if artifact.seed is not None else 0,
        "images": [artifact.path] if artifact.kind == "image" else [],
        "parents": [artifact.id],
    }
    if artifact.kind == "video":
        item["videos"] = [artifact.path]
    if params.get("cell"):
        item["cell"] = params["cell"]  # the sweep cell it was made in goes down the chain
    return item


def next_items(
    stage_type: str, artifacts: list[Any], prompts: dict[int, str] | None = None
) -> list[dict[str, Any]]:
    """The items of stage `stage_type` made from the previous stage's outputs: one
    each, or, for a stage that gathers (blend), one holding them all. `prompts`
    replaces an output's prompt (edited in review), by artifact id."""
    items = []
    for artifact in artifacts:
        item = item_from_artifact(artifact)
        if prompts and artifact.id in prompts:
            item["prompt"], item["edited_from"] = prompts[artifact.id], item["prompt"]
        items.append(item)
    if not STAGES[stage_type].gathers or not items:
        return items
    gathered = {
        **{k: v for k, v in items[0].items() if k != "cell"},
        "images": [p for item in items for p in item["images"]],
        "parents": [p for item in items for p in item["parents"]],
    }
    if any("cell" in item for item in items):
        gathered["cells"] = [item.get("cell", {}) for item in items]  # one per image
    return [gathered]


def outputs_per_job(stage: StageParams) -> int:
    return stage.outputs_per_job()


def pixel_steps(stage: StageParams, size: Size | None = None) -> float:
    """The work of one job in pixel-steps, the unit estimates are kept in: a video's
    counts every frame. A stage without its own size works at its input's (`size`,
    where known; else 512×512)."""
    width = getattr(stage, "width", None) or (size[0] if size else 512)
    height = getattr(stage, "height", None) or (size[1] if size else 512)
    steps = getattr(stage, "steps", 1)
    frames = getattr(stage, "frames", 1)
    return float(width * height * steps * frames * outputs_per_job(stage))


def measured_rate(store: Store, stage: StageParams) -> float | None:
    """Seconds per pixel-step of recent succeeded jobs of this stage and model."""
    key = STAGES[stage.type].model_key
    model = getattr(stage, key, "")
    with store.read() as s:
        rows = s.exec(
            select(Job.run_seconds, Job.params)
            .where(Job.stage == stage.type, Job.status == "succeeded", Job.run_seconds > 0)
            .order_by(col(Job.id).desc())
            .limit(200)
        ).all()
    rates = []
    for seconds, params in rows:
        if params.get(key) != model:
            continue
        done = job_params(stage.type, params)
        if hasattr(done, "width") and done.width is None:
            continue  # it worked at its input's size, which its parameters do not say
        rates.append(seconds / pixel_steps(done))
        if len(rates) >= HISTORY_JOBS:
            break
    return sum(rates) / len(rates) if rates else None


def guess_seconds(
    stage: StageParams, device: str, model: ModelRef | None, size: Size | None = None
) -> float:
    """Seconds for one job of `stage` when nothing was measured: the stage's own guess,
    else the model family's step time (the demo models: their own)."""
    fixed = STAGES[stage.type].guess_job_seconds
    if fixed is not None:
        return fixed
    family = family_of(model.arch) if model else None
    if model is not None and model.demo:
        per_step = DEMO_STEP_SECONDS
    else:
        kind = "cuda" if device == "cuda" else "cpu"
        per_step = (family.step_seconds if family else {}).get(kind, GUESS_STEP_SECONDS)
    return per_step * pixel_steps(stage, size) / (512 * 512)


def plan(
    pipeline: Pipeline,
    items: int,
    store: Store,
    *,
    device: str = "cpu",
    models: list[ModelRef | None] | None = None,
    input_size: Size | None = None,
) -> list[StagePlan]:
    """Jobs, outputs and estimated seconds per stage for `items` first-stage inputs
    (images of at most `input_size`, where known)."""
    plans: list[StagePlan] = []
    jobs = items
    size = input_size
    for index, stage in enumerate(pipeline.stages):
        if index > 0 and STAGES[stage.type].gathers:
            jobs = min(jobs, 1)  # one job takes every output of the stage before
        # A sweep makes each job once per cell, each at its own cost.
        swept = [apply_cell(stage, cell) for cell in cells(stage)]
        rate = measured_rate(store, stage)
        if rate is not None:
            seconds = sum(rate * pixel_steps(each, size) for each in swept) * jobs
            basis = "history"
        else:
            model = (models or [None] * len(pipeline.stages))[index]
            seconds = sum(guess_seconds(each, device, model, size) for each in swept) * jobs
            basis = "guess"
        jobs *= len(swept)
        outputs = jobs * outputs_per_job(stage)
        plans.append(StagePlan(index, stage.type, jobs, outputs, seconds, basis, len(swept)))
        jobs = outputs
        size = max_size([each.output_size(size) for each in swept])
    return plans


def max_size(sizes: list[Size | None]) -> Size | None:
    """The largest of the sizes a sweep's cells make (None when none is known)."""
    known = [s for s in sizes if s is not None]
    return max(known, key=lambda s: s[0] * s[1]) if known else None


def megapixels(pixels: int) -> str:
    """`268.4 Mpx` (`4,096 px` below one megapixel), as the size errors say it."""
    return f"{pixels / 1e6:.4g} Mpx" if pixels >= 1_000_000 else f"{pixels:,} px"


def check_output_pixels(
    pipeline: Pipeline, input_sizes: list[Size], max_pixels: int, source: str
) -> None:
    """Refuse, before anything runs, a stage whose images would pass `max_pixels`
    (config `max_output_pixels`): each stage's size follows from the largest input
    image and the stages before it (an upscale's `scale`, a txt2img's size)."""
    size = max(input_sizes, key=lambda s: s[0] * s[1]) if input_sizes else None
    for index, stage in enumerate(pipeline.stages):
        made = max_size([apply_cell(stage, cell).output_size(size) for cell in cells(stage)])
        if made is not None and made[0] * made[1] > max_pixels:
            source_size = f" from {size[0]}×{size[1]}" if size and made != size else ""
            raise InputError(
                f"makes {made[0]}×{made[1]} images ({megapixels(made[0] * made[1])})"
                f"{source_size}; an image may have at most {megapixels(max_pixels)} "
                "(max_output_pixels in config.toml)",
                loc=ErrorLoc(
                    file=source,
                    stage=index + 1,
                    stage_type=stage.type,
                    key=stage.size_key if made != size else None,
                ),
            )
        size = made


def check_frame_rates(
    pipeline: Pipeline,
    input_rates: list[tuple[str, Fraction]],
    models: list[ModelRef | None],
    source: str,
) -> None:
    """Refuse, before anything runs, a stage that cannot take the videos it would get at
    their frame rate (an `interpolate` target that is no integer multiple of it): each
    clip of `inputs.videos` (path, rate) is followed through the stages, and a video
    made by a stage (`i2v`) has the rate that stage's keys give it."""
    starts: list[tuple[Fraction | None, str]] = [
        (rate, f"{Path(path).name}'s") for path, rate in input_rates
    ] or [(None, "")]
    for rate, whose in starts:
        for index, stage in enumerate(pipeline.stages):
            spec = STAGES[stage.type]
            if spec.takes == "video" and rate is not None:
                problem = stage.rate_problem(rate, whose)
                if problem is not None:
                    key, text = problem
                    raise InputError(
                        text,
                        loc=ErrorLoc(file=source, stage=index + 1, stage_type=stage.type, key=key),
                        predicate=False,
                    )
            model = models[index]
            arch = model.arch if model is not None else None
            rate = stage.output_rate(rate, arch) if spec.gives == "video" else None
            whose = f"stage {index + 1} ({stage.type})'s"
