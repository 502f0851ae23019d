"""LTX-Video image-to-video: a video transformer over a VAE that is 32× smaller in
space and 8× in time, with a T5 text encoder for the motion prompt. Frames are 8k+1,
sizes multiples of 32; up to 257 frames, made for 24–30 fps.

Folders saved as the text-to-video, image-to-video or condition pipeline hold the
same components; all three load as image-to-video.
"""

from medialab_tui.engine.families.base import VIDEO_STAGES, Family, VideoLimits

FAMILY = Family(
    name="ltx",
    title="LTX-Video",
    kind="video",
    archs={"ltx": VIDEO_STAGES},
    index_classes={
        "LTXImageToVideoPipeline": "ltx",
        "LTXConditionPipeline": "ltx",
        "LTXPipeline": "ltx",
    },
    # The original layout (Lightricks' single files, VAE included), then diffusers'.
    model_keys=(
        (("adaln_single.", "patchify_proj."), "ltx"),
        (("time_embed.emb.", "caption_projection.", "proj_in."), "ltx"),
    ),
    # Per denoising step of one 512×512 frame.
    step_seconds={"cuda": 0.01, "cpu": 0.8},
    video=VideoLimits(
        size_multiple=32,
        frame_step=8,
        min_frames=9,
        max_frames=257,
        fps_min=8,
        fps_max=60,
        default_fps=24,
        default_cfg=3.0,
        prompt=True,
    ),
)
