"""Running text-to-image jobs on a loaded pipeline (worker process only)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from diffusers import DiffusionPipeline
from PIL import Image

PREVIEW_MAX_SIDE = 64

# Linear maps from the four latent channels to RGB in [-1, 1]: the widely used
# approximations (ComfyUI's latent formats) that make step previews possible
# without running the VAE.
_LATENT_RGB_FACTORS: dict[str, tuple[list[list[float]], list[float]]] = {
    "sd15": (
        [
            [0.3512, 0.2297, 0.3227],
            [0.3250, 0.4974, 0.2350],
            [-0.2829, 0.1762, 0.2721],
            [-0.2120, -0.2616, -0.7177],
        ],
        [0.0, 0.0, 0.0],
    ),
    "sdxl": (
        [
            [0.3651, 0.4232, 0.4341],
            [-0.2533, -0.0042, 0.1068],
            [0.1076, 0.1111, -0.0362],
            [-0.3165, -0.2492, -0.2188],
        ],
        [0.1084, -0.0175, -0.0011],
    ),
}

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
) -> list[Image.Image]:
    """Generate one image per seed, in one batch.

    Each image draws its noise from its own CPU generator, so image ``i``
    starts from the same noise as its seed alone would, whatever else is in the
    batch and on whichever device. (Batched kernels round differently from
    single-image ones, so pixels can differ by a step or two.)
    ``on_step(done, total, latents)`` runs after every denoising step; an
    exception it raises cancels the job and propagates to the caller.
    """
    if not seeds:
        raise ValueError("A text-to-image job needs at least one seed.")
    generators = [torch.Generator(device="cpu").manual_seed(seed) for seed in seeds]

    def step_end(
        pipeline: DiffusionPipeline, step_index: int, _timestep: Any, tensors: dict[str, Any]
    ) -> dict[str, Any]:
        # num_timesteps, not steps: second-order and PLMS samplers run more
        # model evaluations than the requested step count.
        on_step(step_index + 1, pipeline.num_timesteps, tensors["latents"])
        return {}

    result = pipe(
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
        callback_on_step_end=step_end,
        callback_on_step_end_tensor_inputs=["latents"],
        output_type="pil",
    )
    return list(result.images)


def latents_preview(latents: torch.Tensor, arch: str) -> Image.Image:
    """A rough RGB preview of the first latent in the batch, at most 64 px on its long side."""
    # Refiners and other SDXL relatives share the SDXL latent space.
    family = "sdxl" if arch.startswith("sdxl") else "sd15"
    factors, bias = _LATENT_RGB_FACTORS[family]
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
