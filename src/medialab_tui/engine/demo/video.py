"""Tiny random-weight image-to-video demo models, one per video family.

``write_demo_videos`` writes three diffusers folders into the models directory:

* ``demo-svd``: a Stable Video Diffusion pipeline (spatio-temporal UNet, temporal
  VAE decoder, CLIP image encoder at SVD's fixed 224×224 input);
* ``demo-wan-i2v``: a Wan 2.1 image-to-video pipeline (video transformer, causal 3D
  VAE, UMT5 text encoder, CLIP image encoder);
* ``demo-ltx-i2v``: an LTX-Video image-to-video pipeline (video transformer, video
  VAE, T5 text encoder).

Their components are shaped like diffusers' own pipeline tests' dummy components,
smaller where that keeps the build fast. The tokenizers are made here, offline: a
`tokenizers` Unigram model over a generated vocabulary (every lowercase letter,
digit and common punctuation mark, alone and word-initial), wrapped as transformers'
fast T5 tokenizer. Weights come from a fixed seed through exact operations only
(`weights.seeded`), so the files are byte-identical on every run. The output is
abstract noise.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medialab_tui.engine.demo.publish import MARKER_FILE, publish_pipeline
from medialab_tui.engine.demo.weights import seeded

if TYPE_CHECKING:
    from diffusers import DiffusionPipeline

DEMO_SVD = "demo-svd"
DEMO_WAN = "demo-wan-i2v"
DEMO_LTX = "demo-ltx-i2v"

_TEXT_WIDTH = 32
# SVD resizes every input to 224×224 for its image encoder, whatever the model's.
_SVD_IMAGE_SIZE = 224

_EXPECTED_FILES: dict[str, tuple[str, ...]] = {
    DEMO_SVD: (
        "model_index.json",
        "unet/diffusion_pytorch_model.safetensors",
        "vae/diffusion_pytorch_model.safetensors",
        "image_encoder/model.safetensors",
        "feature_extractor/preprocessor_config.json",
        "scheduler/scheduler_config.json",
        MARKER_FILE,
    ),
    DEMO_WAN: (
        "model_index.json",
        "transformer/diffusion_pytorch_model.safetensors",
        "vae/diffusion_pytorch_model.safetensors",
        "text_encoder/model.safetensors",
        "tokenizer/tokenizer.json",
        "image_encoder/model.safetensors",
        "image_processor/preprocessor_config.json",
        "scheduler/scheduler_config.json",
        MARKER_FILE,
    ),
    DEMO_LTX: (
        "model_index.json",
        "transformer/diffusion_pytorch_model.safetensors",
        "vae/diffusion_pytorch_model.safetensors",
        "text_encoder/model.safetensors",
        "tokenizer/tokenizer.json",
        "scheduler/scheduler_config.json",
        MARKER_FILE,
    ),
}


def write_demo_videos(models_dir: Path) -> list[Path]:
    """Write the three video demo folders into ``models_dir`` unless they are complete."""
    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    builds = {DEMO_SVD: _build_svd, DEMO_WAN: _build_wan, DEMO_LTX: _build_ltx}
    return [
        publish_pipeline(models_dir / name, is_complete_video_demo, build)
        for name, build in builds.items()
    ]


def is_complete_video_demo(folder: Path) -> bool:
    """True when ``folder`` holds every file of the video demo it is named after."""
    expected = _EXPECTED_FILES.get(folder.name)
    return expected is not None and all((folder / rel).is_file() for rel in expected)


# --- the three pipelines ------------------------------------------------------------


def _build_svd() -> tuple[DiffusionPipeline, str]:
    from diffusers import (
        AutoencoderKLTemporalDecoder,
        EulerDiscreteScheduler,
        StableVideoDiffusionPipeline,
        UNetSpatioTemporalConditionModel,
    )
    from transformers import CLIPImageProcessor

    unet = seeded(
        UNetSpatioTemporalConditionModel,
        sample_size=32,
        in_channels=8,  # the noisy latents and the image's latents, stacked
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        # Attention only at the lower resolution (diffusers' test model has it at the
        # higher one too): a step on dozens of frames stays a fraction of a second.
        down_block_types=("DownBlockSpatioTemporal", "CrossAttnDownBlockSpatioTemporal"),
        up_block_types=("CrossAttnUpBlockSpatioTemporal", "UpBlockSpatioTemporal"),
        cross_attention_dim=_TEXT_WIDTH,
        num_attention_heads=(4, 8),
        num_frames=14,
        # fps, motion bucket and noise augmentation, 32 numbers each.
        addition_time_embed_dim=32,
        projection_class_embeddings_input_dim=3 * 32,
    )
    vae = seeded(
        AutoencoderKLTemporalDecoder,
        in_channels=3,
        out_channels=3,
        block_out_channels=(32, 64),
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        latent_channels=4,
    )
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        interpolation_type="linear",
        num_train_timesteps=1000,
        prediction_type="v_prediction",
        sigma_max=700.0,
        sigma_min=0.002,
        steps_offset=1,
        timestep_spacing="leading",
        timestep_type="continuous",
        use_karras_sigmas=True,
    )
    pipe = StableVideoDiffusionPipeline(
        vae=vae,
        image_encoder=_image_encoder(_TEXT_WIDTH, _SVD_IMAGE_SIZE, patch=32),
        unet=unet,
        scheduler=scheduler,
        feature_extractor=CLIPImageProcessor(crop_size=_SVD_IMAGE_SIZE, size=_SVD_IMAGE_SIZE),
    )
    return pipe, "svd"


def _build_wan() -> tuple[DiffusionPipeline, str]:
    from diffusers import (
        AutoencoderKLWan,
        FlowMatchEulerDiscreteScheduler,
        WanImageToVideoPipeline,
        WanTransformer3DModel,
    )
    from transformers import CLIPImageProcessor, UMT5Config, UMT5EncoderModel

    image_width = 4
    tokenizer = t5_tokenizer()
    text_encoder = seeded(UMT5EncoderModel, config=UMT5Config(**t5_config(tokenizer)))
    transformer = seeded(
        WanTransformer3DModel,
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=12,
        in_channels=36,  # 16 noisy latents + 4 mask + 16 image latents
        out_channels=16,
        text_dim=_TEXT_WIDTH,
        freq_dim=256,
        ffn_dim=32,
        num_layers=2,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        rope_max_seq_len=32,
        image_dim=image_width,
    )
    vae = seeded(
        AutoencoderKLWan,
        base_dim=3,
        z_dim=16,
        dim_mult=[1, 1, 1, 1],
        num_res_blocks=1,
        temperal_downsample=[False, True, True],
    )
    pipe = WanImageToVideoPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        image_encoder=_image_encoder(image_width, 32, patch=4),
        image_processor=CLIPImageProcessor(crop_size=32, size=32),
        transformer=transformer,
        vae=vae,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=5.0),
    )
    return pipe, "wan"


def _build_ltx() -> tuple[DiffusionPipeline, str]:
    from diffusers import (
        AutoencoderKLLTXVideo,
        FlowMatchEulerDiscreteScheduler,
        LTXImageToVideoPipeline,
        LTXVideoTransformer3DModel,
    )
    from transformers import T5Config, T5EncoderModel

    tokenizer = t5_tokenizer()
    text_encoder = seeded(T5EncoderModel, config=T5Config(**t5_config(tokenizer)))
    transformer = seeded(
        LTXVideoTransformer3DModel,
        in_channels=8,
        out_channels=8,
        patch_size=1,
        patch_size_t=1,
        num_attention_heads=4,
        attention_head_dim=8,
        cross_attention_dim=_TEXT_WIDTH,
        num_layers=1,
        caption_channels=_TEXT_WIDTH,
    )
    vae = seeded(
        AutoencoderKLLTXVideo,
        in_channels=3,
        out_channels=3,
        latent_channels=8,
        block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8),
        layers_per_block=(1, 1, 1, 1, 1),
        decoder_layers_per_block=(1, 1, 1, 1, 1),
        spatio_temporal_scaling=(True, True, False, False),
        decoder_spatio_temporal_scaling=(True, True, False, False),
        decoder_inject_noise=(False, False, False, False, False),
        upsample_residual=(False, False, False, False),
        upsample_factor=(1, 1, 1, 1),
        timestep_conditioning=False,
        patch_size=1,
        patch_size_t=1,
        encoder_causal=True,
        decoder_causal=False,
    )
    pipe = LTXImageToVideoPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        transformer=transformer,
    )
    return pipe, "ltx"


# --- shared parts -------------------------------------------------------------------


def _image_encoder(width: int, image_size: int, patch: int) -> Any:
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    config = CLIPVisionConfig(
        hidden_size=width,
        projection_dim=width,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=image_size,
        intermediate_size=16,
        patch_size=patch,
    )
    return seeded(CLIPVisionModelWithProjection, config=config)


def t5_config(tokenizer: Any) -> dict[str, Any]:
    """A two-layer T5 encoder as wide as the demo transformers' text input."""
    return {
        "vocab_size": len(tokenizer),
        "d_model": _TEXT_WIDTH,
        "d_kv": 8,
        "d_ff": 37,
        "num_layers": 2,
        "num_heads": 4,
        "relative_attention_num_buckets": 8,
        "dropout_rate": 0.0,
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "decoder_start_token_id": tokenizer.pad_token_id,
    }


def _t5_vocab() -> list[tuple[str, float]]:
    """A Unigram vocabulary in T5's layout (pad, end, unknown first): every lowercase
    letter, digit and punctuation mark alone and after the word marker ▁, scored so
    that the word-initial piece wins."""
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    for char in string.ascii_lowercase + string.digits + string.punctuation:
        pieces += [(f"▁{char}", -3.0), (char, -4.0)]
    return pieces


def t5_tokenizer() -> Any:
    from transformers import T5Tokenizer

    # T5Tokenizer is transformers' fast tokenizer over a `tokenizers` Unigram model.
    return T5Tokenizer(vocab=_t5_vocab(), extra_ids=0, model_max_length=512)
