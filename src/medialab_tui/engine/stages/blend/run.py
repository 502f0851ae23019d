"""`blend` in the worker: references encoded by the VAE, slerped into one latent, then img2img."""

from __future__ import annotations

from typing import Any

from PIL import Image, ImageOps

from medialab_tui.engine.stages.blend.spec import BlendParams
from medialab_tui.engine.worker.context import JobContext, JobFailed, Timings
from medialab_tui.engine.worker.images import Start, denoise_all, open_rgb


def run(job: JobContext, params: BlendParams) -> Timings:
    """Every reference, fitted to width×height and encoded by the VAE, slerped into one
    latent by `weights`; then img2img from that latent, `per_input` seeds."""
    from medialab_tui.engine.worker.generate import blend_latents, encode_images

    paths = list(job.item.images)
    if len(paths) < 2:
        raise JobFailed("validation", f"blend needs two or more images, not {len(paths)}")
    weights = [float(w) for w in params.weights or [1.0] * len(paths)]
    if len(weights) != len(paths):
        raise JobFailed("validation", f"blend has {len(weights)} weights for {len(paths)} images")
    size = (params.width, params.height)
    # Fit, not stretch: crop to the target's aspect ratio, then resize.
    references = [ImageOps.fit(open_rgb(path), size, Image.Resampling.LANCZOS) for path in paths]
    total = sum(weights)
    extra = {"sources": paths, "weights": [w / total for w in weights]}

    def prepare(pipe: Any) -> list[Start]:
        latents = encode_images(pipe, references)
        job.check_cancel()
        blended = blend_latents(list(latents.split(1)), weights)
        return [Start(blended, size, {})]

    return denoise_all(job, params, prepare, extra, count=params.per_input)
