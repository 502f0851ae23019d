"""Stable Diffusion 2.x: OpenCLIP-H text encoder (1024 wide). Detected and listed;
medialab does not run it yet (no loader)."""

from medialab_tui.engine.families.base import Family

FAMILY = Family(
    name="sd2",
    title="SD 2",
    archs={"sd2": (), "sd2-inpaint": ()},
    checkpoint_keys=((("model.diffusion_model.", "cond_stage_model.model."), "sd2"),),
    context_width=1024,
    unet_widths={1024: "sd2"},
    inpaint_archs={"sd2": "sd2-inpaint"},
    metadata_prefixes=(
        ("ss_base_model_version", "sd_v2"),
        ("modelspec.architecture", "stable-diffusion-v2"),
    ),
)
