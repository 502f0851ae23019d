"""Running diffusion jobs on a loaded pipeline: text to image, image to image,
latent blends and ControlNet images (worker process only)."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from diffusers import DiffusionPipeline
from PIL import Image

PREVIEW_MAX_SIDE = 64

StepCallback = Callable[[int, int, torch.Tensor], None]


def txt2img(
    pipe: DiffusionPipeline,
    *,
    prompt: str,
    negative: str,
    seeds: list[int],
    steps: int,
    cfg: float,
    width: int,
    height: int,
    on_step: StepCallback,
    extra: Mapping[str, Any] | None = None,
) -> list[Image.Image]:
    """Generate one image per seed, in one batch.

    Each image draws its noise from its own CPU generator, so image ``i``
    starts from the same noise as its seed alone would, whatever else is in the
    batch and on whichever device. (Batched kernels round differently from
    single-image ones, so pixels can differ by a step or two.)
    ``on_step(done, total, latents)`` runs after every denoising step; an
    exception it raises cancels the job and propagates to the caller. ``extra``
    goes to the pipeline call as is (a ControlNet pipeline's ``image`` and
    ``controlnet_conditioning_scale``).
    """
    if not seeds:
        raise ValueError("A text-to-image job needs at least one seed.")
    generators = [torch.Generator(device="cpu").manual_seed(seed) for seed in seeds]
    result = pipe(
        **(extra or {}),
        prompt=prompt,
        # None, not "": SDXL then uses zero embeddings for the unconditional
        # branch, as its authors intended for an empty negative prompt.
        negative_prompt=negative or None,
        num_images_per_prompt=len(seeds),
        generator=generators,
        num_inference_steps=steps,
        guidance_scale=cfg,
        width=width,
        height=height,
        callback_on_step_end=_step_end(on_step, steps, (width, height)),
        callback_on_step_end_tensor_inputs=["latents"],
        output_type="pil",
    )
    return list(result.images)


def _step_end(
    on_step: StepCallback, steps: int, size: tuple[int, int]
) -> Callable[..., dict[str, Any]]:
    def step_end(
        pipeline: DiffusionPipeline, step_index: int, _timestep: Any, tensors: dict[str, Any]
    ) -> dict[str, Any]:
        latents = unpack_tokens(tensors["latents"], size)
        on_step(*shown_step(step_index, pipeline.num_timesteps, steps), latents)
        return {}

    return step_end


def unpack_tokens(latents: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Latents as (batch, channels, height, width) for a preview. Flux's pipelines hand
    them over packed, each 2×2 patch one token: (batch, tokens, channels·4), laid out
    row by row in the aspect of the image's `size` (width, height)."""
    if latents.ndim != 3:
        return latents
    batch, tokens, packed = latents.shape
    rows = max(1, round(math.sqrt(tokens * size[1] / size[0])))
    cols = tokens // rows
    grid = latents[:, : rows * cols].reshape(batch, rows, cols, packed // 4, 2, 2)
    return grid.permute(0, 3, 1, 4, 2, 5).reshape(batch, packed // 4, rows * 2, cols * 2)


def shown_step(step_index: int, evaluations: int, steps: int) -> tuple[int, int]:
    """(done, total) in the steps the user asked for.

    The pipeline counts its model evaluations (`num_timesteps`), which a PLMS or a
    second-order sampler makes more of than the requested steps (4 steps run 5);
    the counter people read is the one they typed, so evaluations are scaled to it.
    """
    if evaluations <= 0 or steps <= 0:
        return step_index + 1, max(evaluations, 1)
    done = max(1, round((step_index + 1) * steps / evaluations))
    return min(done, steps), steps


def denoising_steps(steps: int, strength: float) -> int:
    """How many of ``steps`` an image-to-image pass at ``strength`` runs (as diffusers counts)."""
    return min(int(steps * strength), steps)


def img2img(
    pipe: DiffusionPipeline,
    *,
    prompt: str,
    negative: str,
    image: Image.Image | torch.Tensor,
    seed: int,
    steps: int,
    cfg: float,
    strength: float,
    on_step: StepCallback,
    extra: Mapping[str, Any] | None = None,
) -> Image.Image:
    """Denoise ``image`` (pixels, or VAE latents already scaled) from ``strength`` of the way.

    A strength too low to run one step leaves the image as it is (latents are
    decoded). One seed per call, as in ``txt2img``, so every output can be
    re-made alone.
    """
    if denoising_steps(steps, strength) < 1:
        return image if isinstance(image, Image.Image) else decode_latents(pipe, image)
    size = image.size if isinstance(image, Image.Image) else (image.shape[-1], image.shape[-2])
    # Flux's image-to-image makes its default size unless told the input's.
    pixels = isinstance(image, Image.Image) and _takes_size(pipe)
    sized = {"width": size[0], "height": size[1]} if pixels else {}
    result = pipe(
        **(extra or {}),
        **sized,
        prompt=prompt,
        **_negative(pipe, negative),
        image=image,
        strength=strength,
        generator=[torch.Generator(device="cpu").manual_seed(seed)],
        num_inference_steps=steps,
        guidance_scale=cfg,
        callback_on_step_end=_step_end(on_step, denoising_steps(steps, strength), size),
        callback_on_step_end_tensor_inputs=["latents"],
        output_type="pil",
    )
    return result.images[0]


def _takes_size(pipe: DiffusionPipeline) -> bool:
    """True when the pipeline's call takes a `width` and `height`."""
    return "width" in inspect.signature(type(pipe).__call__).parameters


def _negative(pipe: DiffusionPipeline, negative: str) -> dict[str, Any]:
    """The negative prompt argument (None for an empty one), left out for a pipeline that
    takes none (Flux's ControlNet image-to-image; Flux reads none anyway)."""
    if "negative_prompt" not in inspect.signature(type(pipe).__call__).parameters:
        return {}
    return {"negative_prompt": negative or None}


def encode_images(pipe: DiffusionPipeline, images: list[Image.Image]) -> torch.Tensor:
    """The VAE latents of ``images`` (one batch, scaled as the UNet expects them).

    The distribution's mode, not a sample: a reference means the same latent
    whatever the seed. Each image is encoded alone, so its latent does not
    depend on the others.
    """
    vae = pipe.vae
    pixels = pipe.image_processor.preprocess(images)
    # fp16 SDXL VAEs overflow; the pipelines upcast them for encoding too.
    upcast = vae.dtype == torch.float16 and bool(getattr(vae.config, "force_upcast", False))
    dtype = torch.float32 if upcast else vae.dtype
    original_dtype = vae.dtype
    if upcast:
        vae.to(dtype=torch.float32)
    try:
        with torch.no_grad():
            latents = torch.cat(
                [
                    vae.encode(pixels[i : i + 1].to(vae.device, dtype)).latent_dist.mode()
                    for i in range(pixels.shape[0])
                ]
            )
    finally:
        if upcast:
            vae.to(dtype=original_dtype)
    mean, std = _latent_stats(vae, latents)
    return ((latents - mean) * float(vae.config.scaling_factor) / std).to(pipe.unet.dtype)


def decode_latents(pipe: DiffusionPipeline, latents: torch.Tensor) -> Image.Image:
    """The image of scaled VAE latents (the inverse of ``encode_images``)."""
    vae = pipe.vae
    mean, std = _latent_stats(vae, latents)
    latents = latents * std / float(vae.config.scaling_factor) + mean
    with torch.no_grad():
        pixels = vae.decode(latents.to(vae.device, vae.dtype)).sample
    image: Image.Image = pipe.image_processor.postprocess(pixels, output_type="pil")[0]
    return image


def _latent_stats(vae: Any, latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The per-channel mean and std some VAEs normalise latents by (else 0 and 1)."""
    mean, std = getattr(vae.config, "latents_mean", None), getattr(vae.config, "latents_std", None)
    if mean is None or std is None:
        zero = torch.zeros((), device=latents.device, dtype=latents.dtype)
        return zero, zero + 1
    shape = (1, latents.shape[1], 1, 1)
    return (
        torch.tensor(mean, device=latents.device, dtype=latents.dtype).view(shape),
        torch.tensor(std, device=latents.device, dtype=latents.dtype).view(shape),
    )


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation from ``a`` (t=0) to ``b`` (t=1), treating each as one vector.

    Falls back to a straight line when the two point (almost) the same way.
    """
    a64, b64 = a.double(), b.double()
    cos = torch.dot(a64.flatten() / a64.norm(), b64.flatten() / b64.norm()).clamp(-1.0, 1.0)
    if abs(float(cos)) > 0.9995:
        mixed = (1.0 - t) * a64 + t * b64
    else:
        theta = math.acos(float(cos))
        sin = math.sin(theta)
        mixed = (math.sin((1.0 - t) * theta) * a64 + math.sin(t * theta) * b64) / sin
    return mixed.to(a.dtype)


def blend_latents(latents: list[torch.Tensor], weights: list[float]) -> torch.Tensor:
    """Combine latents by repeated slerp: each next one joins at its share of the
    weight so far, so the result leans on each as its weight says (equal weights: equally).
    """
    if len(latents) != len(weights) or not latents:
        raise ValueError("blend_latents needs one weight per latent, and at least one latent")
    result: torch.Tensor | None = None
    total = 0.0
    for latent, weight in zip(latents, weights, strict=True):
        if weight <= 0:
            continue
        total += weight
        result = latent if result is None else slerp(result, latent, weight / total)
    if result is None:
        raise ValueError("blend_latents needs at least one positive weight")
    return result


def control_image(path: Path, kind: str, low: int, high: int, size: tuple[int, int]) -> Image.Image:
    """The ControlNet's conditioning image: ``path`` at ``size``, as canny edges or as is."""
    with Image.open(path) as im:
        rgb = im.convert("RGB")
    if rgb.size != size:
        rgb = rgb.resize(size, Image.Resampling.LANCZOS)
    if kind == "none":
        return rgb
    if kind != "canny":
        raise ValueError(f"unknown ControlNet preprocessor {kind!r}: it must be canny or none")
    edges = cv2.Canny(cv2.cvtColor(np.asarray(rgb), cv2.COLOR_RGB2GRAY), low, high)
    return Image.fromarray(np.stack([edges] * 3, axis=-1))


def latents_preview(latents: torch.Tensor, arch: str) -> Image.Image:
    """A rough RGB preview of the first latent in the batch, at most 64 px on its long side."""
    from medialab_tui.engine.families import FAMILIES, family_of

    family = family_of(arch)
    # A family without its own colours previews in SD1.5's (most share that space).
    colours = (family.latent_rgb if family else None) or FAMILIES["sd15"].latent_rgb
    assert colours is not None
    factors, bias = colours
    latent = latents[0].detach().to(device="cpu", dtype=torch.float32)
    rgb = torch.einsum("chw,cr->hwr", latent, torch.tensor(factors)) + torch.tensor(bias)
    pixels = ((rgb + 1.0) * 127.5).clamp(0, 255).to(torch.uint8).numpy()
    preview = Image.fromarray(pixels)
    preview.thumbnail((PREVIEW_MAX_SIDE, PREVIEW_MAX_SIDE), Image.Resampling.BILINEAR)
    return preview


def lanczos_upscale(image: Image.Image, scale: float) -> Image.Image:
    """Resize ``image`` by ``scale`` with a Lanczos filter."""
    if scale <= 0:
        raise ValueError(f"The upscale factor must be positive, not {scale}.")
    width = max(1, round(image.width * scale))
    height = max(1, round(image.height * scale))
    return image.resize((width, height), Image.Resampling.LANCZOS)
