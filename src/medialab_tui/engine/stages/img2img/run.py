"""`img2img` in the worker: each input image at its own size (to a multiple of 8)."""

from __future__ import annotations

from medialab_tui.engine.stages.img2img.spec import Img2ImgParams
from medialab_tui.engine.worker.context import JobContext, Timings
from medialab_tui.engine.worker.images import denoise_all, input_starts


def run(job: JobContext, params: Img2ImgParams) -> Timings:
    """`per_input` seeds of every input image."""
    return denoise_all(job, params, input_starts(job, 1.0), {}, count=params.per_input)
