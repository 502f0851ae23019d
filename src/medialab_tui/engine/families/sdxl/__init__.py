"""Stable Diffusion XL, base and refiner: two text encoders (2048 wide together),
size/crop micro-conditioning. The refiner only refines."""

from medialab_tui.engine.families.base import IMAGE_STAGES, Family


def _base_or_refiner(index: dict, arch: str) -> str:
    """The refiner ships without the first (CLIP-L) text encoder; an SDXL base saved
    as an img2img pipeline keeps it."""
    if arch == "sdxl-refiner" and (index.get("text_encoder") or [None])[0] is not None:
        return "sdxl"
    return arch


FAMILY = Family(
    name="sdxl",
    title="SDXL",
    # Inpainting UNets are detected and listed; medialab does not run them yet.
    archs={"sdxl": IMAGE_STAGES, "sdxl-refiner": ("refine",), "sdxl-inpaint": ()},
    index_classes={
        "StableDiffusionXLPipeline": "sdxl",
        "StableDiffusionXLImg2ImgPipeline": "sdxl-refiner",
    },
    index_variant=_base_or_refiner,
    checkpoint_keys=(
        (("conditioner.embedders.1.",), "sdxl"),
        # The refiner conditions on OpenCLIP-G alone, stored in the open_clip
        # layout (a base's first embedder is CLIP-L, under ".transformer.").
        (("conditioner.embedders.0.model.",), "sdxl-refiner"),
    ),
    refiners=("sdxl-refiner", "sdxl"),
    lora_prefixes=("lora_te1_", "lora_te2_", "text_encoder_2."),
    embedding_keys=("clip_l", "clip_g"),
    context_width=2048,
    # The refiner cross-attends to OpenCLIP-G alone (1280 wide); its size/crop/aesthetic
    # conditioning is 2560 wide, the base's size/crop one 2816.
    unet_widths={2048: "sdxl", 1280: "sdxl-refiner"},
    adm_widths={2816: "sdxl", 2560: "sdxl-refiner"},
    inpaint_archs={"sdxl": "sdxl-inpaint"},
    text_time=True,
    metadata_prefixes=(
        ("ss_base_model_version", "sdxl"),
        ("modelspec.architecture", "stable-diffusion-xl"),
    ),
    text_tokens=77,
    step_seconds={"cuda": 0.15, "cpu": 6.0},
    latent_rgb=(
        (
            (0.3651, 0.4232, 0.4341),
            (-0.2533, -0.0042, 0.1068),
            (0.1076, 0.1111, -0.0362),
            (-0.3165, -0.2492, -0.2188),
        ),
        (0.1084, -0.0175, -0.0011),
    ),
)
