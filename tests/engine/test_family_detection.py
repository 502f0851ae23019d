"""Every family, part and LoRA flavour told from a file's keys and shapes alone.

Each case is a safetensors header written with the names and shapes of a real
file of its kind (as ComfyUI, A1111, kohya, PEFT and LyCORIS write them) and no
tensor data: detection reads the header only. Names are misleading on purpose:
the keys decide, never the file name.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from medialab_tui.engine.model_files import detect_arch

Shapes = dict[str, list[int]]

DM = "model.diffusion_model."


def write_header_only(path: Path, shapes: Shapes, metadata: dict | None = None) -> Path:
    """A safetensors file whose header names `shapes` and holds no data (every tensor's
    offsets are [0, 0], which lie inside the file)."""
    header: dict = {
        name: {"dtype": "F16", "shape": s, "data_offsets": [0, 0]} for name, s in shapes.items()
    }
    if metadata:
        header["__metadata__"] = metadata
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw)
    return path


def sd_unet(width: int, *, channels: int = 4, adm: int | None = None, prefix: str = DM) -> Shapes:
    """An SD-style UNet in the LDM layout: its first conv, one cross-attention block."""
    shapes = {
        f"{prefix}input_blocks.0.0.weight": [320, channels, 3, 3],
        f"{prefix}input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight": [640, width],
        f"{prefix}out.2.weight": [4, 320, 3, 3],
    }
    if adm is not None:
        shapes[f"{prefix}label_emb.0.0.weight"] = [1280, adm]
    return shapes


KOHYA_SD15_K = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k"
KOHYA_SDXL_K = "lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k"

CLIP_L = {"cond_stage_model.transformer.text_model.final_layer_norm.weight": [768]}
OPEN_CLIP_H = {"cond_stage_model.model.ln_final.weight": [1024]}
SDXL_TE = {
    "conditioner.embedders.0.transformer.text_model.final_layer_norm.weight": [768],
    "conditioner.embedders.1.model.ln_final.weight": [1280],
}
REFINER_TE = {"conditioner.embedders.0.model.ln_final.weight": [1280]}
LDM_VAE = {"first_stage_model.decoder.conv_in.weight": [512, 4, 3, 3]}
COMFY_TE = {
    "text_encoders.clip_l.transformer.text_model.final_layer_norm.weight": [768],
    "text_encoders.t5xxl.transformer.encoder.final_layer_norm.weight": [4096],
}


def flux(prefix: str = "", *, guidance: bool = True) -> Shapes:
    """Black Forest Labs' layout, as in flux1-dev.safetensors / ComfyUI's diffusion_models/."""
    shapes = {
        f"{prefix}img_in.weight": [3072, 64],
        f"{prefix}double_blocks.0.img_attn.norm.key_norm.scale": [128],
        f"{prefix}double_blocks.0.img_attn.qkv.weight": [9216, 3072],
        f"{prefix}single_blocks.0.linear1.weight": [21504, 3072],
        f"{prefix}vector_in.in_layer.weight": [3072, 768],
        f"{prefix}txt_in.weight": [3072, 4096],
    }
    if guidance:
        shapes[f"{prefix}guidance_in.in_layer.weight"] = [3072, 256]
    return shapes


def flux_diffusers(*, guidance: bool = True) -> Shapes:
    shapes = {
        "x_embedder.weight": [3072, 64],
        "context_embedder.weight": [3072, 4096],
        "transformer_blocks.0.attn.add_q_proj.weight": [3072, 3072],
        "single_transformer_blocks.0.proj_mlp.weight": [12288, 3072],
        "time_text_embed.text_embedder.linear_1.weight": [3072, 768],
    }
    if guidance:
        shapes["time_text_embed.guidance_embedder.linear_1.weight"] = [3072, 256]
    return shapes


def sd3(width: int, prefix: str = "") -> Shapes:
    """Stability's MMDiT layout: 64 hidden per block (24 blocks Medium, 38 Large)."""
    return {
        f"{prefix}x_embedder.proj.weight": [width, 16, 2, 2],
        f"{prefix}joint_blocks.0.context_block.attn.qkv.weight": [3 * width, width],
        f"{prefix}joint_blocks.0.x_block.attn.qkv.weight": [3 * width, width],
        f"{prefix}context_embedder.weight": [width, 4096],
        f"{prefix}y_embedder.mlp.0.weight": [width, 2048],
    }


def sd3_diffusers(width: int) -> Shapes:
    return {
        "pos_embed.proj.weight": [width, 16, 2, 2],
        "transformer_blocks.0.attn.add_q_proj.weight": [width, width],
        "transformer_blocks.0.attn.to_q.weight": [width, width],
        "context_embedder.weight": [width, 4096],
    }


CASES: dict[str, tuple[str, Shapes, tuple[str, str]]] = {
    # SD-style UNets: the cross-attention width, then the label embedding, then the text
    # encoders' prefixes.
    "sd15": (
        "sdxl_base_1.0.safetensors",
        {**sd_unet(768), **CLIP_L, **LDM_VAE},
        ("checkpoint", "sd15"),
    ),
    "sd2": ("v1-5-pruned.safetensors", {**sd_unet(1024), **OPEN_CLIP_H}, ("checkpoint", "sd2")),
    "sdxl_base": (
        "sd15_model.safetensors",
        {**sd_unet(2048, adm=2816), **SDXL_TE},
        ("checkpoint", "sdxl"),
    ),
    "sdxl_refiner": (
        "sdxl_base.safetensors",
        {**sd_unet(1280, adm=2560), **REFINER_TE},
        ("checkpoint", "sdxl-refiner"),
    ),
    "sdxl_by_label_embedding": (
        "model.safetensors",
        {
            f"{DM}input_blocks.0.0.weight": [320, 4, 3, 3],
            f"{DM}label_emb.0.0.weight": [1280, 2816],
            **SDXL_TE,
        },
        ("checkpoint", "sdxl"),
    ),
    "sd15_inpaint": (
        "sd15.safetensors",
        {**sd_unet(768, channels=9), **CLIP_L},
        ("checkpoint", "sd15-inpaint"),
    ),
    "sdxl_inpaint": (
        "sdxl.safetensors",
        {**sd_unet(2048, channels=9, adm=2816), **SDXL_TE},
        ("checkpoint", "sdxl-inpaint"),
    ),
    "sdxl_unet_only_ldm": (
        "sd15_unet.safetensors",
        sd_unet(2048, adm=2816),
        ("diffusion_model", "sdxl"),
    ),
    "sdxl_unet_only_diffusers": (
        "diffusion_pytorch_model.safetensors",
        {
            "conv_in.weight": [320, 4, 3, 3],
            "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight": [640, 2048],
            "add_embedding.linear_1.weight": [1280, 2816],
        },
        ("diffusion_model", "sdxl"),
    ),
    # Flux: double/single blocks; only dev embeds the guidance.
    "flux_dev_transformer": ("sdxl_something.safetensors", flux(), ("diffusion_model", "flux")),
    "flux_schnell_transformer": (
        "flux1-dev.safetensors",
        flux(guidance=False),
        ("diffusion_model", "flux-schnell"),
    ),
    "flux_dev_prefixed": ("flux1-schnell.safetensors", flux(DM), ("diffusion_model", "flux")),
    "flux_dev_checkpoint": (
        "flux1-schnell-fp8.safetensors",
        {**flux(DM), **COMFY_TE, "vae.decoder.conv_in.weight": [512, 16, 3, 3]},
        ("checkpoint", "flux"),
    ),
    "flux_dev_diffusers": ("sd3_medium.safetensors", flux_diffusers(), ("diffusion_model", "flux")),
    "flux_schnell_diffusers": (
        "model.safetensors",
        flux_diffusers(guidance=False),
        ("diffusion_model", "flux-schnell"),
    ),
    # SD3: joint blocks; the width says Medium (1536) or Large (2432).
    "sd3_medium_checkpoint": (
        "flux1-dev.safetensors",
        {
            **sd3(1536, DM),
            **COMFY_TE,
            "text_encoders.clip_g.transformer.text_model.final_layer_norm.weight": [1280],
            "first_stage_model.decoder.conv_in.weight": [512, 16, 3, 3],
        },
        ("checkpoint", "sd3"),
    ),
    "sd35_large_transformer": (
        "sd3_medium.safetensors",
        {**sd3(2432, DM), "first_stage_model.decoder.conv_in.weight": [512, 16, 3, 3]},
        ("diffusion_model", "sd3-large"),
    ),
    "sd3_medium_diffusers": (
        "flux_transformer.safetensors",
        sd3_diffusers(1536),
        ("diffusion_model", "sd3"),
    ),
    "sd35_large_diffusers": (
        "model.safetensors",
        sd3_diffusers(2432),
        ("diffusion_model", "sd3-large"),
    ),
    # Video families.
    "svd_checkpoint": (
        "sd21.safetensors",
        {
            **sd_unet(1024, channels=8, adm=768),
            f"{DM}input_blocks.1.1.time_stack.0.attn1.to_q.weight": [320, 320],
            "conditioner.embedders.0.open_clip.model.visual.proj": [1280, 1024],
        },
        ("video", "svd"),
    ),
    "svd_unet_diffusers": (
        "unet.safetensors",
        {
            "conv_in.weight": [320, 8, 3, 3],
            "down_blocks.0.resnets.0.temporal_res_block.conv1.weight": [320, 320, 3, 1, 1],
            "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight": [320, 1024],
        },
        ("diffusion_model", "svd"),
    ),
    "wan_i2v": (
        "flux1-dev.safetensors",
        {
            "patch_embedding.weight": [5120, 36, 1, 2, 2],
            "head.modulation": [1, 2, 5120],
            "blocks.0.self_attn.q.weight": [5120, 5120],
            "img_emb.proj.0.weight": [1280],
            "text_embedding.0.weight": [5120, 4096],
        },
        ("diffusion_model", "wan"),
    ),
    "wan_diffusers": (
        "sdxl.safetensors",
        {
            "patch_embedding.weight": [1536, 16, 1, 2, 2],
            "condition_embedder.time_embedder.linear_1.weight": [1536, 256],
            "blocks.0.attn1.to_q.weight": [1536, 1536],
        },
        ("diffusion_model", "wan"),
    ),
    "ltx_original": (
        "sd15.safetensors",
        {
            f"{DM}adaln_single.emb.timestep_embedder.linear_1.bias": [2048],
            f"{DM}patchify_proj.weight": [2048, 128],
            f"{DM}transformer_blocks.0.attn1.to_q.weight": [2048, 2048],
            "vae.decoder.conv_in.conv.weight": [1024, 128, 3, 3, 3],
        },
        ("diffusion_model", "ltx"),
    ),
    "ltx_diffusers": (
        "model.safetensors",
        {
            "time_embed.emb.timestep_embedder.linear_1.weight": [2048, 256],
            "caption_projection.linear_1.weight": [2048, 4096],
            "proj_in.weight": [2048, 128],
        },
        ("diffusion_model", "ltx"),
    ),
    # Text encoders and VAEs saved alone (ComfyUI's text_encoders/, clip/, vae/).
    "clip_l": (
        "t5xxl_fp16.safetensors",
        {
            "text_model.encoder.layers.0.self_attn.q_proj.weight": [768, 768],
            "text_model.final_layer_norm.weight": [768],
        },
        ("text_encoder", "clip-l"),
    ),
    "clip_g": (
        "clip_l.safetensors",
        {
            "text_model.encoder.layers.0.self_attn.q_proj.weight": [1280, 1280],
            "text_model.final_layer_norm.weight": [1280],
            "text_projection.weight": [1280, 1280],
        },
        ("text_encoder", "clip-g"),
    ),
    "clip_g_open_clip_layout": (
        "model.safetensors",
        {"transformer.resblocks.0.attn.in_proj_weight": [3840, 1280], "ln_final.weight": [1280]},
        ("text_encoder", "clip-g"),
    ),
    "t5xxl": (
        "clip_g.safetensors",
        {
            "shared.weight": [32128, 4096],
            "encoder.block.0.layer.0.SelfAttention.q.weight": [4096, 4096],
            "encoder.final_layer_norm.weight": [4096],
        },
        ("text_encoder", "t5"),
    ),
    "umt5xxl": (
        "t5xxl.safetensors",
        {
            "shared.weight": [256384, 4096],
            "encoder.block.0.layer.0.SelfAttention.q.weight": [4096, 4096],
        },
        ("text_encoder", "umt5"),
    ),
    "vae_4ch": (
        "ae.safetensors",
        {
            "encoder.down.0.block.0.conv1.weight": [128, 128, 3, 3],
            "decoder.up.0.block.0.conv1.weight": [128, 128, 3, 3],
            "decoder.conv_in.weight": [512, 4, 3, 3],
            "quant_conv.weight": [8, 8, 1, 1],
        },
        ("vae", "vae-4ch"),
    ),
    "vae_16ch_flux": (
        "sdxl_vae.safetensors",
        {
            "encoder.down.0.block.0.conv1.weight": [128, 128, 3, 3],
            "decoder.up.0.block.0.conv1.weight": [128, 128, 3, 3],
            "decoder.conv_in.weight": [512, 16, 3, 3],
        },
        ("vae", "vae-16ch"),
    ),
    "vae_16ch_diffusers": (
        "vae-ft-mse.safetensors",
        {
            "encoder.down_blocks.0.resnets.0.conv1.weight": [128, 128, 3, 3],
            "decoder.up_blocks.0.resnets.0.conv1.weight": [128, 128, 3, 3],
            "decoder.conv_in.weight": [512, 16, 3, 3],
        },
        ("vae", "vae-16ch"),
    ),
    # LoRAs: kohya, PEFT, LyCORIS; the family from a family-only block, else widths.
    "lora_kohya_sd15": (
        "sdxl_lora.safetensors",
        {
            f"{KOHYA_SD15_K}.lora_down.weight": [
                8,
                768,
            ],
            f"{KOHYA_SD15_K}.alpha": [],
            "lora_te_text_model_encoder_layers_0_mlp_fc1.lora_down.weight": [8, 768],
        },
        ("lora", "sd15"),
    ),
    "lora_kohya_sdxl": (
        "sd15_lora.safetensors",
        {
            f"{KOHYA_SDXL_K}.lora_down.weight": [
                8,
                2048,
            ],
            "lora_te2_text_model_encoder_layers_0_mlp_fc1.lora_down.weight": [8, 1280],
        },
        ("lora", "sdxl"),
    ),
    "lora_peft_sd15": (
        "flux_lora.safetensors",
        {
            "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.lora_A.weight": [
                4,
                768,
            ],
            "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.lora_B.weight": [
                320,
                4,
            ],
        },
        ("lora", "sd15"),
    ),
    "lycoris_loha_sd15": (
        "sdxl_loha.safetensors",
        {
            f"{KOHYA_SD15_K}.hada_w1_a": [
                320,
                8,
            ],
            f"{KOHYA_SD15_K}.hada_w1_b": [
                8,
                768,
            ],
            f"{KOHYA_SD15_K}.hada_w2_a": [
                320,
                8,
            ],
            f"{KOHYA_SD15_K}.hada_w2_b": [
                8,
                768,
            ],
            f"{KOHYA_SD15_K}.alpha": [],
        },
        ("lora", "sd15"),
    ),
    "lycoris_lokr_sdxl": (
        "sd15_lokr.safetensors",
        {
            # The layer's 2048 inputs are the Kronecker product's 16 × 128.
            f"{KOHYA_SDXL_K}.lokr_w1": [8, 16],
            f"{KOHYA_SDXL_K}.lokr_w2": [80, 128],
            f"{KOHYA_SDXL_K}.alpha": [],
        },
        ("lora", "sdxl"),
    ),
    "lora_kohya_flux": (
        "sdxl_lora.safetensors",
        {
            "lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight": [16, 3072],
            "lora_unet_single_blocks_0_linear1.lora_up.weight": [21504, 16],
            "lora_unet_double_blocks_0_img_attn_qkv.alpha": [],
        },
        ("lora", "flux"),
    ),
    "lora_peft_flux_single_blocks": (
        "sd3_lora.safetensors",
        {
            "transformer.single_transformer_blocks.0.attn.to_q.lora_A.weight": [16, 3072],
            "transformer.single_transformer_blocks.0.attn.to_q.lora_B.weight": [3072, 16],
        },
        ("lora", "flux"),
    ),
    "lora_peft_flux_by_width": (
        "sd3_lora.safetensors",
        {"transformer.transformer_blocks.0.attn.to_q.lora_A.weight": [16, 3072]},
        ("lora", "flux"),
    ),
    "lora_kohya_sd3": (
        "flux_lora.safetensors",
        {"lora_unet_joint_blocks_0_x_block_attn_qkv.lora_down.weight": [16, 1536]},
        ("lora", "sd3"),
    ),
    "lora_peft_sd35_large": (
        "flux_lora.safetensors",
        {
            "transformer.transformer_blocks.0.attn.to_q.lora_A.weight": [16, 2432],
            "transformer.transformer_blocks.0.attn.add_q_proj.lora_A.weight": [16, 2432],
        },
        ("lora", "sd3-large"),
    ),
    "lora_peft_sd3_with_second_text_encoder": (
        "sdxl_lora.safetensors",
        {
            "transformer.joint_blocks.0.x_block.attn.qkv.lora_A.weight": [16, 1536],
            "text_encoder_2.text_model.encoder.layers.0.self_attn.q_proj.lora_A.weight": [16, 1280],
        },
        ("lora", "sd3"),
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_family_from_keys(tmp_path: Path, case: str) -> None:
    name, shapes, (kind, arch) = CASES[case]
    path = write_header_only(tmp_path / name, shapes)
    assert detect_arch(path) == (kind, arch, "safetensors")


def test_tiny_text_encoders_take_their_arch_from_metadata(tmp_path: Path) -> None:
    """A demo-sized CLIP has no telling width; the arch it names in its metadata counts,
    but a real width outranks what the metadata says."""
    tiny = {
        "text_model.encoder.layers.0.self_attn.q_proj.weight": [32, 32],
        "text_model.final_layer_norm.weight": [32],
    }
    assert detect_arch(write_header_only(tmp_path / "a.safetensors", tiny)) == (
        "text_encoder",
        "clip",
        "safetensors",
    )
    named = write_header_only(tmp_path / "b.safetensors", tiny, {"medialab.arch": "clip-g"})
    assert detect_arch(named) == ("text_encoder", "clip-g", "safetensors")
    wide = {**tiny, "text_model.final_layer_norm.weight": [768]}
    lying = write_header_only(tmp_path / "c.safetensors", wide, {"medialab.arch": "clip-g"})
    assert detect_arch(lying) == ("text_encoder", "clip-l", "safetensors")


@pytest.mark.parametrize(
    ("transformer", "expected"),
    [
        ({"guidance_embeds": True}, "flux"),
        ({"guidance_embeds": False}, "flux-schnell"),
    ],
)
def test_flux_folders_dev_or_schnell(tmp_path: Path, transformer: dict, expected: str) -> None:
    folder = tmp_path / "flux"
    (folder / "transformer").mkdir(parents=True)
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "FluxPipeline"}))
    (folder / "transformer" / "config.json").write_text(json.dumps(transformer))
    assert detect_arch(folder) == ("checkpoint", expected, "diffusers")


def test_sd35_large_folder(tmp_path: Path) -> None:
    folder = tmp_path / "sd35"
    (folder / "transformer").mkdir(parents=True)
    (folder / "model_index.json").write_text(
        json.dumps({"_class_name": "StableDiffusion3Pipeline"})
    )
    config = {"attention_head_dim": 64, "num_attention_heads": 38, "num_layers": 38}
    (folder / "transformer" / "config.json").write_text(json.dumps(config))
    assert detect_arch(folder) == ("checkpoint", "sd3-large", "diffusers")


def test_detection_of_a_full_size_header(tmp_path: Path) -> None:
    """An SDXL checkpoint names about 2,500 tensors: the family's few telling keys are
    found among them, every time. (Its speed against a bare header read is
    `benchmarks/detect_header.py`'s: a timing here fails on a busy machine.)"""
    shapes = {**sd_unet(2048, adm=2816), **SDXL_TE}
    for i in range(2500):
        shapes[f"{DM}output_blocks.{i % 9}.1.transformer_blocks.{i}.ff.net.0.proj.weight"] = [
            10240,
            1280,
        ]
    path = write_header_only(tmp_path / "big.safetensors", shapes)
    for _ in range(10):
        assert detect_arch(path) == ("checkpoint", "sdxl", "safetensors")


def test_adapters_fit_the_archs_that_share_their_weights_layout() -> None:
    from medialab_tui.engine.families import FAMILIES

    flux, sdxl, sd3 = FAMILIES["flux"], FAMILIES["sdxl"], FAMILIES["sd3"]
    assert flux.takes_adapter("flux-schnell", "flux") and flux.takes_adapter("flux", "flux-schnell")
    assert not sdxl.takes_adapter("sdxl-refiner", "sdxl")  # another UNet width
    assert not sd3.takes_adapter("sd3-large", "sd3")  # another transformer width
    assert not flux.takes_adapter("flux", "sdxl")
