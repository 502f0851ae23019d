"""Loading pipelines, ControlNets and LoRAs, and choosing the sampler (worker process only).

Which pipeline class a model loads with is its family's (`families/<name>/load.py`);
what is the same for every diffusers family (single files, samplers, derived
pipelines, LoRAs) is here."""

from __future__ import annotations

import json
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
    FlowMatchEulerDiscreteScheduler,
    HeunDiscreteScheduler,
    PNDMScheduler,
    UniPCMultistepScheduler,
)
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from medialab_tui.engine.families import FAMILIES, family_of

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
    # The flow-matching families' (Flux, SD3): the model's shift and its dynamic
    # (resolution-dependent) shifting carry over from its own config.
    "flow_euler": (
        FlowMatchEulerDiscreteScheduler,
        {"use_karras_sigmas": False, "stochastic_sampling": False},
    ),
    "flow_euler_karras": (
        FlowMatchEulerDiscreteScheduler,
        {"use_karras_sigmas": True, "stochastic_sampling": False},
    ),
    "flow_euler_stochastic": (
        FlowMatchEulerDiscreteScheduler,
        {"use_karras_sigmas": False, "stochastic_sampling": True},
    ),
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
    parts: Mapping[str, Path] | None = None,
) -> DiffusionPipeline:
    """Load a text-to-image pipeline from a diffusers folder or a single .safetensors file.

    A single file needs a diffusers folder holding the component configs and
    tokenizers (``config_dir``); without one, ``fallback_config_dirs[arch]`` is
    used (the bundled demo folders, which only fit demo-shaped weights). With
    ``parts`` the file is a split transformer (see `load_split_pipeline`). Nothing
    is ever downloaded and no safety checker is loaded.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"Model {path} does not exist.")
    family = family_of(arch)
    if family is None or not family.archs[arch]:
        supported = ", ".join(a for f in FAMILIES.values() for a, runs in f.archs.items() if runs)
        raise ValueError(
            f"Cannot load a {arch!r} model as an image pipeline (supported: {supported})."
        )
    loader = family.loader()
    pipeline_class = loader.pipeline_class(arch)
    extra: dict[str, Any] = loader.load_kwargs(arch)
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
        if parts is not None:
            overrides = family.split_overrides.get(arch, {})
            pipe = load_split_pipeline(
                pipeline_class, path, Path(config), parts, dtype, extra, overrides
            )
        else:
            pipe = pipeline_class.from_single_file(
                str(path), config=str(config), dtype=dtype, local_files_only=True, **extra
            )
    else:
        # Pickle checkpoints (.ckpt, .pt, .bin) can run code when loaded.
        raise ValueError(f"{path.name} is neither a diffusers folder nor a .safetensors file.")

    pipe.set_progress_bar_config(disable=True)
    _MODEL_SCHEDULERS[pipe] = pipe.scheduler
    return pipe.to(device)


def load_split_pipeline(
    pipeline_class: type[DiffusionPipeline],
    path: Path,
    config: Path,
    parts: Mapping[str, Path],
    dtype: torch.dtype,
    extra: Mapping[str, Any],
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> DiffusionPipeline:
    """A pipeline from a transformer saved alone (ComfyUI's `diffusion_models/`, in its
    original layout or diffusers') and its other parts saved as their own files
    (`text_encoders/`, `vae/`): each part is built from its component's config in the
    diffusers folder ``config``, whose remaining components (tokenizers, scheduler, and
    any part not in ``parts``) are loaded from it. ``overrides`` (component → config
    keys) fit the folder's configs to a transformer of another arch of its family."""
    overrides = overrides or {}
    components: dict[str, Any] = {
        "transformer": _single_file_model(
            path, config, "transformer", dtype, **overrides.get("transformer", {})
        )
    }
    for component, file in parts.items():
        if hasattr(diffusers, _component_class(config, component)):
            components[component] = _single_file_model(file, config, component, dtype)
        else:
            components[component] = _text_encoder_from_file(file, config, component, dtype)
    if "scheduler" in overrides:
        scheduler_class = getattr(diffusers, _component_class(config, "scheduler"))
        scheduler_config = scheduler_class.load_config(config / "scheduler")
        components["scheduler"] = scheduler_class.from_config(
            scheduler_config, **overrides["scheduler"]
        )
    return pipeline_class.from_pretrained(
        config, dtype=dtype, local_files_only=True, **components, **extra
    )


def _component_class(config: Path, component: str) -> str:
    """The class a diffusers folder's component is saved as (its model_index.json entry)."""
    index = json.loads((config / "model_index.json").read_text(encoding="utf-8"))
    entry = index.get(component)
    if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[1], str)):
        raise ValueError(f"{config.name} has no {component} to take the config of")
    return entry[1]


def _single_file_model(
    path: Path, config: Path, component: str, dtype: torch.dtype, **overrides: Any
) -> Any:
    """A diffusers model (transformer, VAE) from one file, original layout or diffusers',
    with its folder config's keys `overrides` set."""
    model_class = getattr(diffusers, _component_class(config, component))
    return model_class.from_single_file(
        str(path),
        config=str(config),
        subfolder=component,
        torch_dtype=dtype,
        local_files_only=True,
        **overrides,
    )


def _text_encoder_from_file(path: Path, config: Path, component: str, dtype: torch.dtype) -> Any:
    """A transformers text encoder (CLIP, T5) from one file in its Hugging Face layout, as
    ComfyUI keeps them; a file that lacks one of the model's weights is refused, never
    filled in with random ones."""
    from safetensors.torch import load_file

    model_class = getattr(transformers, _component_class(config, component))
    model_config = transformers.AutoConfig.from_pretrained(
        config / component, local_files_only=True
    )
    model, info = model_class.from_pretrained(
        None,
        config=model_config,
        state_dict=load_file(str(path)),
        dtype=dtype,
        output_loading_info=True,
    )
    # Tied weights (T5's input embedding is its shared one) are not stored twice.
    tied = getattr(model, "_tied_weights_keys", None) or ()
    missing = [k for k in info["missing_keys"] if k not in tied]
    if missing:
        raise ValueError(
            f"{path.name} is not the {component} this model needs: it lacks {missing[0]}"
            + (f" and {len(missing) - 1} more weights" if len(missing) > 1 else "")
        )
    return model


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


def derive_pipeline(
    base: DiffusionPipeline, task: str, controlnet: torch.nn.Module | None = None
) -> DiffusionPipeline:
    """The ``task`` ("txt2img" or "img2img") pipeline of ``base``'s model, with
    ``controlnet`` when given, sharing ``base``'s weights (built in milliseconds).

    The derived pipeline gets its own copy of the model's scheduler: the two
    never share sampler state, and "default" still means the model's own sampler.
    """
    if task == "txt2img" and controlnet is None:
        return base
    # The auto pipelines import every pipeline diffusers has (≈ 1 s): only when needed.
    from diffusers import AutoPipelineForImage2Image, AutoPipelineForText2Image

    auto = AutoPipelineForImage2Image if task == "img2img" else AutoPipelineForText2Image
    model_scheduler = _MODEL_SCHEDULERS.setdefault(base, base.scheduler)
    scheduler = type(model_scheduler).from_config(model_scheduler.config)
    extra: dict[str, Any] = {"controlnet": controlnet} if controlnet is not None else {}
    pipe = auto.from_pipe(base, scheduler=scheduler, **extra)
    pipe.set_progress_bar_config(disable=True)
    _MODEL_SCHEDULERS[pipe] = scheduler
    return pipe


def load_controlnet(path: Path, device: str, dtype: torch.dtype) -> torch.nn.Module:
    """A ControlNet saved as a diffusers folder (``config.json`` and its weights), of the
    class its config names among the families' (SD's, Flux's, SD3's)."""
    path = Path(path)
    if not path.is_dir():
        # A single file needs its architecture's config, which only the hub has.
        raise ValueError(
            f"ControlNet {path.name} is a single file; medialab loads ControlNets saved as "
            "diffusers folders (config.json and diffusion_pytorch_model.safetensors)."
        )
    config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    known = {f.controlnet_class for f in FAMILIES.values()}
    name = config.get("_class_name") if isinstance(config, dict) else None
    if name not in known:
        raise ValueError(f"ControlNet {path.name} is a {name}, which no model family takes.")
    model = getattr(diffusers, name).from_pretrained(path, dtype=dtype, local_files_only=True)
    return model.to(device)


def apply_loras(pipe: DiffusionPipeline, loras: list[tuple[Path, float]]) -> None:
    """Load each LoRA file into ``pipe`` and apply them at their weights.

    The pipeline's modules are shared with the cached model: callers must call
    ``remove_loras`` when the job ends, however it ends.
    """
    names = []
    for index, (path, _) in enumerate(loras):
        # Adapter names are module keys, so not the registry names (which may hold dots).
        name = f"medialab_{index}"
        pipe.load_lora_weights(str(path), adapter_name=name, local_files_only=True)
        names.append(name)
    pipe.set_adapters(names, adapter_weights=[weight for _, weight in loras])


def remove_loras(pipe: DiffusionPipeline) -> None:
    """Take every LoRA layer out again, restoring the model's own modules."""
    pipe.unload_lora_weights()


def estimate_pipeline_bytes(pipe: DiffusionPipeline | torch.nn.Module) -> int:
    """Bytes held by the parameters and buffers of the pipeline's torch modules
    (or of one module, such as a ControlNet)."""
    seen: set[int] = set()
    total = 0
    components = [pipe] if isinstance(pipe, torch.nn.Module) else pipe.components.values()
    for component in components:
        if not isinstance(component, torch.nn.Module):
            continue
        for tensor in (*component.parameters(), *component.buffers()):
            # A tensor shared by two components is held once.
            if id(tensor) in seen:
                continue
            seen.add(id(tensor))
            total += tensor.numel() * tensor.element_size()
    return total
