"""The `detail` stage in the worker: find regions, inpaint each larger, blend them back.

For every input image: an OpenCV cascade finds the regions (faces by default;
OpenCV ships the cascades, so nothing is downloaded), the largest `max_regions`
of at least `min_size` px are kept, and each is cropped with `padding` around it,
inpainted at `size` px inside an elliptic mask, resized back and blended in
through that mask softened by `feather` px. Pixels outside the crops are never
touched, and an image with no region comes out unchanged.

The inpainting pipeline shares the weights of the stage model's cached
text-to-image pipeline; a plain 4-channel UNet inpaints by blending latents.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from medialab_tui.engine.stages.detail.spec import DetailParams
from medialab_tui.engine.worker.context import SEED_SPACE, JobContext, JobFailed, Timings
from medialab_tui.engine.worker.images import (
    generation_meta,
    guidance,
    load_base_pipe,
    size_multiple,
    snap,
    step_preview,
)

# OpenCV's own cascades for each target (files in cv2.data.haarcascades).
CASCADES = {
    "face": "haarcascade_frontalface_default.xml",
    "eyes": "haarcascade_eye.xml",
    "body": "haarcascade_fullbody.xml",
}
# detectMultiScale's usual settings: 10 % scale steps, and five overlapping hits
# before a box counts, which keeps false positives on textures rare.
_SCALE_STEP = 1.1
_MIN_NEIGHBOURS = 5


@dataclass(frozen=True)
class Box:
    """A rectangle in image pixels."""

    x: int
    y: int
    w: int
    h: int

    def as_list(self) -> list[int]:
        return [self.x, self.y, self.w, self.h]


@dataclass(frozen=True)
class Region:
    """One detected box, the crop around it and the size it is inpainted at."""

    box: Box
    crop: Box
    work: tuple[int, int]


def run(job: JobContext, params: DetailParams) -> Timings:
    """Detail every image of the job's item; one output each, regions or not."""
    from medialab_tui.engine.worker.loading import set_sampler

    steps, strength = params.steps, params.strength
    if int(steps * strength) < 1:
        raise JobFailed(
            "validation",
            f"strength {strength:g} of {steps} steps leaves no step to run; "
            "raise strength or steps",
        )
    cascade, detector = load_detector(job, params)
    job.check_cancel()

    images = []
    for source in job.item.images:
        with Image.open(source) as im:
            im.load()
            images.append(im.convert("RGB"))
    multiple = size_multiple(job)
    regions = [
        [
            plan_region(box, params.padding, params.size, image.size, multiple)
            for box in detect(cascade, image, params.min_size, params.max_regions)
        ]
        for image in images
    ]
    count = sum(len(r) for r in regions)

    # Nothing to inpaint, nothing to load: such a job costs a detection only.
    inpaint: Any = None
    hit, load_seconds = True, 0.0
    if count:
        pipe, hit, load_seconds = load_base_pipe(job)
        set_sampler(pipe, params.sampler)
        inpaint = _inpaint_pipeline(pipe)
    prompt = params.prompt or job.item.prompt
    guided = guidance(job, params)
    base_seed = int(job.item.seed or 0)
    report = job.step_reporter(step_preview(job))
    base = generation_meta(job, params, guided)
    done = 0
    for i, (image, image_regions) in enumerate(zip(images, regions, strict=True)):
        records = []
        for r, region in enumerate(image_regions):
            seed = (base_seed + r) % SEED_SPACE

            def on_step(step: int, total: int, latents: Any, before: int = done) -> None:
                report(before * total + step, total * count, latents)

            image = detail_region(
                inpaint,
                image,
                region,
                prompt=prompt,
                negative=guided.negative,
                seed=seed,
                steps=steps,
                cfg=guided.scale,
                strength=strength,
                feather=params.feather,
                on_step=on_step,
            )
            done += 1
            records.append(
                {
                    "box": region.box.as_list(),
                    "crop": region.crop.as_list(),
                    "size": list(region.work),
                    "seed": seed,
                }
            )
        if not count:
            job.progress(i + 1, len(images))
        meta = {
            **base,
            "seed": base_seed,
            "strength": strength,
            "target": params.target,
            "detector": detector["name"],
            "detector_hash": (detector.get("sha256") or "")[:10] or None,
            "detail_prompt": prompt,
            "boxes": [rec["box"] for rec in records],
            "regions": records,
        }
        job.save_image(image, f"{i:02d}-{meta['target']}", meta)
    return {"load_seconds": round(load_seconds, 4), "cache_hit": hit}


def load_detector(job: JobContext, params: DetailParams) -> tuple[Any, dict[str, Any]]:
    """The cascade the stage asks for (a registered detector, else OpenCV's own for
    the target) and the detector's record for the metadata."""
    import cv2.data

    entry = job.extras.detector
    if entry is not None:
        if entry.arch != "opencv-cascade":
            raise JobFailed(
                "validation",
                f"detector '{entry.name}' is a {entry.arch} model; "
                "detail runs OpenCV cascade detectors",
            )
        path = Path(entry.path)
        if not path.is_file():
            raise JobFailed("missing_model", f"detector '{entry.name}' is gone from {path}")
        record = {"name": entry.name, "sha256": entry.sha256}
    else:
        path = Path(cv2.data.haarcascades) / CASCADES[params.target]
        record = {"name": "opencv", "sha256": None}
    cascade = _cascade(str(path), path.stat().st_mtime_ns)
    if cascade.empty():
        raise JobFailed("validation", f"detector '{record['name']}' is not a cascade OpenCV loads")
    return cascade, record


@functools.lru_cache(maxsize=8)
def _cascade(path: str, _mtime_ns: int) -> Any:
    """A loaded cascade, kept while its file is unchanged (they load in tens of ms)."""
    import cv2

    return cv2.CascadeClassifier(path)


def detect(cascade: Any, image: Image.Image, min_size: int, max_regions: int) -> list[Box]:
    """The largest `max_regions` boxes of at least `min_size` px the cascade finds,
    largest first."""
    import cv2

    gray = cv2.equalizeHist(cv2.cvtColor(np.asarray(image), cv2.COLOR_RGB2GRAY))
    found = cascade.detectMultiScale(
        gray,
        scaleFactor=_SCALE_STEP,
        minNeighbors=_MIN_NEIGHBOURS,
        minSize=(min_size, min_size),
    )
    boxes = [
        Box(int(x), int(y), int(w), int(h))
        for x, y, w, h in found
        if w >= min_size and h >= min_size
    ]
    boxes.sort(key=lambda b: (-b.w * b.h, b.y, b.x))
    return boxes[:max_regions]


def plan_region(
    box: Box, padding: float, size: int, image_size: tuple[int, int], multiple: int = 8
) -> Region:
    """The square crop around `box` (its long side plus `padding` of it on each side,
    shifted and, if need be, cut to fit the image) and the size it is inpainted at:
    `size` on the long side, multiples of `multiple` (the model family's)."""
    width, height = image_size
    side = round(max(box.w, box.h) * (1 + 2 * padding))
    crop_w, crop_h = min(side, width), min(side, height)
    cx, cy = box.x + box.w / 2, box.y + box.h / 2
    x0 = min(max(round(cx - crop_w / 2), 0), width - crop_w)
    y0 = min(max(round(cy - crop_h / 2), 0), height - crop_h)
    factor = size / max(crop_w, crop_h)
    work = (snap(crop_w * factor, multiple), snap(crop_h * factor, multiple))
    return Region(box, Box(x0, y0, crop_w, crop_h), work)


def region_mask(region: Region, feather: int) -> Image.Image:
    """The blend mask over the crop: the ellipse inscribed in the box, blurred by
    `feather` px and kept that far inside the crop, so it fades to exactly 0 before
    the crop's edge."""
    crop, box = region.crop, region.box
    mask = Image.new("L", (crop.w, crop.h), 0)
    left = max(box.x - crop.x, feather)
    top = max(box.y - crop.y, feather)
    right = min(box.x + box.w - crop.x, crop.w - feather) - 1
    bottom = min(box.y + box.h - crop.y, crop.h - feather) - 1
    if right > left and bottom > top:
        ImageDraw.Draw(mask).ellipse([left, top, right, bottom], fill=255)
    if feather > 0:
        # PIL's Gaussian is three box blurs of about sigma each: its reach is ~3 sigma.
        mask = mask.filter(ImageFilter.GaussianBlur(feather / 3))
    return mask


def detail_region(
    inpaint: Any,
    image: Image.Image,
    region: Region,
    *,
    prompt: str,
    negative: str,
    seed: int,
    steps: int,
    cfg: float,
    strength: float,
    feather: int,
    on_step: Any,
) -> Image.Image:
    """`image` with one region inpainted and blended back (a new image)."""
    import torch

    from medialab_tui.engine.worker.generate import denoising_steps, shown_step, unpack_tokens

    crop = region.crop
    box = (crop.x, crop.y, crop.x + crop.w, crop.y + crop.h)
    source = image.crop(box)
    mask = region_mask(region, feather)
    work_w, work_h = region.work

    def step_end(pipeline: Any, index: int, _t: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        shown = shown_step(index, pipeline.num_timesteps, denoising_steps(steps, strength))
        on_step(*shown, unpack_tokens(tensors["latents"], region.work))
        return {}

    result = inpaint(
        prompt=prompt,
        negative_prompt=negative or None,
        image=source.resize((work_w, work_h), Image.Resampling.LANCZOS),
        mask_image=mask.resize((work_w, work_h), Image.Resampling.BILINEAR),
        width=work_w,
        height=work_h,
        strength=strength,
        num_inference_steps=steps,
        guidance_scale=cfg,
        generator=torch.Generator(device="cpu").manual_seed(seed),
        callback_on_step_end=step_end,
        callback_on_step_end_tensor_inputs=["latents"],
        output_type="pil",
    )
    detailed = result.images[0].convert("RGB").resize((crop.w, crop.h), Image.Resampling.LANCZOS)
    # Integer blend: where the mask is 0 the original pixels come back bit for bit.
    weight = np.asarray(mask, dtype=np.uint32)[:, :, None]
    old = np.asarray(source, dtype=np.uint32)
    new = np.asarray(detailed, dtype=np.uint32)
    blended = (old * (255 - weight) + new * weight + 127) // 255
    out = image.copy()
    out.paste(Image.fromarray(blended.astype(np.uint8)), box[:2])
    return out


def _inpaint_pipeline(pipe: Any) -> Any:
    """An inpainting pipeline on `pipe`'s components (no weights are copied)."""
    from diffusers import AutoPipelineForInpainting

    inpaint = AutoPipelineForInpainting.from_pipe(pipe)
    inpaint.set_progress_bar_config(disable=True)
    return inpaint
