"""`txt2img` in the worker: one pipeline call per seed, with the job's LoRAs and ControlNet."""

from __future__ import annotations

from typing import Any

from medialab_tui.engine.families import family_of
from medialab_tui.engine.stages.txt2img.spec import Txt2ImgParams
from medialab_tui.engine.worker.context import JobContext, Timings
from medialab_tui.engine.worker.images import (
    control_kwargs,
    diffusion_pipeline,
    generation_meta,
    guidance,
    options_meta,
    step_preview,
)


def run(job: JobContext, params: Txt2ImgParams) -> Timings:
    """`per_input` images from the item's prompt, seeds item seed + i."""
    from medialab_tui.engine.worker.generate import txt2img

    seeds = job.seeds(params.per_input)
    guided = guidance(job, params)
    report = job.step_reporter(step_preview(job))
    images = []
    # The cached pipeline, or its ControlNet variant, with the job's LoRAs on.
    with diffusion_pipeline(job, params, "txt2img") as (pipe, timings):
        size = (params.width, params.height)
        # Where the pipeline takes the control image: `image` (SD), `control_image` (Flux, SD3).
        family = family_of(job.model.arch)
        control = control_kwargs(job, size, family.control_key if family else "image")
        # One call per seed, not one batch: batched kernels round differently, and a
        # re-run of one image must reproduce its pixels exactly.
        for i, seed in enumerate(seeds):

            def on_step(step: int, total: int, latents: Any, done: int = i) -> None:
                report(done * total + step, total * len(seeds), latents)

            images += txt2img(
                pipe,
                prompt=job.item.prompt,
                negative=guided.negative,
                seeds=[seed],
                steps=params.steps,
                cfg=guided.scale,
                width=size[0],
                height=size[1],
                on_step=on_step,
                extra=control,
            )
    base = {**generation_meta(job, params, guided), **options_meta(job)}
    for i, (image, seed) in enumerate(zip(images, seeds, strict=True)):
        job.save_image(image, f"{i:02d}-s{seed}", {**base, "seed": seed})
    return timings
