"""Loading text-to-image pipelines and choosing their sampler (worker process only)."""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import diffusers
import torch
import transformers
from diffusers import (
    DDIMScheduler,
    DiffusionPipeline,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    HeunDiscreteScheduler,
    PNDMScheduler,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UniPCMultistepScheduler,
)
from diffusers.schedulers.scheduling_utils import SchedulerMixin

PIPELINE_CLASSES: dict[str, type[DiffusionPipeline]] = {
    "sd15": StableDiffusionPipeline,
    "sdxl": StableDiffusionXLPipeline,
}

# Sampler names as users type them (A1111/ComfyUI style) -> scheduler class and
# the config overrides that make it that sampler. ``None`` keeps the scheduler
# the model ships with. Karras sigmas are set explicitly either way, so picking
# "dpmpp_2m" on a model whose own scheduler uses Karras sigmas really drops them.
SAMPLERS: dict[str, tuple[type[SchedulerMixin] | None, dict[str, Any]]] = {
    "default": (None, {}),
    "euler": (EulerDiscreteScheduler, {"use_karras_sigmas": False}),
    "euler_a": (EulerAncestralDiscreteScheduler, {}),
    "heun": (HeunDiscreteScheduler, {"use_karras_sigmas": False}),
    "ddim": (DDIMScheduler, {}),
    "dpmpp_2m": (
        DPMSolverMultistepScheduler,
        {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": False},
    ),
    "dpmpp_2m_karras": (
        DPMSolverMultistepScheduler,
        {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True},
    ),
    "dpmpp_2m_sde_karras": (
        DPMSolverMultistepScheduler,
        {"algorithm_type": "sde-dpmsolver++", "solver_order": 2, "use_karras_sigmas": True},
    ),
    "unipc": (UniPCMultistepScheduler, {"use_karras_sigmas": False}),
    "pndm": (PNDMScheduler, {"skip_prk_steps": True}),
}

# The worker reports loading and progress through its own protocol; tqdm bars on
# its stderr would only clutter the log.
diffusers.utils.logging.disable_progress_bar()
transformers.utils.logging.disable_progress_bar()

# The scheduler each pipeline was loaded with, so "default" can bring it back
# after other samplers were tried on the cached pipeline.
_MODEL_SCHEDULERS: weakref.WeakKeyDictionary[DiffusionPipeline, SchedulerMixin] = (
    weakref.WeakKeyDictionary()
)


def load_image_pipeline(
    path: Path,
    arch: str,
    device: str,
    dtype: torch.dtype,
    config_dir: Path | None = None,
    *,
    fallback_config_dirs: Mapping[str, Path] | None = None,
) -> DiffusionPipeline:
    """Load a text-to-image pipeline from a diffusers folder or a single .safetensors file.

    A single file needs a diffusers folder holding the component configs and
    tokenizers (``config_dir``); without one, ``fallback_config_dirs[arch]`` is
    used (the bundled demo folders, which only fit demo-shaped weights). Nothing
    is ever downloaded and no safety checker is loaded.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"Model {path} does not exist.")
    pipeline_class = PIPELINE_CLASSES.get(arch)
    if pipeline_class is None:
        supported = ", ".join(sorted(PIPELINE_CLASSES))
        raise ValueError(
            f"Cannot load a {arch!r} model as an image pipeline (supported: {supported})."
        )

    # SD1.5 folders often list a safety checker and its feature extractor; skip both.
    extra: dict[str, Any] = (
        {"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False}
        if arch == "sd15"
        else {}
    )
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise ValueError(f"{path} is not a diffusers model folder: it has no model_index.json.")
        pipe = pipeline_class.from_pretrained(path, dtype=dtype, local_files_only=True, **extra)
    elif path.suffix.lower() == ".safetensors":
        config = config_dir or (fallback_config_dirs or {}).get(arch)
        if config is None:
            raise ValueError(
                f"{path.name} is a single-file checkpoint and needs a diffusers config folder "
                f"for {arch}, but none was given."
            )
        pipe = pipeline_class.from_single_file(
            str(path), config=str(config), dtype=dtype, local_files_only=True, **extra
        )
    else:
        # Pickle checkpoints (.ckpt, .pt, .bin) can run code when loaded.
        raise ValueError(f"{path.name} is neither a diffusers folder nor a .safetensors file.")

    pipe.set_progress_bar_config(disable=True)
    _MODEL_SCHEDULERS[pipe] = pipe.scheduler
    return pipe.to(device)


def set_sampler(pipe: DiffusionPipeline, name: str) -> None:
    """Swap ``pipe.scheduler`` for the sampler called ``name`` (see ``SAMPLERS``)."""
    if name not in SAMPLERS:
        known = ", ".join(SAMPLERS)
        raise ValueError(f"Unknown sampler {name!r}; choose one of: {known}.")
    model_scheduler = _MODEL_SCHEDULERS.setdefault(pipe, pipe.scheduler)
    scheduler_class, overrides = SAMPLERS[name]
    if scheduler_class is None:
        pipe.scheduler = model_scheduler
    else:
        # Start from the model's own config so its betas, prediction type and
        # timestep spacing carry over to the new sampler.
        pipe.scheduler = scheduler_class.from_config(model_scheduler.config, **overrides)


def estimate_pipeline_bytes(pipe: DiffusionPipeline) -> int:
    """Bytes held by the parameters and buffers of the pipeline's torch modules."""
    seen: set[int] = set()
    total = 0
    for component in pipe.components.values():
        if not isinstance(component, torch.nn.Module):
            continue
        for tensor in (*component.parameters(), *component.buffers()):
            # A tensor shared by two components is held once.
            if id(tensor) in seen:
                continue
            seen.add(id(tensor))
            total += tensor.numel() * tensor.element_size()
    return total
