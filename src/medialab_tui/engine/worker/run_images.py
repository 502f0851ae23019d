"""Runners for the stages that start from images: `img2img`, `refine` and `blend`.

All three are image-to-image passes with the stage's model: `img2img` at the
input's size, `refine` after a Lanczos upscale (hires fix) or at the same size
(refiner), `blend` from the spherical blend of its references' latents. The
image-to-image pipeline is derived from the cached text-to-image one, so it
shares its weights; `diffusion_pipeline` adds the job's ControlNet and LoRAs
and takes the LoRAs off again when the job ends, however it ends.

Input files are only read; every output is a new file written by `_save_image`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image, ImageOps

from medialab_tui.engine.worker.runners import (
    SEED_SPACE,
    _base_meta,
    _save_image,
    _step_reporter,
    load_base_pipe,
)

if TYPE_CHECKING:
    import torch

    from medialab_tui.engine.worker.main import Worker


@contextmanager
def diffusion_pipeline(
    worker: Worker, cmd: dict[str, Any], task: str
) -> Iterator[tuple[Any, dict[str, Any]]]:
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
    from medialab_tui.engine.worker.main import JobFailed

    base, hit, load_seconds = load_base_pipe(worker, cmd)
    extras = cmd.get("extras") or {}
    control = extras.get("control")
    t0 = time.perf_counter()
    controlnet, controlnet_hit = _controlnet(worker, control) if control else (None, True)
    pipe = derive_pipeline(base, task, controlnet)
    set_sampler(pipe, cmd["params"].get("sampler", "default"))
    loras = extras.get("loras") or []
    for lora in loras:
        if not Path(lora["path"]).exists():
            raise JobFailed("missing_model", f"LoRA '{lora['name']}' is gone from {lora['path']}")
    try:
        if loras:
            apply_loras(pipe, [(Path(lora["path"]), float(lora["weight"])) for lora in loras])
        worker.check_cancel()
        load_seconds += time.perf_counter() - t0
        yield pipe, {"load_seconds": round(load_seconds, 4), "cache_hit": hit and controlnet_hit}
    finally:
        if loras:
            remove_loras(pipe)


def _controlnet(worker: Worker, control: dict[str, Any]) -> tuple[Any, bool]:
    from medialab_tui.engine.worker.loading import load_controlnet
    from medialab_tui.engine.worker.main import JobFailed

    path = Path(control["path"])
    if not path.exists():
        raise JobFailed("missing_model", f"ControlNet '{control['name']}' is gone from {path}")
    try:
        model, hit = worker.cache.get(
            (str(path), "controlnet"), lambda: load_controlnet(path, worker.device, worker.dtype)
        )
    except ValueError as exc:
        raise JobFailed("validation", str(exc)) from None
    worker.check_cancel()
    return model, hit


def control_kwargs(cmd: dict[str, Any], size: tuple[int, int], image_key: str) -> dict[str, Any]:
    """The ControlNet arguments of one pipeline call at `size` (none without a ControlNet).

    `image_key` is where the pipeline takes the control image: `image` for
    text-to-image, `control_image` for image-to-image.
    """
    from medialab_tui.engine.worker.generate import control_image
    from medialab_tui.engine.worker.main import JobFailed

    control = (cmd.get("extras") or {}).get("control")
    if not control:
        return {}
    path = Path(control["image"])
    if not path.is_file():
        raise JobFailed("validation", f"the control image {path} is gone")
    image = control_image(path, control["kind"], int(control["low"]), int(control["high"]), size)
    return {image_key: image, "controlnet_conditioning_scale": float(control["scale"])}


def options_meta(cmd: dict[str, Any]) -> dict[str, Any]:
    """What the metadata records of the job's LoRAs and ControlNet."""
    extras = cmd.get("extras") or {}
    meta: dict[str, Any] = {}
    if extras.get("loras"):
        meta["loras"] = [
            {"name": lora["name"], "weight": lora["weight"], "sha256": lora.get("sha256")}
            for lora in extras["loras"]
        ]
    control = extras.get("control")
    if control:
        meta["control"] = {
            "model": control["name"],
            "sha256": control.get("sha256"),
            "kind": control["kind"],
            "scale": control["scale"],
            "low": control["low"],
            "high": control["high"],
            "image": control["image"],
        }
    return meta


# --- the three stages -------------------------------------------------------------


@dataclass
class _Start:
    """Where one image-to-image input starts: pixels, or a latent blend of references."""

    image: Image.Image | torch.Tensor
    size: tuple[int, int]
    meta: dict[str, Any]


def run_img2img(worker: Worker, cmd: dict[str, Any]) -> dict[str, Any]:
    """Each input image at its own size (to a multiple of 8), `per_input` seeds each."""
    starts = [_Start(image, image.size, {"source": path}) for path, image in _inputs(cmd, 1.0)]
    return _denoise_all(worker, cmd, starts, {})


def run_refine(worker: Worker, cmd: dict[str, Any]) -> dict[str, Any]:
    """`hires`: Lanczos-upscale by `scale`, then img2img; `refiner`: img2img at the same size."""
    params = cmd["params"]
    method = params.get("method", "hires")
    scale = float(params.get("scale", 1.5)) if method == "hires" else 1.0
    starts = [_Start(image, image.size, {"source": path}) for path, image in _inputs(cmd, scale)]
    extra: dict[str, Any] = {"method": method}
    if method == "hires":
        extra["scale"] = scale
    return _denoise_all(worker, cmd, starts, extra)


def run_blend(worker: Worker, cmd: dict[str, Any]) -> dict[str, Any]:
    """Every reference, fitted to width×height and encoded by the VAE, slerped into one
    latent by `weights`; then img2img from that latent, `per_input` seeds."""
    from medialab_tui.engine.worker.generate import blend_latents, encode_images
    from medialab_tui.engine.worker.main import JobFailed

    params, item = cmd["params"], cmd["item"]
    paths = list(item.get("images", []))
    if len(paths) < 2:
        raise JobFailed("validation", f"blend needs two or more images, not {len(paths)}")
    weights = [float(w) for w in params.get("weights") or [1.0] * len(paths)]
    if len(weights) != len(paths):
        raise JobFailed("validation", f"blend has {len(weights)} weights for {len(paths)} images")
    size = (int(params["width"]), int(params["height"]))
    # Fit, not stretch: crop to the target's aspect ratio, then resize.
    references = [ImageOps.fit(_open_rgb(path), size, Image.Resampling.LANCZOS) for path in paths]
    total = sum(weights)
    extra = {"sources": paths, "weights": [w / total for w in weights]}

    def prepare(pipe: Any) -> list[_Start]:
        latents = encode_images(pipe, references)
        worker.check_cancel()
        blended = blend_latents(list(latents.split(1)), weights)
        return [_Start(blended, size, {})]

    return _denoise_all(worker, cmd, prepare, extra)


# --- shared ---------------------------------------------------------------------


def _snap8(length: float) -> int:
    """The nearest multiple of 8 (at least 8): the sizes the diffusion models take."""
    return max(8, round(length / 8) * 8)


def _open_rgb(path: str) -> Image.Image:
    from medialab_tui.engine.worker.main import JobFailed

    if not Path(path).is_file():
        raise JobFailed("validation", f"the input image {path} is gone")
    with Image.open(path) as im:
        return im.convert("RGB")


def _inputs(cmd: dict[str, Any], scale: float) -> list[tuple[str, Image.Image]]:
    """The job's input images, resized once (Lanczos) to `scale` × their size, to a
    multiple of 8."""
    from medialab_tui.engine.worker.main import JobFailed

    paths = list(cmd["item"].get("images", []))
    if not paths:
        raise JobFailed("validation", f"stage {cmd['stage']} needs an input image")
    images = []
    for path in paths:
        image = _open_rgb(path)
        size = (_snap8(image.width * scale), _snap8(image.height * scale))
        if size != image.size:
            image = image.resize(size, Image.Resampling.LANCZOS)
        images.append((path, image))
    return images


def _denoise_all(
    worker: Worker,
    cmd: dict[str, Any],
    starts: list[_Start] | Callable[[Any], list[_Start]],
    extra_meta: dict[str, Any],
) -> dict[str, Any]:
    """Image-to-image from every start, one pipeline call per seed (item seed + i),
    each output saved as soon as it is made. `starts` may be a function of the
    pipeline (blend encodes its references with the model's VAE)."""
    from medialab_tui.engine.worker.generate import denoising_steps, img2img, latents_preview

    params, item, model = cmd["params"], cmd["item"], cmd["model"]
    count = int(params.get("per_input", 1))  # refine has none: one output per input
    prompt = params.get("prompt") or item.get("prompt", "")
    negative = params.get("negative")
    if negative is None:
        negative = item.get("negative", "")
    steps, cfg, strength = int(params["steps"]), float(params["cfg"]), float(params["strength"])
    meta = {
        **_base_meta(cmd),
        "prompt": prompt,
        "negative": negative,
        "steps": steps,
        "cfg": cfg,
        "sampler": params.get("sampler", "default"),
        "strength": strength,
        **options_meta(cmd),
        **extra_meta,
    }
    base_seed = int(item["seed"])
    report = _step_reporter(worker, cmd, lambda lat: latents_preview(lat, model["arch"]))
    with diffusion_pipeline(worker, cmd, "img2img") as (pipe, timings):
        todo = starts(pipe) if callable(starts) else starts
        calls = [(start, (base_seed + i) % SEED_SPACE) for start in todo for i in range(count)]
        controls: dict[tuple[int, int], dict[str, Any]] = {}
        for n, (start, seed) in enumerate(calls):
            worker.check_cancel()
            if start.size not in controls:
                controls[start.size] = control_kwargs(cmd, start.size, "control_image")

            def on_step(step: int, total: int, latents: Any, done: int = n) -> None:
                report(done * total + step, total * len(calls), latents)

            image = img2img(
                pipe,
                prompt=prompt,
                negative=negative,
                image=start.image,
                seed=seed,
                steps=steps,
                cfg=cfg,
                strength=strength,
                on_step=on_step,
                extra=controls[start.size],
            )
            if denoising_steps(steps, strength) < 1:
                # Nothing to denoise, so no step callbacks: report the output instead.
                worker.channel.emit("progress", job_id=cmd["job_id"], step=n + 1, total=len(calls))
            _save_image(
                worker, cmd, image, f"{n:02d}-s{seed}", {**meta, **start.meta, "seed": seed}
            )
    return timings
