"""FLUX.1 (Black Forest Labs): a 12B rectified-flow transformer over 16-channel
latents (8× smaller, packed 2×2 into tokens, so sizes are multiples of 16), read
by CLIP-L (pooled) and T5-XXL (4096 wide). `flux` is dev: guidance-distilled, it
takes a `guidance` embedded in the model instead of classifier-free guidance;
`flux-schnell` is distilled to a few steps and takes neither. Neither reads a
negative prompt."""

from pathlib import Path

from medialab_tui.engine.families.base import (
    FLOW_SAMPLERS,
    Family,
    ImageRules,
    SplitPart,
    component_config,
)

# Blend encodes references with a UNet's VAE scaling; Flux has no UNet.
_STAGES = ("txt2img", "img2img", "refine", "detail")


def _dev_or_schnell(folder: Path, arch: str) -> str:
    """Schnell's transformer has no guidance embedding."""
    guidance = component_config(folder, "transformer").get("guidance_embeds")
    return "flux-schnell" if guidance is False else arch


# dev: 28 steps at guidance 3.5, as Black Forest Labs run it; T5 reads 512 tokens.
_DEV = ImageRules(
    size_multiple=16,
    samplers=FLOW_SAMPLERS,
    steps=28,
    cfg=None,
    guidance=3.5,
    negative=False,
    text_tokens=512,
    label="Flux dev",
)
# schnell: distilled to 4 steps without guidance; T5 reads 256 tokens.
_SCHNELL = ImageRules(
    size_multiple=16,
    samplers=FLOW_SAMPLERS,
    steps=4,
    cfg=None,
    guidance=None,
    negative=False,
    text_tokens=256,
    label="Flux schnell",
)

FAMILY = Family(
    name="flux",
    title="Flux",
    archs={"flux": _STAGES, "flux-schnell": _STAGES},
    # Schnell is dev's transformer without the guidance embedding: LoRAs and ControlNets
    # trained on either fit both.
    adapter_archs={"flux": ("flux-schnell",), "flux-schnell": ("flux",)},
    index_classes={"FluxPipeline": "flux"},
    controlnet_class="FluxControlNetModel",
    control_key="control_image",
    folder_variant=_dev_or_schnell,
    # Black Forest Labs' layout (ComfyUI's), then diffusers'; only dev embeds the guidance.
    model_keys=(
        (("double_blocks.", "guidance_in."), "flux"),
        (("double_blocks.",), "flux-schnell"),
        (
            ("single_transformer_blocks.", "x_embedder.", "time_text_embed.guidance_embedder."),
            "flux",
        ),
        (("single_transformer_blocks.", "x_embedder."), "flux-schnell"),
    ),
    hidden_widths={3072: "flux"},
    lora_prefixes=(
        "lora_unet_double_blocks_",
        "lora_unet_single_blocks_",
        "double_blocks.",
        "single_blocks.",
        "diffusion_model.double_blocks.",
        "diffusion_model.single_blocks.",
        "transformer.single_transformer_blocks.",
        "lora_transformer_single_transformer_blocks_",
    ),
    # dev and schnell differ in the guidance embedding and the schedule's shift (schnell:
    # none), so either loads with the other's folder.
    split_overrides={
        "flux": {
            "transformer": {"guidance_embeds": True},
            "scheduler": {"use_dynamic_shifting": True},
        },
        "flux-schnell": {
            "transformer": {"guidance_embeds": False},
            "scheduler": {"use_dynamic_shifting": False, "shift": 1.0},
        },
    },
    split_parts=(
        SplitPart("text_encoder", "text_encoder", "clip-l", "a CLIP-L text encoder (clip_l)"),
        SplitPart("text_encoder_2", "text_encoder", "t5", "a T5-XXL text encoder (t5xxl)"),
        SplitPart("vae", "vae", "vae-16ch", "a 16-channel VAE (ae)"),
    ),
    context_width=4096,
    metadata_prefixes=(("modelspec.architecture", "flux-1"),),
    # CLIP's 77 tokens only pool; T5 reads the prompt (its limit is the arch's).
    text_tokens=512,
    image=_DEV,
    arch_image={"flux-schnell": _SCHNELL},
    # Per step at 512×512 (a quarter of a megapixel).
    step_seconds={"cuda": 0.35, "cpu": 30.0},
    latent_rgb=(
        (
            (-0.0346, 0.0244, 0.0681),
            (0.0034, 0.0210, 0.0687),
            (0.0275, -0.0668, -0.0433),
            (-0.0174, 0.0160, 0.0617),
            (0.0859, 0.0721, 0.0329),
            (0.0004, 0.0383, 0.0115),
            (0.0405, 0.0861, 0.0915),
            (-0.0236, -0.0185, -0.0259),
            (-0.0245, 0.0250, 0.1180),
            (0.1008, 0.0755, -0.0421),
            (-0.0515, 0.0201, 0.0011),
            (0.0428, -0.0012, -0.0036),
            (0.0817, 0.0765, 0.0749),
            (-0.1264, -0.0522, -0.1103),
            (-0.0280, -0.0881, -0.0499),
            (-0.1262, -0.0982, -0.0778),
        ),
        (-0.0329, -0.0718, -0.0851),
    ),
)
