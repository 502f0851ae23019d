"""Stable Diffusion 1.x: one CLIP-L text encoder (768 wide), 4-channel latents."""

from medialab_tui.engine.families.base import IMAGE_STAGES, Family

FAMILY = Family(
    name="sd15",
    title="SD 1.5",
    # Inpainting UNets are detected and listed; medialab does not run them yet.
    archs={"sd15": IMAGE_STAGES, "sd15-inpaint": ()},
    index_classes={"StableDiffusionPipeline": "sd15"},
    checkpoint_keys=((("model.diffusion_model.", "cond_stage_model.transformer."), "sd15"),),
    embedding_keys=("emb_params",),
    context_width=768,
    unet_widths={768: "sd15"},
    inpaint_archs={"sd15": "sd15-inpaint"},
    metadata_prefixes=(
        ("ss_base_model_version", "sd_v1"),
        ("modelspec.architecture", "stable-diffusion-v1"),
    ),
    text_tokens=77,
    step_seconds={"cuda": 0.05, "cpu": 2.0},
    latent_rgb=(
        (
            (0.3512, 0.2297, 0.3227),
            (0.3250, 0.4974, 0.2350),
            (-0.2829, 0.1762, 0.2721),
            (-0.2120, -0.2616, -0.7177),
        ),
        (0.0, 0.0, 0.0),
    ),
)
