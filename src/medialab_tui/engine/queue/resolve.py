"""Input resolution at submit: a validated pipeline's models, LoRAs, ControlNet,
detector, wildcard lists and input images, looked up and checked now, so that a
mistake fails the submit with a sentence naming the file, stage and key, not a job
an hour later. Nothing here writes to the store except `store_input_file`, which
copies an input into `<data>/inputs/` by content (the original is never touched).
"""

from __future__ import annotations

import json
import random
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import blake3
from PIL import Image
from sqlmodel import col, select

from medialab_tui.config import DataDir, allow_image_pixels, load_config
from medialab_tui.engine import registry
from medialab_tui.engine.demo.publish import MARKER_FILE
from medialab_tui.engine.families import FAMILIES, archs_running, family_of
from medialab_tui.engine.families.base import Family, estimate_tokens
from medialab_tui.engine.pipeline import SEED_MAX, Pipeline
from medialab_tui.engine.planner import (
    StagePlan,
    check_frame_rates,
    check_output_pixels,
    initial_items,
    megapixels,
    plan,
)
from medialab_tui.engine.stages import STAGES, StageParams
from medialab_tui.engine.stages.base import DiffusionParams, ModelProblem, Size, constant_rate
from medialab_tui.engine.sweep import model_problem
from medialab_tui.engine.worker.protocol import ControlUse, Extras, LoraUse, ModelRef
from medialab_tui.errors import ErrorLoc, InputError
from medialab_tui.interop.recipe import UNKNOWN_MODEL
from medialab_tui.store.db import Store
from medialab_tui.store.files import atomic_copy
from medialab_tui.store.tables import Model, Setting
from medialab_tui.store.values import WORKER_KEY
from medialab_tui.store.videos import VideoInfo

# A run with more jobs than this is submitted only when the operator confirms it.
LARGE_RUN_JOBS = 500


@dataclass
class Prepared:
    """A validated pipeline with its models resolved and its first jobs planned."""

    pipeline: Pipeline
    source: str
    models: list[ModelRef | None]
    items: list[dict[str, Any]]
    plan: list[StagePlan]
    image_sources: list[Path] = field(default_factory=list)
    video_sources: list[Path] = field(default_factory=list)
    # Per stage: resolved LoRAs, ControlNet (with its image), detector, wildcard lists.
    extras: list[Extras] = field(default_factory=list)
    # Things worth knowing before it runs (a prompt the text encoder will cut short).
    notices: list[str] = field(default_factory=list)

    @property
    def outputs(self) -> int:
        """Outputs of the whole run, every stage counted."""
        return sum(p.outputs for p in self.plan)

    @property
    def jobs(self) -> int:
        return sum(p.jobs for p in self.plan)

    @property
    def large(self) -> bool:
        """Big enough that submitting it should be confirmed."""
        return self.jobs > LARGE_RUN_JOBS


def model_ref(row: Model) -> ModelRef:
    """A registry row as a job needs it."""
    return ModelRef(
        name=row.name,
        path=row.path,
        arch=row.arch,
        format=row.format,
        sha256=row.sha256,
        demo=row.demo,
    )


def _lookup(store: Store, ref: str, kinds: tuple[str, ...], loc: ErrorLoc) -> Model:
    # Read now, not when the host started: an operator's allow-list edit applies
    # to the next submit, and removing a path takes the permission back at once.
    allow_pickle = load_config(DataDir(store.path.parent)).allow_pickle
    if ref.startswith(UNKNOWN_MODEL):
        raise InputError(
            f"the model {ref.removeprefix(UNKNOWN_MODEL)!r} the image was made with is not in "
            "the registry: put its file under a model root, or name a model you have",
            loc=loc,
            predicate=False,
        )
    try:
        return registry.resolve(store, ref, kinds=kinds, allow_pickle=allow_pickle)
    except InputError as exc:
        raise InputError(exc.text, loc=loc, predicate=False) from None


def _single_file_fields(store: Store, row: Model, loc: ErrorLoc) -> dict[str, Any]:
    """A single-file checkpoint loads offline only with a local diffusers folder of its
    architecture as the config; prefer a real model's folder to a demo's. A split
    transformer (`diffusion_model`) also needs its family's other parts (`_split_parts`).
    The ModelRef fields to set: `config_dir`, and `parts` for a split one."""
    split = row.kind == "diffusion_model"
    if row.format != "safetensors" or row.kind not in ("checkpoint", "diffusion_model"):
        return {}
    family = family_of(row.arch)
    if split and (family is None or not family.split_parts):
        splits = ", ".join(f.title for f in FAMILIES.values() if f.split_parts)
        raise InputError(
            f"model '{row.name}' is a UNet or transformer ({row.arch}) saved without its "
            f"text encoders; medialab loads such split files for {splits} only",
            loc=loc,
            predicate=False,
        )
    # A split transformer may take the folder of an arch its family can override to it.
    archs = {row.arch}
    if split and family is not None and row.arch in family.split_overrides:
        archs |= set(family.split_overrides)
    with store.read() as s:
        folders = s.exec(
            select(Model).where(
                col(Model.arch).in_(archs), Model.format == "diffusers", Model.kind == "checkpoint"
            )
        ).all()
    if not folders:
        what = f"a split {family.title} transformer" if split and family else "a single file"
        raise InputError(
            f"model '{row.name}' is {what}; loading it needs a diffusers folder of the "
            f"same architecture ({' or '.join(sorted(archs))}) in the registry as its config",
            loc=loc,
            predicate=False,
        )
    # A demo folder has random weights: one written here, or one found by its marker.
    demo = {
        m.name: m.demo or (registry.located(m, store.path.parent) / MARKER_FILE).is_file()
        for m in folders
    }
    best = sorted(folders, key=lambda m: (m.arch != row.arch, demo[m.name], m.name))[0]
    found: dict[str, Any] = {"config_dir": str(registry.located(best, store.path.parent))}
    if split and family is not None:
        found["parts"] = _split_parts(store, row, family, demo[best.name], loc)
    return found


def _split_parts(store: Store, row: Model, family: Family, demo: bool, loc: ErrorLoc) -> dict:
    """The files a split transformer's pipeline takes its other parts from (component →
    path): for each part its family names (`Family.split_parts`), a registered
    .safetensors file of that kind and arch: one under the transformer's root first,
    then one of its own kind (demo or not), then by name. A part none is registered
    for comes from the config folder when that is a real model; a demo folder
    (`demo`: random weights) lends only its configs and tokenizers, so the missing
    file is named instead."""
    parts: dict[str, str] = {}
    with store.read() as s:
        for part in family.split_parts:
            rows = s.exec(
                select(Model).where(
                    Model.kind == part.kind, Model.arch == part.arch, Model.format == "safetensors"
                )
            ).all()
            if rows:
                # The transformer's own root first (one ComfyUI install's files go together).
                chosen = sorted(
                    rows, key=lambda m: (m.root != row.root, m.demo != row.demo, m.name)
                )[0]
                parts[part.component] = str(registry.located(chosen, store.path.parent))
            elif demo:
                where = "text_encoders/ (or clip/)" if part.kind == "text_encoder" else "vae/"
                raise InputError(
                    f"model '{row.name}' is a split {family.title} transformer and needs "
                    f"{part.title} registered beside it, but the registry has none "
                    f"(put its .safetensors file in a model root's {where})",
                    loc=loc,
                    predicate=False,
                )
    return parts


def _stage_model(store: Store, stage: StageParams, loc: ErrorLoc) -> ModelRef | None:
    spec = STAGES[stage.type]
    ref = getattr(stage, spec.model_key, None)
    if not spec.uses_model or ref is None or ref in spec.builtin_models:
        return None
    at = replace(loc, key=spec.model_key)
    row = _lookup(store, ref, spec.model_kinds, at)
    family = family_of(row.arch)
    runnable = archs_running(stage.type)
    if runnable and not (family and family.runs(row.arch, stage.type)):
        raise InputError(
            f"'{ref}' is a {row.arch} model; {stage.type} runs {', '.join(runnable)}",
            loc=at,
            predicate=False,
        )
    problem = model_problem(spec.check_model, stage, row.arch)
    if isinstance(problem, ModelProblem):
        raise InputError(problem.text, loc=replace(loc, key=problem.key), predicate=False)
    if problem:
        raise InputError(f"'{ref}' {problem}", loc=at, predicate=False)
    return model_ref(row).model_copy(update=_single_file_fields(store, row, at))


@dataclass
class _StageContext:
    """What a stage's `resolve` hook sees (`stages.base.ResolveContext`)."""

    store: Store
    loc: ErrorLoc
    prompts: list[str]
    base_dir: Path
    wildcards_dir: Path
    max_output_pixels: int

    def lookup(self, ref: str, kinds: tuple[str, ...], key: str) -> dict[str, Any]:
        row = _lookup(self.store, ref, kinds, replace(self.loc, key=key))
        return model_ref(row).model_dump()

    def error(self, text: str, key: str | None = None) -> InputError:
        return InputError(text, loc=replace(self.loc, key=key), predicate=False)


def _fits(arch: str, adapter_arch: str) -> bool:
    """A LoRA or ControlNet of `adapter_arch` on a model of `arch` (see `Family.takes_adapter`)."""
    family = family_of(arch)
    return adapter_arch == arch or (family is not None and family.takes_adapter(arch, adapter_arch))


def _options(
    store: Store,
    stage: StageParams,
    loc: ErrorLoc,
    model: ModelRef | None,
    base_dir: Path,
    max_input_pixels: int,
) -> dict[str, Any]:
    """The LoRAs and the ControlNet of a stage that takes them, each of the model's family."""
    found: dict[str, Any] = {}
    arch = model.arch if model else None
    loras = []
    for i, lora in enumerate(getattr(stage, "loras", None) or []):
        at = replace(loc, key=f"loras[{i}].model")
        row = _lookup(store, lora.model, ("lora",), at)
        if arch and not _fits(arch, row.arch):
            raise InputError(
                f"LoRA '{lora.model}' is for {row.arch} models, but the stage's model is {arch}",
                loc=at,
                predicate=False,
            )
        loras.append(LoraUse(**model_ref(row).model_dump(), weight=lora.weight))
    if loras:
        found["loras"] = loras
    control = getattr(stage, "control", None)
    if control is not None:
        at = replace(loc, key="control.model")
        row = _lookup(store, control.model, ("controlnet",), at)
        if arch and not _fits(arch, row.arch):
            raise InputError(
                f"ControlNet '{control.model}' is for {row.arch} models, but the stage's "
                f"model is {arch}",
                loc=at,
                predicate=False,
            )
        image, _ = find_image(
            control.image, base_dir, replace(loc, key="control.image"), max_input_pixels
        )
        settings = control.model_dump(exclude={"model", "image"})
        found["control"] = ControlUse(**model_ref(row).model_dump(), image=str(image), **settings)
    return found


def find_image(raw: str, base: Path, loc: ErrorLoc, max_pixels: int) -> tuple[Path, Size]:
    """The image file `raw` names (relative to `base`) and its size, checked to be an
    image of at most `max_pixels` (config `max_input_pixels`) without decoding it."""
    path = (base / raw).expanduser() if not Path(raw).is_absolute() else Path(raw)
    if not path.is_file():
        raise InputError(f"{raw} does not exist", loc=loc, predicate=False)
    too_large = (
        f"an input image may have at most {megapixels(max_pixels)} "
        "(max_input_pixels in config.toml)"
    )
    try:
        # PIL warns of a possible decompression bomb from its limit up to twice it, and
        # refuses beyond; the size is checked against the cap here, so the warning
        # is kept off the terminal.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                width, height = im.size
                if width * height <= max_pixels:
                    im.verify()
    except Image.DecompressionBombError:
        limit = 2 * (Image.MAX_IMAGE_PIXELS or 0)
        raise InputError(
            f"{raw} claims more than {megapixels(limit)}; {too_large}", loc=loc, predicate=False
        ) from None
    except Exception:  # PIL's decoders raise many kinds of errors on damaged files
        raise InputError(f"{raw} is not an image", loc=loc, predicate=False) from None
    if width * height > max_pixels:
        raise InputError(
            f"{raw} is {width}×{height} ({megapixels(width * height)}); {too_large}",
            loc=loc,
            predicate=False,
        )
    return path, (width, height)


def find_video(raw: str, base: Path, loc: ErrorLoc, max_frames: int) -> tuple[Path, VideoInfo]:
    """The video file `raw` names (relative to `base`) and what it holds, decoded once
    to check it: a file that is no video, has no video stream (audio only), is
    truncated, or has more than `max_frames` frames (config `max_video_frames`) is
    refused."""
    from medialab_tui.store.videos import BadVideo, probe_video

    path = (base / raw).expanduser() if not Path(raw).is_absolute() else Path(raw)
    if not path.is_file():
        raise InputError(f"{raw} does not exist", loc=loc, predicate=False)
    try:
        return path, probe_video(path, max_frames=max_frames)
    except BadVideo as exc:
        raise InputError(str(exc), loc=loc, predicate=False) from None


def queue_device(store: Store) -> str:
    """The device the last worker reported, for estimates ("cpu" if none yet)."""
    with store.read() as s:
        row = s.get(Setting, WORKER_KEY)
    return json.loads(row.value).get("device", "cpu") if row else "cpu"


def _check_gathers(pipeline: Pipeline, stage_plan: list[StagePlan], source: str) -> None:
    """A stage that takes every image at once (blend) needs two or more, one weight each."""
    for step in stage_plan:
        if not STAGES[step.type].gathers:
            continue
        loc = ErrorLoc(file=source, stage=step.index + 1, stage_type=step.type)
        first = step.index == 0
        given = len(pipeline.inputs.images) if first else stage_plan[step.index - 1].outputs
        if given < STAGES[step.type].min_gathered:
            raise InputError(
                f"blends two or more images, but "
                f"{'inputs.images lists' if first else 'the stage before makes'} {given}",
                loc=loc,
            )
        weights = getattr(pipeline.stages[step.index], "weights", None)
        if weights is not None and len(weights) != given:
            raise InputError(
                f"has {len(weights)} values for {given} images", loc=replace(loc, key="weights")
            )


def prepare(store: Store, pipeline: Pipeline, source: str, base_dir: Path) -> Prepared:
    """Everything `--dry-run` shows, and everything `submit` needs; writes nothing."""
    config = load_config(DataDir(store.path.parent))
    allow_image_pixels(config)
    stage_locs = [
        ErrorLoc(file=source, stage=i + 1, stage_type=st.type)
        for i, st in enumerate(pipeline.stages)
    ]
    models = [
        _stage_model(store, st, loc) for st, loc in zip(pipeline.stages, stage_locs, strict=True)
    ]
    pipeline = _family_defaults(pipeline, models)
    images_loc = ErrorLoc(file=source, key="inputs.images")
    found_images = [
        find_image(raw, base_dir, images_loc, config.max_input_pixels)
        for raw in pipeline.inputs.images
    ]
    images = [path for path, _ in found_images]
    videos_loc = ErrorLoc(file=source, key="inputs.videos")
    found_videos = [
        find_video(raw, base_dir, videos_loc, config.max_video_frames)
        for raw in pipeline.inputs.videos
    ]
    videos = [path for path, _ in found_videos]
    check_output_pixels(
        pipeline,
        [size for _, size in found_images] + [(v.width, v.height) for _, v in found_videos],
        config.max_output_pixels,
        source,
    )
    check_frame_rates(
        pipeline, [(str(path), constant_rate(v)) for path, v in found_videos], models, source
    )
    fallback_seed = random.randrange(SEED_MAX + 1)
    if pipeline.inputs.seeds is None and pipeline.inputs.seed is None:
        # Record the chosen seed so the run can be repeated exactly.
        pipeline = pipeline.model_copy(
            update={"inputs": pipeline.inputs.model_copy(update={"seed": fallback_seed})}
        )
    try:
        items = initial_items(pipeline, fallback_seed)
    except InputError as exc:
        raise exc.at(file=source) from None
    image_map = {raw: str(p) for raw, p in zip(pipeline.inputs.images, images, strict=True)}
    video_map = {raw: str(p) for raw, p in zip(pipeline.inputs.videos, videos, strict=True)}
    for item in items:
        item["images"] = [image_map.get(i, i) for i in item["images"]]
        if "videos" in item:
            item["videos"] = [video_map.get(v, v) for v in item["videos"]]
    prompts = [i["prompt"] for i in items]
    extras = []
    for index, (stage, loc) in enumerate(zip(pipeline.stages, stage_locs, strict=True)):
        spec = STAGES[stage.type]
        found = (
            _options(store, stage, loc, models[index], base_dir, config.max_input_pixels)
            if spec.options
            else {}
        )
        if spec.resolve is not None:
            context = _StageContext(
                store,
                loc,
                prompts if index == 0 else [""],
                base_dir,
                wildcards_dir(store),
                config.max_output_pixels,
            )
            found.update(spec.resolve(stage, context))
        extras.append(Extras.model_validate(found))
    largest = max((size for _, size in found_images), key=lambda s: s[0] * s[1], default=None)
    stage_plan = plan(
        pipeline,
        len(items),
        store,
        device=queue_device(store),
        models=models,
        input_size=largest,
    )
    _check_gathers(pipeline, stage_plan, source)
    notices = _token_notices(pipeline, models, prompts) + _negative_notices(pipeline, models)
    return Prepared(pipeline, source, models, items, stage_plan, images, videos, extras, notices)


def _family_defaults(pipeline: Pipeline, models: list[ModelRef | None]) -> Pipeline:
    """The pipeline with each diffusion stage's unset steps, cfg and guidance taken from
    its model's family (the run records the values it ran with)."""
    stages = tuple(
        stage.with_family_defaults(model.arch)
        if model is not None and isinstance(stage, DiffusionParams)
        else stage
        for stage, model in zip(pipeline.stages, models, strict=True)
    )
    return pipeline.model_copy(update={"stages": stages})


def _negative_notices(pipeline: Pipeline, models: list[ModelRef | None]) -> list[str]:
    """A negative prompt given to a stage whose model reads none (Flux), said once each."""
    notices = []
    for index, (stage, model) in enumerate(zip(pipeline.stages, models, strict=True)):
        family = family_of(model.arch) if model else None
        if family is None or not isinstance(stage, DiffusionParams) or model is None:
            continue
        negative = stage.negative if stage.negative is not None else pipeline.inputs.negative
        if negative and not family.image_rules(model.arch).negative:
            notices.append(
                f"stage {index + 1} ({stage.type}): {family.label(model.arch)} reads no "
                f"negative prompt; the negative prompt is ignored"
            )
    return notices


def _token_notices(
    pipeline: Pipeline, models: list[ModelRef | None], prompts: list[str]
) -> list[str]:
    """Prompts longer than the text encoder of the stage that reads them, said once each."""
    notices: list[str] = []
    for index, (stage, model) in enumerate(zip(pipeline.stages, models, strict=True)):
        family = family_of(model.arch) if model else None
        limit = (
            (family.image_rules(model.arch).text_tokens or family.text_tokens)
            if family and model
            else None
        )
        if family is None or limit is None:
            continue
        own = [t for t in (getattr(stage, "prompt", None), getattr(stage, "negative", None)) if t]
        texts = [*own, *(prompts if index == 0 else [])]
        for text in dict.fromkeys(texts):
            tokens = estimate_tokens(text)
            if tokens > limit - 2:
                short = text if len(text) <= 40 else text[:37] + "…"
                notices.append(
                    f'stage {index + 1} ({stage.type}): the prompt "{short}" is about '
                    f"{tokens} tokens; {family.title}'s text encoder reads "
                    f"{limit - 2}, the rest is dropped"
                )
    return notices


def wildcards_dir(store: Store) -> Path:
    """`<data>/wildcards/`, where `__name__` lists live."""
    return store.path.parent / "wildcards"


def store_input_file(inputs_dir: Path, path: Path) -> str:
    """Copy an input file into `<data>/inputs/` by content; the original is never touched."""
    hasher = blake3.blake3()
    with path.open("rb") as f:
        while chunk := f.read(1 << 22):
            hasher.update(chunk)
    digest = hasher.hexdigest()[:24]
    target = inputs_dir / f"{digest}{path.suffix.lower()}"
    if not target.exists():
        atomic_copy(path, target)
    return str(target)
