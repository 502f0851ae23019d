"""Tiny random-weight flow-matching demo models: Flux and SD3, their ControlNets and a
Flux LoRA.

``write_demo_flow_models`` writes, into the models directory:

* ``demo-flux``: a FLUX.1-dev shaped pipeline (a transformer that embeds the
  guidance, CLIP-L for the pooled text, T5 for the sequence, a 16-channel VAE);
* ``demo-sd3``: an SD3 shaped pipeline (an MMDiT over 16-channel latents, two CLIP
  encoders with projections and a T5 encoder twice their width, as in SD3);
* ``demo-flux-lora.safetensors``: a rank-4 LoRA on the attention projections of
  the demo Flux transformer, in the PEFT layout ``load_lora_weights`` reads;
* ``demo-flux-controlnet``, ``demo-sd3-controlnet``: ControlNets made from the two
  transformers, saved as diffusers folders.

The components are shaped like diffusers' own pipeline tests' dummy components;
the latents have the real 16 channels, so the families' latent colours preview
them. Tokenizers are built here, offline: CLIP's from a byte-level vocabulary as
the SD demos do, T5's from a `tokenizers` Unigram model as the video demos do.
Weights come from a fixed seed through exact operations only, so the files are
byte-identical on every run. The output is abstract noise.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from medialab_tui.engine.demo.adapters import (
    LORA_RANK,
    LORA_TARGETS,
    publish_controlnet,
    uniform,
)
from medialab_tui.engine.demo.parts import (
    clip_text_encoder,
    clip_tokenizer,
    demo_vae,
    write_bpe_files,
)
from medialab_tui.engine.demo.publish import MARKER_FILE, publish_pipeline, publish_safetensors
from medialab_tui.engine.demo.video import t5_config, t5_tokenizer
from medialab_tui.engine.demo.weights import seeded

if TYPE_CHECKING:
    import torch
    from diffusers import DiffusionPipeline

DEMO_FLUX = "demo-flux"
DEMO_SD3 = "demo-sd3"
DEMO_FLUX_LORA = "demo-flux-lora.safetensors"
DEMO_FLUX_CONTROLNET = "demo-flux-controlnet"
DEMO_SD3_CONTROLNET = "demo-sd3-controlnet"

_CLIP_WIDTH = 32
_LATENT_CHANNELS = 16
_LORA_SEED = 3

_EXPECTED_FILES: dict[str, tuple[str, ...]] = {
    DEMO_FLUX: (
        "model_index.json",
        "transformer/diffusion_pytorch_model.safetensors",
        "vae/diffusion_pytorch_model.safetensors",
        "text_encoder/model.safetensors",
        "text_encoder_2/model.safetensors",
        "tokenizer/vocab.json",
        "tokenizer_2/tokenizer.json",
        "scheduler/scheduler_config.json",
        MARKER_FILE,
    ),
    DEMO_SD3: (
        "model_index.json",
        "transformer/diffusion_pytorch_model.safetensors",
        "vae/diffusion_pytorch_model.safetensors",
        "text_encoder/model.safetensors",
        "text_encoder_2/model.safetensors",
        "text_encoder_3/model.safetensors",
        "tokenizer/vocab.json",
        "tokenizer_2/vocab.json",
        "tokenizer_3/tokenizer.json",
        "scheduler/scheduler_config.json",
        MARKER_FILE,
    ),
}
# The CLIP tokenizers' folders, which get the byte-level BPE files.
_CLIP_TOKENIZERS = {DEMO_FLUX: ("tokenizer",), DEMO_SD3: ("tokenizer", "tokenizer_2")}


def write_demo_flow_models(models_dir: Path) -> list[Path]:
    """Write demo-flux, demo-sd3, the Flux LoRA and the two ControlNets into
    ``models_dir`` unless complete."""
    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    builds = {DEMO_FLUX: _build_flux, DEMO_SD3: _build_sd3}
    folders = []
    for name, build in builds.items():

        def add_bpe_files(tmp: Path, name: str = name) -> None:
            for tokenizer in _CLIP_TOKENIZERS[name]:
                write_bpe_files(tmp / tokenizer)

        folders.append(
            publish_pipeline(models_dir / name, is_complete_flow_demo, build, add_bpe_files)
        )
    lora = publish_safetensors(
        models_dir / DEMO_FLUX_LORA,
        lambda: build_flux_lora_state(folders[0]),
        {"medialab.arch": "flux"},
    )
    flux, sd3 = folders
    controlnets = [
        publish_controlnet(
            models_dir / DEMO_FLUX_CONTROLNET, lambda: build_flux_controlnet(flux), "flux"
        ),
        publish_controlnet(
            models_dir / DEMO_SD3_CONTROLNET, lambda: build_sd3_controlnet(sd3), "sd3"
        ),
    ]
    return [*folders, lora, *controlnets]


def is_complete_flow_demo(folder: Path) -> bool:
    """True when ``folder`` holds every file of the flow demo it is named after."""
    expected = _EXPECTED_FILES.get(folder.name)
    return expected is not None and all((folder / rel).is_file() for rel in expected)


def _vae(scaling_factor: float, shift_factor: float) -> torch.nn.Module:
    # No quant convs, as the Flux and SD3 VAEs; latents are shifted, then scaled.
    return demo_vae(
        scaling_factor,
        latent_channels=_LATENT_CHANNELS,
        use_quant_conv=False,
        use_post_quant_conv=False,
        shift_factor=shift_factor,
    )


def _t5(width: int) -> tuple[Any, Any]:
    from transformers import T5Config, T5EncoderModel

    tokenizer = t5_tokenizer()
    config = T5Config(**{**t5_config(tokenizer), "d_model": width})
    return tokenizer, seeded(T5EncoderModel, config=config)


def _build_flux() -> tuple[DiffusionPipeline, str]:
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel

    tokenizer_2, text_encoder_2 = _t5(_CLIP_WIDTH)
    transformer = seeded(
        FluxTransformer2DModel,
        patch_size=1,
        # 2×2 patches of 16-channel latents, packed into one token each.
        in_channels=4 * _LATENT_CHANNELS,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=_CLIP_WIDTH,
        pooled_projection_dim=_CLIP_WIDTH,
        # dev: the guidance is an input of the model, not a second pass.
        guidance_embeds=True,
        axes_dims_rope=(4, 4, 8),
    )
    pipe = FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(
            shift=3.0, use_dynamic_shifting=True, base_image_seq_len=256, max_image_seq_len=4096
        ),
        vae=seeded(_vae, scaling_factor=0.3611, shift_factor=0.1159),
        text_encoder=seeded(clip_text_encoder, with_projection=False, hidden_act="quick_gelu"),
        tokenizer=clip_tokenizer(),
        text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer_2,
        transformer=transformer,
    )
    return pipe, "flux"


def _build_sd3() -> tuple[DiffusionPipeline, str]:
    from diffusers import (
        FlowMatchEulerDiscreteScheduler,
        SD3Transformer2DModel,
        StableDiffusion3Pipeline,
    )

    # CLIP-L and -G are joined side by side, then padded to T5's width.
    tokenizer_3, text_encoder_3 = _t5(2 * _CLIP_WIDTH)
    transformer = seeded(
        SD3Transformer2DModel,
        sample_size=32,
        patch_size=2,
        in_channels=_LATENT_CHANNELS,
        out_channels=_LATENT_CHANNELS,
        # Two blocks: the last reads no context after it, and takes no ControlNet.
        num_layers=2,
        attention_head_dim=8,
        num_attention_heads=4,
        caption_projection_dim=32,
        joint_attention_dim=2 * _CLIP_WIDTH,
        pooled_projection_dim=2 * _CLIP_WIDTH,
    )
    pipe = StableDiffusion3Pipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=seeded(_vae, scaling_factor=1.5305, shift_factor=0.0609),
        text_encoder=seeded(clip_text_encoder, with_projection=True, hidden_act="quick_gelu"),
        tokenizer=clip_tokenizer(),
        text_encoder_2=seeded(clip_text_encoder, with_projection=True, hidden_act="gelu"),
        tokenizer_2=clip_tokenizer(),
        text_encoder_3=text_encoder_3,
        tokenizer_3=tokenizer_3,
        transformer=transformer,
    )
    return pipe, "sd3"


def build_flux_lora_state(flux_folder: Path) -> dict[str, torch.Tensor]:
    """A rank-``LORA_RANK`` LoRA on the demo Flux transformer's attention projections,
    keyed ``transformer.<layer>.lora_A/B`` (both drawn at random, so it changes the
    output)."""
    import torch
    from diffusers import FluxTransformer2DModel
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    transformer = FluxTransformer2DModel.from_pretrained(flux_folder / "transformer")
    transformer.add_adapter(
        LoraConfig(r=LORA_RANK, lora_alpha=LORA_RANK, target_modules=list(LORA_TARGETS))
    )
    shapes = {n: t.shape for n, t in get_peft_model_state_dict(transformer).items()}
    generator = torch.Generator(device="cpu").manual_seed(_LORA_SEED)
    return {f"transformer.{name}": uniform(shapes[name], generator) for name in sorted(shapes)}


def build_flux_controlnet(flux_folder: Path) -> torch.nn.Module:
    """A Flux ControlNet shaped as the demo transformer (one block of each kind)."""
    from diffusers import FluxControlNetModel

    keys = (
        "patch_size",
        "in_channels",
        "attention_head_dim",
        "num_attention_heads",
        "joint_attention_dim",
        "pooled_projection_dim",
        "guidance_embeds",
        "axes_dims_rope",
    )
    return _controlnet_like(FluxControlNetModel, flux_folder, keys, num_single_layers=1)


def build_sd3_controlnet(sd3_folder: Path) -> torch.nn.Module:
    """An SD3 ControlNet shaped as the demo transformer (one block)."""
    from diffusers import SD3ControlNetModel

    keys = (
        "sample_size",
        "patch_size",
        "in_channels",
        "attention_head_dim",
        "num_attention_heads",
        "joint_attention_dim",
        "caption_projection_dim",
        "pooled_projection_dim",
        "out_channels",
    )
    return _controlnet_like(SD3ControlNetModel, sd3_folder, keys, extra_conditioning_channels=0)


def _controlnet_like(
    model_class: Any, folder: Path, keys: tuple[str, ...], **extra: Any
) -> torch.nn.Module:
    """A one-block ControlNet with the `keys` of the transformer config in `folder`,
    every weight drawn from the seed: the projections a trained one starts at zero too,
    so the control image shows. (Not copied from the transformer: SD3's only full block
    would not fit, and a copy would carry the folder's path in its config.)"""
    import json

    config = json.loads((folder / "transformer" / "config.json").read_text(encoding="utf-8"))
    return seeded(model_class, num_layers=1, **{k: config[k] for k in keys}, **extra)
