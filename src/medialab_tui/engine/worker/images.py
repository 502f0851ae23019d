"""What the diffusion stages share in the worker: the cached model, its derived
pipelines with the job's sampler, ControlNet and LoRAs, and image-to-image passes.

`txt2img`, `img2img`, `refine`, `blend` and `detail` load their model through
`load_base_pipe`; other pipelines (img2img, inpaint, ControlNet) are built from
it with `from_pipe`, sharing its weights. `diffusion_pipeline` takes the job's
LoRAs off again when the job ends, however it ends. Input files are only read;
every output is a new file written by `JobContext.save_image`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

from medialab_tui.engine.worker.context import JobContext, JobFailed, Timings

if TYPE_CHECKING:
    import torch

    from medialab_tui.engine.stages.base import DiffusionParams


def load_base_pipe(job: JobContext) -> tuple[Any, bool, float]:
    """The stage model's text-to-image pipeline from the worker's cache (loading it on a
    miss): (pipe, cache hit, seconds spent)."""
    from medialab_tui.engine.worker.loading import load_image_pipeline

    model = job.model
    job.check_cancel()
    path = job.require_file(model.path, f"model '{model.name}'", "missing_model")
    t0 = time.perf_counter()
    parts = model.parts
    # A split transformer's pipeline is its parts too: other parts, another pipeline.
    key = (model.path, "txt2img", *(f"{c}={p}" for c, p in sorted((parts or {}).items())))
    for component, part in (parts or {}).items():
        job.require_file(part, f"{component} of model '{model.name}'", "missing_model")
    pipe, hit = job.cache.get(
        key,
        lambda: load_image_pipeline(
            path,
            model.arch,
            job.device,
            job.dtype,
            config_dir=Path(model.config_dir) if model.config_dir else None,
            parts={c: Path(p) for c, p in parts.items()} if parts is not None else None,
        ),
    )
    job.check_cancel()
    return pipe, hit, time.perf_counter() - t0


@contextmanager
def diffusion_pipeline(
    job: JobContext, params: DiffusionParams, task: str
) -> Iterator[tuple[Any, Timings]]:
    """The stage model's `task` pipeline ("txt2img" or "img2img") with the job's
    sampler, ControlNet and LoRAs; yields it and the timing fields of `done`.

    The pipeline shares its modules with the cached model, so the LoRAs are
    unloaded when the block ends: the next job sees the model as it was.
    """
    from medialab_tui.engine.worker.loading import (
        apply_loras,
        derive_pipeline,
        remove_loras,
        set_sampler,
    )

    base, hit, load_seconds = load_base_pipe(job)
    control = job.extras.control
    t0 = time.perf_counter()
    controlnet, controlnet_hit = _controlnet(job) if control else (None, True)
    pipe = derive_pipeline(base, task, controlnet)
    set_sampler(pipe, params.sampler)
    loras = job.extras.loras
    for lora in loras:
        job.require_file(lora.path, f"LoRA '{lora.name}'", "missing_model")
    try:
        if loras:
            apply_loras(pipe, [(Path(lora.path), lora.weight) for lora in loras])
        job.check_cancel()
        load_seconds += time.perf_counter() - t0
        yield pipe, {"load_seconds": round(load_seconds, 4), "cache_hit": hit and controlnet_hit}
    finally:
        if loras:
            remove_loras(pipe)


def _controlnet(job: JobContext) -> tuple[Any, bool]:
    from medialab_tui.engine.worker.loading import load_controlnet

    control = job.extras.control
    assert control is not None
    path = job.require_file(control.path, f"ControlNet '{control.name}'", "missing_model")
    try:
        model, hit = job.cache.get(
            (str(path), "controlnet"), lambda: load_controlnet(path, job.device, job.dtype)
        )
    except ValueError as exc:
        raise JobFailed("validation", str(exc)) from None
    job.check_cancel()
    return model, hit


def control_kwargs(job: JobContext, size: tuple[int, int], image_key: str) -> dict[str, Any]:
    """The ControlNet arguments of one pipeline call at `size` (none without a ControlNet).

    `image_key` is where the pipeline takes the control image: `image` for
    text-to-image, `control_image` for image-to-image.
    """
    from medialab_tui.engine.worker.generate import control_image

    control = job.extras.control
    if control is None:
        return {}
    path = Path(control.image)
    if not path.is_file():
        raise JobFailed("validation", f"the control image {path} is gone")
    image = control_image(path, control.kind, control.low, control.high, size)
    return {image_key: image, "controlnet_conditioning_scale": control.scale}


def options_meta(job: JobContext) -> dict[str, Any]:
    """What the metadata records of the job's LoRAs and ControlNet."""
    meta: dict[str, Any] = {}
    if job.extras.loras:
        meta["loras"] = [
            {"name": lora.name, "weight": lora.weight, "sha256": lora.sha256}
            for lora in job.extras.loras
        ]
    control = job.extras.control
    if control is not None:
        meta["control"] = {
            "model": control.name,
            "sha256": control.sha256,
            "kind": control.kind,
            "scale": control.scale,
            "low": control.low,
            "high": control.high,
            "image": control.image,
        }
    return meta


@dataclass(frozen=True)
class Guidance:
    """How the job's pipeline is guided, by its model's family: the negative prompt it
    reads ("" for a family that reads none), the scale it is called with (CFG, or Flux
    dev's distilled guidance; 0 for schnell, which takes neither) and what the output
    records of them."""

    negative: str
    scale: float
    meta: dict[str, Any]


def guidance(job: JobContext, params: DiffusionParams) -> Guidance:
    """The job's guidance (see `Guidance`): the stage's keys as its family reads them."""
    from medialab_tui.engine.families import family_of
    from medialab_tui.engine.families.base import ImageRules

    family = family_of(job.model.arch)
    rules = family.image_rules(job.model.arch) if family else ImageRules()
    negative = job.negative(params.negative) if rules.negative else ""
    if rules.cfg is not None:
        return Guidance(negative, params.cfg, {"cfg": params.cfg})
    if rules.guidance is not None:
        scale = params.guidance if params.guidance is not None else rules.guidance
        return Guidance(negative, scale, {"cfg": None, "guidance": scale})
    return Guidance(negative, 0.0, {"cfg": None})


def size_multiple(job: JobContext) -> int:
    """The multiple the job model's family takes sizes in (8 for SD, 16 for Flux/SD3)."""
    from medialab_tui.engine.families import family_of

    family = family_of(job.model.arch)
    return family.image_rules(job.model.arch).size_multiple if family else 8


def generation_meta(job: JobContext, params: DiffusionParams, guided: Guidance) -> dict[str, Any]:
    """The keys every diffusion output records beside the job's base metadata."""
    return {
        **job.base_meta(params),
        "negative": guided.negative,
        "steps": params.steps,
        **guided.meta,
        "sampler": params.sampler,
    }


def step_preview(job: JobContext) -> Callable[[Any], Image.Image]:
    """A latent preview in the colours of the job model's family."""
    from medialab_tui.engine.worker.generate import latents_preview

    arch = job.model.arch
    return lambda latents: latents_preview(latents, arch)


# --- image-to-image ----------------------------------------------------------------


@dataclass
class Start:
    """Where one image-to-image input starts: pixels, or a latent blend of references."""

    image: Image.Image | torch.Tensor
    size: tuple[int, int]
    meta: dict[str, Any]


def snap(length: float, multiple: int = 8) -> int:
    """The nearest multiple of `multiple` (at least one): the sizes a model takes."""
    return max(multiple, round(length / multiple) * multiple)


def open_rgb(path: str) -> Image.Image:
    """An input image as RGB, or a failure saying it is gone."""
    if not Path(path).is_file():
        raise JobFailed("validation", f"the input image {path} is gone")
    with Image.open(path) as im:
        return im.convert("RGB")


def input_starts(job: JobContext, scale: float) -> list[Start]:
    """The job's input images, resized once (Lanczos) to `scale` × their size, to a
    multiple of the model family's (8, or 16), each as the start of an image-to-image pass."""
    paths = list(job.item.images)
    if not paths:
        raise JobFailed("validation", f"stage {job.command.stage} needs an input image")
    starts = []
    multiple = size_multiple(job)
    for path in paths:
        image = open_rgb(path)
        size = (snap(image.width * scale, multiple), snap(image.height * scale, multiple))
        if size != image.size:
            image = image.resize(size, Image.Resampling.LANCZOS)
        starts.append(Start(image, image.size, {"source": path}))
    return starts


def denoise_all(
    job: JobContext,
    params: Any,
    starts: list[Start] | Callable[[Any], list[Start]],
    extra_meta: dict[str, Any],
    *,
    count: int = 1,
) -> Timings:
    """Image-to-image from every start, `count` seeds each (item seed + i), one
    pipeline call per seed, each output saved as soon as it is made. `starts` may be
    a function of the pipeline (blend encodes its references with the model's VAE).
    `params` is an img2img-like stage's parameters (strength, optional prompt)."""
    from medialab_tui.engine.worker.generate import denoising_steps, img2img

    prompt = params.prompt or job.item.prompt
    guided = guidance(job, params)
    meta = {
        **generation_meta(job, params, guided),
        "prompt": prompt,
        "strength": params.strength,
        **options_meta(job),
        **extra_meta,
    }
    report = job.step_reporter(step_preview(job))
    with diffusion_pipeline(job, params, "img2img") as (pipe, timings):
        todo = starts(pipe) if callable(starts) else starts
        calls = [(start, seed) for start in todo for seed in job.seeds(count)]
        controls: dict[tuple[int, int], dict[str, Any]] = {}
        for n, (start, seed) in enumerate(calls):
            job.check_cancel()
            if start.size not in controls:
                controls[start.size] = control_kwargs(job, start.size, "control_image")

            def on_step(step: int, total: int, latents: Any, done: int = n) -> None:
                report(done * total + step, total * len(calls), latents)

            image = img2img(
                pipe,
                prompt=prompt,
                negative=guided.negative,
                image=start.image,
                seed=seed,
                steps=params.steps,
                cfg=guided.scale,
                strength=params.strength,
                on_step=on_step,
                extra=controls[start.size],
            )
            if denoising_steps(params.steps, params.strength) < 1:
                # Nothing to denoise, so no step callbacks: report the output instead.
                job.progress(n + 1, len(calls))
            job.save_image(image, f"{n:02d}-s{seed}", {**meta, **start.meta, "seed": seed})
    return timings
