"""Tiny random-weight demo models, so medialab runs end to end with no downloads.

``write_demo_models`` writes two diffusers folders into the models directory:

* ``demo-sd15``: a Stable Diffusion 1.5 shaped pipeline (one CLIP text encoder);
* ``demo-sdxl``: a Stable Diffusion XL shaped pipeline (two text encoders,
  ``text_time`` micro-conditioning);

plus ``demo-sd15-single.safetensors``, the same weights as ``demo-sd15`` in the
original Stable Diffusion single-file key layout (what A1111 and civitai files
look like), to exercise the single-file import path.

The models are the size of diffusers' own unit-test models: a 64x64 image in
four steps takes a fraction of a second on a laptop CPU, and the output is
abstract noise. Their weights come from a fixed seed through exact operations
only, so the files are byte-identical on every run and machine with the same
torch, diffusers and transformers versions.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medialab_tui.engine.demo.parts import (
    clip_text_encoder,
    clip_tokenizer,
    demo_vae,
    write_bpe_files,
)
from medialab_tui.engine.demo.publish import (
    MARKER_FILE,
    publish_pipeline,
    publish_safetensors,
)
from medialab_tui.engine.demo.weights import seeded

if TYPE_CHECKING:
    import torch
    from diffusers import DiffusionPipeline

DEMO_SD15 = "demo-sd15"
DEMO_SDXL = "demo-sdxl"
DEMO_SD15_SINGLE_FILE = "demo-sd15-single.safetensors"

# Relative paths each demo folder must hold to count as complete.
_EXPECTED_FILES: dict[str, tuple[str, ...]] = {
    DEMO_SD15: (
        "model_index.json",
        "unet/diffusion_pytorch_model.safetensors",
        "vae/diffusion_pytorch_model.safetensors",
        "text_encoder/model.safetensors",
        "tokenizer/tokenizer_config.json",
        "scheduler/scheduler_config.json",
        MARKER_FILE,
    ),
    DEMO_SDXL: (
        "model_index.json",
        "unet/diffusion_pytorch_model.safetensors",
        "vae/diffusion_pytorch_model.safetensors",
        "text_encoder/model.safetensors",
        "text_encoder_2/model.safetensors",
        "tokenizer/tokenizer_config.json",
        "tokenizer_2/tokenizer_config.json",
        "scheduler/scheduler_config.json",
        MARKER_FILE,
    ),
}


def write_demo_models(models_dir: Path) -> list[Path]:
    """Write the demo models into ``models_dir`` unless they are already there.

    Returns the paths of the two demo folders and of the single-file checkpoint,
    whether written now or found complete. An incomplete folder under a demo name
    (the ``demo-*`` names are reserved) is replaced.
    """
    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    sd15 = _ensure_folder(models_dir, DEMO_SD15, _build_sd15)
    sdxl = _ensure_folder(models_dir, DEMO_SDXL, _build_sdxl)
    single = _ensure_single_file(models_dir / DEMO_SD15_SINGLE_FILE, sd15)
    from medialab_tui.engine.demo.adapters import write_demo_adapters
    from medialab_tui.engine.demo.flow import write_demo_flow_models
    from medialab_tui.engine.demo.interpolator import write_demo_interpolator
    from medialab_tui.engine.demo.upscaler import write_demo_upscaler
    from medialab_tui.engine.demo.video import write_demo_videos

    adapters = write_demo_adapters(models_dir, sd15)
    videos = write_demo_videos(models_dir)
    flow = write_demo_flow_models(models_dir)
    interpolator = write_demo_interpolator(models_dir)
    # The ESRGAN comes last: `make run` takes it as the sign that every demo is written.
    return [
        sd15,
        sdxl,
        single,
        *adapters,
        *videos,
        *flow,
        *interpolator,
        *write_demo_upscaler(models_dir),
    ]


def is_complete_demo_folder(folder: Path) -> bool:
    """True when ``folder`` holds every file of the demo model it is named after."""
    expected = _EXPECTED_FILES.get(folder.name)
    return expected is not None and all((folder / rel).is_file() for rel in expected)


# --- writing atomically -------------------------------------------------------


def _ensure_folder(
    models_dir: Path, name: str, build: Callable[[], tuple[DiffusionPipeline, str]]
) -> Path:
    def add_bpe_files(tmp: Path) -> None:
        for tokenizer_dir in sorted(tmp.glob("tokenizer*")):
            write_bpe_files(tokenizer_dir)

    return publish_pipeline(models_dir / name, is_complete_demo_folder, build, add_bpe_files)


def _ensure_single_file(target: Path, sd15_folder: Path) -> Path:
    return publish_safetensors(
        target, lambda: sd15_to_original_layout(sd15_folder), {"format": "pt"}
    )


# --- building the pipelines ---------------------------------------------------


def _build_sd15() -> tuple[DiffusionPipeline, str]:
    from diffusers import PNDMScheduler, StableDiffusionPipeline

    unet = seeded(_unet, cross_attention_dim=32)
    vae = seeded(demo_vae, scaling_factor=0.18215)
    text_encoder = seeded(clip_text_encoder, with_projection=False, hidden_act="quick_gelu")
    # SD1.5 ships PNDM (PLMS) with these betas; "default" keeps it.
    scheduler = PNDMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        num_train_timesteps=1000,
        set_alpha_to_one=False,
        skip_prk_steps=True,
        steps_offset=1,
    )
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=clip_tokenizer(),
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        image_encoder=None,
        requires_safety_checker=False,
    )
    return pipe, "sd15"


def _build_sdxl() -> tuple[DiffusionPipeline, str]:
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline

    hidden = 32
    time_embed_dim = 8
    unet = seeded(
        _unet,
        # The two encoders' hidden states are concatenated for cross-attention.
        cross_attention_dim=2 * hidden,
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        transformer_layers_per_block=(1, 2),
        addition_embed_type="text_time",
        addition_time_embed_dim=time_embed_dim,
        # Six micro-conditioning numbers (size, crop, target size) plus the
        # pooled, projected embedding of the second encoder.
        projection_class_embeddings_input_dim=6 * time_embed_dim + hidden,
    )
    vae = seeded(demo_vae, scaling_factor=0.13025)
    text_encoder = seeded(clip_text_encoder, with_projection=False, hidden_act="quick_gelu")
    text_encoder_2 = seeded(clip_text_encoder, with_projection=True, hidden_act="gelu")
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        num_train_timesteps=1000,
        steps_offset=1,
        timestep_spacing="leading",
    )
    pipe = StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=clip_tokenizer(),
        tokenizer_2=clip_tokenizer(),
        unet=unet,
        scheduler=scheduler,
        image_encoder=None,
        feature_extractor=None,
    )
    return pipe, "sdxl"


def _unet(**overrides: Any) -> torch.nn.Module:
    from diffusers import UNet2DConditionModel

    config: dict[str, Any] = {
        "sample_size": 32,
        "in_channels": 4,
        "out_channels": 4,
        "layers_per_block": 1,
        "block_out_channels": (32, 64),
        # Attention only at the lower resolution, as diffusers' tests do: it
        # keeps a 64x64 image fast.
        "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D"),
        "up_block_types": ("CrossAttnUpBlock2D", "UpBlock2D"),
    }
    config.update(overrides)
    return UNet2DConditionModel(**config)


# --- original (LDM) single-file layout ----------------------------------------


def sd15_to_original_layout(folder: Path) -> dict[str, torch.Tensor]:
    """The weights of an SD1.5 diffusers folder, keyed as an original SD checkpoint.

    This is the inverse of diffusers' ``convert_ldm_unet_checkpoint``,
    ``convert_ldm_vae_checkpoint`` and ``convert_ldm_clip_checkpoint`` for the
    block layouts the demo uses (down/up blocks with at most one attention per
    resnet, a mid block of resnet-attention-resnet).
    """
    from safetensors.torch import load_file

    unet_config = json.loads((folder / "unet" / "config.json").read_text(encoding="utf-8"))
    vae_config = json.loads((folder / "vae" / "config.json").read_text(encoding="utf-8"))
    unet = load_file(folder / "unet" / "diffusion_pytorch_model.safetensors")
    vae = load_file(folder / "vae" / "diffusion_pytorch_model.safetensors")
    text = load_file(folder / "text_encoder" / "model.safetensors")

    state: dict[str, torch.Tensor] = {}
    layers_per_block = int(unet_config["layers_per_block"])
    for key, tensor in unet.items():
        state["model.diffusion_model." + _unet_key_to_ldm(key, layers_per_block, unet)] = tensor
    num_up_blocks = len(vae_config["up_block_types"])
    for key, tensor in vae.items():
        ldm_key, tensor = _vae_key_to_ldm(key, tensor, num_up_blocks)
        state["first_stage_model." + ldm_key] = tensor
    for key, tensor in text.items():
        # transformers >= 5.6 flattened CLIPTextModel (no "text_model." prefix);
        # original checkpoints always carry it.
        inner = key if key.startswith("text_model.") else "text_model." + key
        state["cond_stage_model.transformer." + inner] = tensor
    return {k: v.contiguous() for k, v in sorted(state.items())}


_UNET_TOP_LEVEL = {
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "conv_in": "input_blocks.0.0",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
}
_UNET_RESNET = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "time_emb_proj": "emb_layers.1",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "conv_shortcut": "skip_connection",
}


def _unet_key_to_ldm(key: str, layers_per_block: int, unet: dict[str, Any]) -> str:
    parts = key.split(".")
    module = ".".join(parts[:-1])
    if module in _UNET_TOP_LEVEL:
        return f"{_UNET_TOP_LEVEL[module]}.{parts[-1]}"
    per_block = layers_per_block + 1
    if parts[0] == "down_blocks":
        block, kind = int(parts[1]), parts[2]
        if kind == "downsamplers":
            index = 1 + block * per_block + layers_per_block
            return f"input_blocks.{index}.0.op.{'.'.join(parts[5:])}"
        index = 1 + block * per_block + int(parts[3])
        return _unet_layer(f"input_blocks.{index}", kind, parts[4:])
    if parts[0] == "up_blocks":
        block, kind = int(parts[1]), parts[2]
        if kind == "upsamplers":
            index = block * per_block + layers_per_block
            has_attention = any(k.startswith(f"up_blocks.{block}.attentions.") for k in unet)
            slot = 2 if has_attention else 1
            return f"output_blocks.{index}.{slot}.conv.{'.'.join(parts[5:])}"
        index = block * per_block + int(parts[3])
        return _unet_layer(f"output_blocks.{index}", kind, parts[4:])
    if parts[0] == "mid_block":
        kind, position = parts[1], int(parts[2])
        # middle_block is [resnet, attention, resnet].
        slot = 2 * position if kind == "resnets" else 1
        return _unet_layer(f"middle_block.{slot}", kind, parts[3:], nested=False)
    raise ValueError(f"UNet weight {key!r} has no place in the original SD layout.")


def _unet_layer(prefix: str, kind: str, rest: list[str], nested: bool = True) -> str:
    if kind == "resnets":
        inner = ".".join(rest[:-1])
        slot = ".0" if nested else ""
        return f"{prefix}{slot}.{_UNET_RESNET[inner]}.{rest[-1]}"
    if kind == "attentions":
        # Transformer2DModel already uses the original SpatialTransformer names.
        slot = ".1" if nested else ""
        return f"{prefix}{slot}.{'.'.join(rest)}"
    raise ValueError(f"UNet layer kind {kind!r} has no place in the original SD layout.")


_VAE_ATTENTION = {
    "group_norm": "norm",
    "to_q": "q",
    "to_k": "k",
    "to_v": "v",
    "to_out.0": "proj_out",
}


def _vae_key_to_ldm(key: str, tensor: torch.Tensor, num_up_blocks: int) -> tuple[str, torch.Tensor]:
    parts = key.split(".")
    side, rest = parts[0], parts[1:]
    if side not in ("encoder", "decoder"):
        return key, tensor  # quant_conv / post_quant_conv keep their names
    if rest[0] == "conv_norm_out":
        return f"{side}.norm_out.{rest[-1]}", tensor
    if rest[0] in ("conv_in", "conv_out"):
        return key, tensor
    if rest[0] == "mid_block":
        if rest[1] == "resnets":
            return f"{side}.mid.block_{int(rest[2]) + 1}.{_vae_resnet(rest[3:])}", tensor
        inner = ".".join(rest[3:-1])
        # The original attention projections are 1x1 convolutions.
        if inner != "group_norm" and rest[-1] == "weight":
            tensor = tensor[:, :, None, None]
        return f"{side}.mid.attn_1.{_VAE_ATTENTION[inner]}.{rest[-1]}", tensor
    if rest[0] == "down_blocks":
        block = int(rest[1])
        if rest[2] == "downsamplers":
            return f"encoder.down.{block}.downsample.conv.{rest[-1]}", tensor
        return f"encoder.down.{block}.block.{rest[3]}.{_vae_resnet(rest[4:])}", tensor
    if rest[0] == "up_blocks":
        # The original decoder numbers its up blocks from the lowest resolution.
        block = num_up_blocks - 1 - int(rest[1])
        if rest[2] == "upsamplers":
            return f"decoder.up.{block}.upsample.conv.{rest[-1]}", tensor
        return f"decoder.up.{block}.block.{rest[3]}.{_vae_resnet(rest[4:])}", tensor
    raise ValueError(f"VAE weight {key!r} has no place in the original SD layout.")


def _vae_resnet(rest: list[str]) -> str:
    name = ".".join(rest)
    return name.replace("conv_shortcut", "nin_shortcut")
