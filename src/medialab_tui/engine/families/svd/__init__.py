"""Stable Video Diffusion: image → video, conditioned on a CLIP image embedding, the
frame rate, a motion bucket and the noise added to the image; no text prompt.

Diffusers asks for sizes that are multiples of 8. SVD is trained at 14 frames and
SVD-XT at 25 (the UNet's `num_frames`), at 6–24 fps; other counts work, less well
the further they are from those.
"""

from medialab_tui.engine.families.base import VIDEO_STAGES, Family, VideoLimits

FAMILY = Family(
    name="svd",
    title="Stable Video Diffusion",
    kind="video",
    archs={"svd": VIDEO_STAGES},
    index_classes={"StableVideoDiffusionPipeline": "svd"},
    # A UNet with temporal layers: `time_stack` in the original layout, temporal
    # ResNet blocks in diffusers'.
    model_keys=(
        (("input_blocks.1.1.time_stack.",), "svd"),
        (("down_blocks.0.resnets.0.temporal_res_block.",), "svd"),
    ),
    # Per denoising step of one 512×512 frame.
    step_seconds={"cuda": 0.03, "cpu": 1.5},
    video=VideoLimits(
        size_multiple=8,
        frame_step=1,
        min_frames=2,
        max_frames=64,
        fps_min=6,
        fps_max=24,
        default_fps=7,
        default_cfg=3.0,
        motion=True,
    ),
)
