"""`i2v` in the worker: one video per seed from the item's image, with the model's family.

Progress counts the denoising steps and then the VAE's decode chunks (a forward
hook on the decoder reports each one and checks for a cancel between them), so a
cancel stops a job within one step or one chunk. Wan and LTX decode in tiles and
frame chunks (`families/<name>/load.prepare`), SVD `decode_chunk_size` frames at a
time. The input image is only read; each video is written by `JobContext.save_video`.
"""

from __future__ import annotations

import time
from fractions import Fraction
from typing import Any

from PIL import Image, ImageOps

from medialab_tui.engine.families import family_of
from medialab_tui.engine.families.base import Family, VideoRequest
from medialab_tui.engine.stages.i2v.spec import (
    SVD_DECODE_CHUNK,
    SVD_MOTION,
    SVD_NOISE_AUG,
    I2VParams,
)
from medialab_tui.engine.worker.context import JobContext, JobFailed, Timings
from medialab_tui.engine.worker.images import open_rgb


def run(job: JobContext, params: I2VParams) -> Timings:
    """`per_input` videos from the item's image, seeds item seed + i."""
    import numpy as np
    import torch

    model = job.model
    family = family_of(model.arch)
    if family is None or family.video is None:
        raise JobFailed("validation", f"model '{model.name}' is not a video model")
    limits, loader = family.video, family.loader()
    if not job.item.images:
        raise JobFailed("validation", "stage i2v needs an input image")
    source = job.item.images[0]
    image = open_rgb(source)
    size = (
        params.width or limits.fit_size(image.width),
        params.height or limits.fit_size(image.height),
    )
    request = VideoRequest(
        image=ImageOps.fit(image, size, Image.Resampling.LANCZOS),  # cropped to the aspect
        prompt=params.prompt if params.prompt is not None else job.item.prompt,
        negative=job.negative(params.negative),
        width=size[0],
        height=size[1],
        frames=params.frames,
        fps=params.fps or limits.default_fps,
        steps=params.steps,
        cfg=params.cfg if params.cfg is not None else limits.default_cfg,
        motion=params.motion or SVD_MOTION,
        noise_aug=SVD_NOISE_AUG if params.noise_aug is None else params.noise_aug,
        decode_chunk_size=params.decode_chunk_size or SVD_DECODE_CHUNK,
    )
    pipe, timings = _pipeline(job, loader)
    seeds = job.seeds(params.per_input)
    chunks = loader.decode_calls(pipe, request)
    per_video = request.steps + chunks
    total = per_video * len(seeds)
    meta = _meta(job, params, request, family, source)
    for n, seed in enumerate(seeds):
        job.check_cancel()
        progress = _Progress(job, n * per_video, request.steps, chunks, total)
        hook = pipe.vae.decoder.register_forward_hook(progress.on_chunk)
        try:
            generator = torch.Generator(device="cpu").manual_seed(seed)
            frames = loader.generate(pipe, request, generator, progress.on_step)
        finally:
            hook.remove()
        pixels = (np.clip(np.asarray(frames), 0.0, 1.0) * 255).round().astype(np.uint8)
        job.save_video(
            list(pixels),
            f"{n:02d}-s{seed}",
            {**meta, "seed": seed, "decode_chunks": chunks},
            fps=Fraction(request.fps),
            frame_count=len(pixels),
            size=size,
        )
    return timings


class _Progress:
    """One video's progress within the job: its denoising steps, then its decode chunks
    (each report checks for a cancel)."""

    def __init__(self, job: JobContext, done: int, steps: int, chunks: int, total: int) -> None:
        self.job, self.done, self.steps, self.chunks, self.total = job, done, steps, chunks, total
        self.decoded = 0

    def on_step(self, _pipe: Any, index: int, _timestep: Any, _tensors: Any) -> dict[str, Any]:
        """The pipeline's `callback_on_step_end`."""
        self.job.progress(self.done + min(index + 1, self.steps), self.total)
        return {}

    def on_chunk(self, _module: Any, _args: Any, _output: Any) -> None:
        """A forward hook on the VAE's decoder: one chunk decoded."""
        self.decoded += 1
        step = self.done + self.steps + min(self.decoded, self.chunks)
        self.job.progress(step, self.total)


def _pipeline(job: JobContext, loader: Any) -> tuple[Any, Timings]:
    """The model's pipeline from the worker's cache (loaded and prepared on a miss)."""
    from medialab_tui.engine.worker.loading import load_image_pipeline

    model = job.model
    job.check_cancel()
    path = job.require_file(model.path, f"model '{model.name}'", "missing_model")
    t0 = time.perf_counter()

    def load() -> Any:
        pipe = load_image_pipeline(path, model.arch, job.device, job.dtype)
        loader.prepare(pipe)
        return pipe

    pipe, hit = job.cache.get((model.path, "i2v"), load)
    job.check_cancel()
    return pipe, {"load_seconds": round(time.perf_counter() - t0, 4), "cache_hit": hit}


def _meta(
    job: JobContext, params: I2VParams, request: VideoRequest, family: Family, source: str
) -> dict[str, Any]:
    """What every video of the job records: the values it was made with (defaults
    filled in), the family, and the image it came from."""
    meta = {
        **job.base_meta(params),
        "family": family.title,
        "source": source,
        "steps": request.steps,
        "cfg": request.cfg,
        "negative": request.negative,
    }
    if family.video is not None and family.video.motion:
        meta.update(
            motion=request.motion,
            noise_aug=request.noise_aug,
            decode_chunk_size=request.decode_chunk_size,
        )
    else:
        meta["prompt"] = request.prompt
    return meta
