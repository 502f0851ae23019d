"""How the worker runs each stage type: load, compute with per-step callbacks, save.

Each runner takes the worker and a `run` command and returns extra timing fields
for the `done` event. Outputs are written atomically with their metadata, then
announced with an `artifact` event; the engine indexes them when the job is done.
"""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

from medialab_tui import __version__
from medialab_tui.store.artifacts import write_png, write_sidecar

if TYPE_CHECKING:
    from medialab_tui.engine.worker.main import Worker

PREVIEW_INTERVAL_S = 0.5
SEED_SPACE = 2**32


def _base_meta(cmd: dict[str, Any]) -> dict[str, Any]:
    item = cmd.get("item", {})
    model = cmd.get("model") or {}
    return {
        "version": __version__,
        "run_id": cmd["run_id"],
        "job_id": cmd["job_id"],
        "stage": cmd["stage"],
        "stage_index": cmd.get("stage_index", 0),
        "params": cmd["params"],
        "prompt": item.get("prompt", ""),
        "negative": item.get("negative", ""),
        "seed": item.get("seed"),
        "parents": item.get("parents", []),
        "model": model.get("name", cmd["params"].get("model", "")),
        "model_hash": (model.get("sha256") or "")[:10] or None,
        "model_sha256": model.get("sha256") or None,
    }


def _save_image(
    worker: Worker, cmd: dict[str, Any], image: Image.Image, name: str, meta: dict[str, Any]
) -> None:
    path = Path(cmd["out_dir"]) / f"{name}.png"
    meta = {**meta, "width": image.width, "height": image.height, "name": name}
    write_png(path, image, meta)
    announce(worker, cmd, path, "image", meta, width=image.width, height=image.height)


def announce(
    worker: Worker,
    cmd: dict[str, Any],
    path: Path,
    kind: str,
    meta: dict[str, Any],
    **fields: Any,
) -> None:
    """Write the output's sidecar and tell the engine about it (it indexes it when the
    job is done)."""
    write_sidecar(path, meta)
    worker.channel.emit(
        "artifact",
        job_id=cmd["job_id"],
        path=str(path),
        name=meta["name"],
        kind=kind,
        seed=meta.get("seed"),
        meta=meta,
        **fields,
    )


def _step_reporter(
    worker: Worker, cmd: dict[str, Any], preview: Callable[[Any], Image.Image] | None
) -> Callable[[int, int, Any], None]:
    """The per-step callback: cancel check, progress event, an occasional preview."""
    job_id = cmd["job_id"]
    last_preview = [0.0]

    def on_step(step: int, total: int, latents: Any) -> None:
        worker.check_cancel()
        worker.last_step = step
        fields: dict[str, Any] = {"job_id": job_id, "step": step, "total": total}
        now = time.monotonic()
        if (
            preview is not None
            and cmd.get("preview")
            and now - last_preview[0] >= PREVIEW_INTERVAL_S
        ):
            last_preview[0] = now
            buf = io.BytesIO()
            preview(latents).save(buf, format="PNG")
            fields["preview"] = base64.b64encode(buf.getvalue()).decode()
        worker.channel.emit("progress", **fields)

    return on_step


def load_base_pipe(worker: Worker, cmd: dict[str, Any]) -> tuple[Any, bool, float]:
    """The stage model's text-to-image pipeline from the worker's cache (loading it on a
    miss): (pipe, cache hit, seconds spent). Other pipelines (img2img, inpaint,
    ControlNet) are built from it with `from_pipe`, sharing its weights."""
    from medialab_tui.engine.worker.loading import load_image_pipeline
    from medialab_tui.engine.worker.main import JobFailed

    model = cmd["model"]
    worker.check_cancel()
    if not Path(model["path"]).exists():
        raise JobFailed("missing_model", f"model '{model['name']}' is gone from {model['path']}")
    t0 = time.perf_counter()
    pipe, hit = worker.cache.get(
        (model["path"], "txt2img"),
        lambda: load_image_pipeline(
            Path(model["path"]),
            model["arch"],
            worker.device,
            worker.dtype,
            config_dir=Path(model["config_dir"]) if model.get("config_dir") else None,
        ),
    )
    worker.check_cancel()
    return pipe, hit, time.perf_counter() - t0


def run_txt2img(worker: Worker, cmd: dict[str, Any]) -> dict[str, Any]:
    from medialab_tui.engine.worker.generate import latents_preview, txt2img
    from medialab_tui.engine.worker.run_images import (
        control_kwargs,
        diffusion_pipeline,
        options_meta,
    )

    params, model, item = cmd["params"], cmd["model"], cmd["item"]
    base_seed = int(item["seed"])
    seeds = [(base_seed + i) % SEED_SPACE for i in range(int(params.get("per_input", 1)))]
    negative = params.get("negative")
    if negative is None:
        negative = item.get("negative", "")
    report = _step_reporter(worker, cmd, lambda lat: latents_preview(lat, model["arch"]))
    images = []
    # The cached pipeline, or its ControlNet variant, with the job's LoRAs on.
    with diffusion_pipeline(worker, cmd, "txt2img") as (pipe, timings):
        size = (int(params["width"]), int(params["height"]))
        control = control_kwargs(cmd, size, "image")
        # One call per seed, not one batch: batched kernels round differently, and a
        # re-run of one image must reproduce its pixels exactly.
        for i, seed in enumerate(seeds):

            def on_step(step: int, total: int, latents: Any, done: int = i) -> None:
                report(done * total + step, total * len(seeds), latents)

            images += txt2img(
                pipe,
                prompt=item["prompt"],
                negative=negative,
                seeds=[seed],
                steps=int(params["steps"]),
                cfg=float(params["cfg"]),
                width=size[0],
                height=size[1],
                on_step=on_step,
                extra=control,
            )
    base = {**_base_meta(cmd), **options_meta(cmd)}
    for i, (image, seed) in enumerate(zip(images, seeds, strict=True)):
        meta = {
            **base,
            "seed": seed,
            "negative": negative,
            "steps": params["steps"],
            "cfg": params["cfg"],
            "sampler": params.get("sampler", "default"),
        }
        _save_image(worker, cmd, image, f"{i:02d}-s{seed}", meta)
    return timings


Runner = Callable[["Worker", dict[str, Any]], dict[str, Any]]

RUNNERS: dict[str, Runner] = {
    "txt2img": run_txt2img,
}

# Runners in modules of their own, imported on first use: "module:function".
LAZY_RUNNERS: dict[str, str] = {
    "prompt_enhance": "medialab_tui.engine.worker.run_text:run_prompt_enhance",
    "img2img": "medialab_tui.engine.worker.run_images:run_img2img",
    "refine": "medialab_tui.engine.worker.run_images:run_refine",
    "blend": "medialab_tui.engine.worker.run_images:run_blend",
    "detail": "medialab_tui.engine.worker.run_detail:run_detail",
    "upscale": "medialab_tui.engine.worker.run_upscale:run_upscale",
}


def runner_for(stage: str) -> Runner | None:
    """The function that runs jobs of `stage`, or None when this worker has none."""
    if stage in RUNNERS:
        return RUNNERS[stage]
    target = LAZY_RUNNERS.get(stage)
    if target is None:
        return None
    import importlib

    module, _, name = target.partition(":")
    runner: Runner = getattr(importlib.import_module(module), name)
    RUNNERS[stage] = runner
    return runner
