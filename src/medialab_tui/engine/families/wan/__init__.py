"""Wan 2.1 / 2.2 image-to-video: a flow-matching video transformer over a causal 3D VAE
(8× smaller in space, 4× in time) with a UMT5 text encoder for the motion prompt;
Wan 2.1 also encodes the image with CLIP. Frames are 4k+1 (the VAE keeps the first
frame and packs every further four into one latent frame), sizes multiples of 16
(the VAE's 8 × the transformer's 2×2 patches). Trained at 81 frames, 16 fps.
"""

from medialab_tui.engine.families.base import VIDEO_STAGES, Family, VideoLimits

FAMILY = Family(
    name="wan",
    title="Wan",
    kind="video",
    archs={"wan": VIDEO_STAGES},
    index_classes={"WanImageToVideoPipeline": "wan"},
    # The original layout (ComfyUI's `diffusion_models/wan2.1_*.safetensors`), then diffusers'.
    model_keys=(
        (("head.modulation", "patch_embedding."), "wan"),
        (("condition_embedder.time_embedder.", "patch_embedding."), "wan"),
    ),
    # Per denoising step of one 512×512 frame (the 14B models).
    step_seconds={"cuda": 0.25, "cpu": 20.0},
    video=VideoLimits(
        size_multiple=16,
        frame_step=4,
        min_frames=5,
        max_frames=121,
        fps_min=8,
        fps_max=30,
        default_fps=16,
        default_cfg=5.0,
        prompt=True,
    ),
)
