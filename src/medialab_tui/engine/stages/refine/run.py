"""`refine` in the worker: a hires-fix pass or an SDXL refiner pass."""

from __future__ import annotations

from typing import Any

from medialab_tui.engine.stages.refine.spec import RefineParams
from medialab_tui.engine.worker.context import JobContext, Timings
from medialab_tui.engine.worker.images import denoise_all, input_starts


def run(job: JobContext, params: RefineParams) -> Timings:
    """`hires`: Lanczos-upscale by `scale`, then img2img; `refiner`: img2img at the same size."""
    scale = params.scale if params.method == "hires" else 1.0
    extra: dict[str, Any] = {"method": params.method}
    if params.method == "hires":
        extra["scale"] = scale
    return denoise_all(job, params, input_starts(job, scale), extra)
