"""The `upscale` stage in the worker: Lanczos, or an ESRGAN-family model through spandrel.

A model upscales by its own factor (often 4). Images larger than `tile` are cut
into overlapping tiles, so a big image never needs the whole activation map in
memory; each tile's output is weighted by a linear ramp across the overlap and
the weighted sum is normalised, which leaves no seams. The result is then resized
with Lanczos to exactly `scale` × the input, so a ×4 model serves a ×2 stage.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from medialab_tui.engine.stages.upscale.spec import UpscaleParams
from medialab_tui.engine.worker.context import JobContext, JobFailed, Timings

if TYPE_CHECKING:
    import torch

# Image modes for the channel counts of spandrel models.
_MODES = {1: "L", 3: "RGB", 4: "RGBA"}


@dataclass
class LoadedUpscaler:
    """A spandrel model as the worker's cache holds it, on the device and dtype it runs at."""

    descriptor: Any
    dtype: torch.dtype

    @property
    def components(self) -> dict[str, Any]:
        """The torch modules held, by name: what the cache's memory estimate counts."""
        return {"model": self.descriptor.model}

    @property
    def scale(self) -> int:
        return int(self.descriptor.scale)

    @property
    def channels(self) -> int:
        return int(self.descriptor.input_channels)


def run(job: JobContext, params: UpscaleParams) -> Timings:
    """Upscale every image of the job's item by `scale`; one output each."""
    sources = [Path(p) for p in job.item.images]
    job.check_cancel()
    if params.model == "lanczos":
        return _run_lanczos(job, params, sources)

    upscaler, hit, load_seconds = load_upscaler(job)
    import spandrel  # already imported by the load; here for ModelTiling

    tile, overlap = params.tile, params.tile_overlap
    if upscaler.descriptor.tiling == spandrel.ModelTiling.INTERNAL:
        tile = 0  # the model tiles by itself and breaks when given pieces
    sizes = []
    for source in sources:
        with Image.open(source) as im:
            sizes.append(im.size)
    counts = [len(tile_boxes(w, h, tile, overlap)) for w, h in sizes]
    total, done = sum(counts), 0
    base = job.base_meta(params)
    for i, source in enumerate(sources):
        with Image.open(source) as im:
            im.load()
            image = im.copy()

        def on_tile() -> None:
            nonlocal done
            done += 1
            job.progress(done, total)

        out = upscale_image(upscaler, image, params.scale, tile, overlap, job.device, on_tile)
        meta = {
            **base,
            "scale": params.scale,
            "model_scale": upscaler.scale,
            "upscaler_arch": upscaler.descriptor.architecture.id,
            "tile": tile,
            "tile_overlap": min(overlap, tile // 2),
            "tiles": counts[i],
        }
        job.save_image(out, f"{i:02d}-x{params.scale:g}", meta)
    return {"load_seconds": round(load_seconds, 4), "cache_hit": hit}


def _run_lanczos(job: JobContext, params: UpscaleParams, sources: list[Path]) -> Timings:
    from medialab_tui.engine.worker.generate import lanczos_upscale

    base = job.base_meta(params)
    for i, source in enumerate(sources):
        with Image.open(source) as im:
            im.load()
            image = lanczos_upscale(im.convert("RGB"), params.scale)
        job.progress(i + 1, len(sources))
        job.save_image(image, f"{i:02d}-x{params.scale:g}", {**base, "scale": params.scale})
    return {"load_seconds": 0.0, "cache_hit": True}


def load_upscaler(job: JobContext) -> tuple[LoadedUpscaler, bool, float]:
    """The stage's upscaler from the worker's cache (loading it on a miss):
    (upscaler, cache hit, seconds spent)."""
    model = job.model
    path = job.require_file(model.path, f"model '{model.name}'", "missing_model")
    t0 = time.perf_counter()
    upscaler, hit = job.cache.get(
        (str(path), "upscaler"),
        lambda: _load(path, model.name, job.device, job.dtype),
    )
    job.check_cancel()
    return upscaler, hit, time.perf_counter() - t0


def _load(path: Path, name: str, device: str, dtype: torch.dtype) -> LoadedUpscaler:
    # spandrel imports torchvision (seconds), so only jobs that need it pay.
    import spandrel
    import torch

    try:
        descriptor = spandrel.ModelLoader().load_from_file(path)
    except spandrel.UnsupportedModelError:
        raise JobFailed(
            "validation", f"model '{name}' is no architecture spandrel knows: not an upscaler"
        ) from None
    if not isinstance(descriptor, spandrel.ImageModelDescriptor):
        raise JobFailed(
            "validation",
            f"model '{name}' is a {descriptor.architecture.name} {descriptor.purpose.lower()} "
            "model that needs more than an image; upscale runs image-to-image models",
        )
    channels = int(descriptor.input_channels)
    if channels not in _MODES or descriptor.output_channels != channels:
        raise JobFailed(
            "validation",
            f"model '{name}' maps {channels} channels to {descriptor.output_channels}; "
            "upscale runs grey, RGB or RGBA models",
        )
    # Half precision where the device and the architecture both support it; the
    # CPU (and architectures that overflow in fp16) run in float32.
    run_dtype = torch.float32
    if device != "cpu":
        if dtype == torch.float16 and descriptor.supports_half:
            run_dtype = dtype
        elif dtype == torch.bfloat16 and descriptor.supports_bfloat16:
            run_dtype = dtype
    descriptor.to(device=torch.device(device), dtype=run_dtype).eval()
    return LoadedUpscaler(descriptor, run_dtype)


def tile_spans(length: int, tile: int, overlap: int) -> list[tuple[int, int]]:
    """(start, end) of the tiles along one side of `length` px.

    Tiles are `tile` px long and overlap by at least `overlap` px (at most half a
    tile); the last one ends flush with the image. `tile` 0, or a side no longer
    than a tile, gives one span.
    """
    if tile <= 0 or length <= tile:
        return [(0, length)]
    overlap = min(overlap, tile // 2)
    stride = tile - overlap
    starts = list(range(0, length - tile, stride)) + [length - tile]
    return [(s, s + tile) for s in starts]


def tile_boxes(width: int, height: int, tile: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """(left, top, right, bottom) of every tile of a `width` × `height` image, row by row."""
    return [
        (x0, y0, x1, y1)
        for y0, y1 in tile_spans(height, tile, overlap)
        for x0, x1 in tile_spans(width, tile, overlap)
    ]


def ramp(length: int, fade: int, fade_start: bool, fade_end: bool) -> np.ndarray:
    """Blend weights along one side of a tile: 1 inside, rising linearly over `fade`
    px on each side that another tile overlaps. Never 0, so every pixel counts."""
    weights = np.ones(length, dtype=np.float32)
    fade = min(fade, length)
    if fade > 0:
        rising = (np.arange(fade, dtype=np.float32) + 0.5) / fade
        if fade_start:
            weights[:fade] = np.minimum(weights[:fade], rising)
        if fade_end:
            weights[length - fade :] = np.minimum(weights[length - fade :], rising[::-1])
    return weights


def upscale_tiled(
    model: Callable[[np.ndarray], np.ndarray],
    pixels: np.ndarray,
    factor: int,
    tile: int,
    overlap: int,
    on_tile: Callable[[], None] = lambda: None,
) -> np.ndarray:
    """Run `model` (an H×W×C float array in [0, 1] → an (H·factor)×(W·factor)×C one)
    over `pixels` tile by tile and blend the outputs with linear ramps.

    `on_tile` runs after each tile (cancel checks and progress); an exception it
    raises stops the work.
    """
    height, width, channels = pixels.shape
    out = np.zeros((height * factor, width * factor, channels), dtype=np.float32)
    total = np.zeros((height * factor, width * factor, 1), dtype=np.float32)
    fade = min(overlap, tile // 2) * factor
    for x0, y0, x1, y1 in tile_boxes(width, height, tile, overlap):
        result = model(pixels[y0:y1, x0:x1])
        wy = ramp(result.shape[0], fade, y0 > 0, y1 < height)
        wx = ramp(result.shape[1], fade, x0 > 0, x1 < width)
        weight = (wy[:, None] * wx[None, :])[:, :, None]
        ys, xs = slice(y0 * factor, y1 * factor), slice(x0 * factor, x1 * factor)
        out[ys, xs] += result * weight
        total[ys, xs] += weight
        on_tile()
    return out / total


def upscale_image(
    upscaler: LoadedUpscaler,
    image: Image.Image,
    scale: float,
    tile: int,
    overlap: int,
    device: str,
    on_tile: Callable[[], None] = lambda: None,
) -> Image.Image:
    """`image` upscaled by the model, tiled, then resized to round(`scale` × its size)."""
    import torch

    mode = _MODES[upscaler.channels]
    alpha = None
    if upscaler.channels == 3 and "A" in image.getbands():
        alpha = image.getchannel("A")  # RGB models: the alpha channel goes by Lanczos
    pixels = np.asarray(image.convert(mode), dtype=np.float32).reshape(
        image.height, image.width, upscaler.channels
    )
    pixels /= 255.0

    def model(piece: np.ndarray) -> np.ndarray:
        tensor = torch.from_numpy(np.ascontiguousarray(piece.transpose(2, 0, 1)))[None]
        with torch.inference_mode():
            result = upscaler.descriptor(tensor.to(device=device, dtype=upscaler.dtype))
        return result[0].float().cpu().numpy().transpose(1, 2, 0)

    blended = upscale_tiled(model, pixels, upscaler.scale, tile, overlap, on_tile)
    out_pixels = np.clip(blended * 255.0 + 0.5, 0, 255).astype(np.uint8)
    out = Image.fromarray(out_pixels[:, :, 0] if mode == "L" else out_pixels)
    target = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    if out.size != target:
        out = out.resize(target, Image.Resampling.LANCZOS)
    if alpha is not None:
        out.putalpha(alpha.resize(target, Image.Resampling.LANCZOS))
    return out
