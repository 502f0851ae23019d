"""Stable Diffusion 3 / 3.5 (Medium, Large): an MMDiT rectified-flow transformer over
16-channel latents (8× smaller, 2×2 patches, so sizes are multiples of 16), read by
CLIP-L, OpenCLIP-G and T5-XXL (joint context 4096 wide). Classifier-free guidance
and a negative prompt, as SD1.5/SDXL."""

from pathlib import Path

from medialab_tui.engine.families.base import (
    FLOW_SAMPLERS,
    Family,
    ImageRules,
    SplitPart,
    component_config,
)

# Blend encodes references with a UNet's VAE scaling; SD3 has no UNet.
_STAGES = ("txt2img", "img2img", "refine", "detail")

# Hidden width (64 per block) → arch: SD3 and SD3.5 Medium are 24 blocks, Large 38.
_HIDDEN_WIDTHS = {1536: "sd3", 2432: "sd3-large"}


def _medium_or_large(folder: Path, arch: str) -> str:
    config = component_config(folder, "transformer")
    width = config.get("attention_head_dim", 0) * config.get("num_attention_heads", 0)
    return _HIDDEN_WIDTHS.get(width, arch) if isinstance(width, int) else arch


FAMILY = Family(
    name="sd3",
    title="SD3",
    archs={"sd3": _STAGES, "sd3-large": _STAGES},
    index_classes={"StableDiffusion3Pipeline": "sd3"},
    controlnet_class="SD3ControlNetModel",
    # diffusers has SD3 ControlNet pipelines for text-to-image (and inpainting) only.
    control_stages=("txt2img",),
    control_key="control_image",
    folder_variant=_medium_or_large,
    # Stability's MMDiT layout (ComfyUI's), then diffusers'; Large is told by its width.
    model_keys=(
        (("joint_blocks.",), "sd3"),
        (("transformer_blocks.0.attn.add_q_proj.", "pos_embed.proj."), "sd3"),
    ),
    hidden_keys=("x_embedder.proj.weight", "pos_embed.proj.weight"),
    hidden_widths=_HIDDEN_WIDTHS,
    # Checked before SDXL's, whose `text_encoder_2.` an SD3 LoRA may also have.
    lora_prefixes=("lora_unet_joint_blocks_", "joint_blocks.", "transformer.joint_blocks."),
    split_parts=(
        SplitPart("text_encoder", "text_encoder", "clip-l", "a CLIP-L text encoder (clip_l)"),
        SplitPart(
            "text_encoder_2", "text_encoder", "clip-g", "an OpenCLIP-G text encoder (clip_g)"
        ),
        SplitPart("text_encoder_3", "text_encoder", "t5", "a T5-XXL text encoder (t5xxl)"),
        SplitPart("vae", "vae", "vae-16ch", "a 16-channel VAE"),
    ),
    context_width=4096,
    metadata_prefixes=(("modelspec.architecture", "stable-diffusion-v3"),),
    # T5 reads 256 tokens (the pipeline's max_sequence_length); CLIP's 77 are joined to them.
    text_tokens=256,
    # 28 steps at CFG 4.5: between SD3.5 Large's 3.5 and Medium's 5.
    image=ImageRules(size_multiple=16, samplers=FLOW_SAMPLERS, steps=28, cfg=4.5),
    arch_image={
        "sd3-large": ImageRules(
            size_multiple=16, samplers=FLOW_SAMPLERS, steps=28, cfg=3.5, label="SD3.5 Large"
        )
    },
    step_seconds={"cuda": 0.2, "cpu": 15.0},
    latent_rgb=(
        (
            (-0.0922, -0.0175, 0.0749),
            (0.0311, 0.0633, 0.0954),
            (0.1994, 0.0927, 0.0458),
            (0.0856, 0.0339, 0.0902),
            (0.0587, 0.0272, -0.0496),
            (-0.0006, 0.1104, 0.0309),
            (0.0978, 0.0306, 0.0427),
            (-0.0042, 0.1038, 0.1358),
            (-0.0194, 0.0020, 0.0669),
            (-0.0488, 0.0130, -0.0268),
            (0.0922, 0.0988, 0.0951),
            (-0.0278, 0.0524, -0.0542),
            (0.0332, 0.0456, 0.0895),
            (-0.0069, -0.0030, -0.0810),
            (-0.0596, -0.0465, -0.0293),
            (-0.1448, -0.1463, -0.1189),
        ),
        (0.2394, 0.2135, 0.1925),
    ),
)
