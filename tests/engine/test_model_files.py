"""Telling model files apart from their metadata, without torch."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from medialab_tui.engine.model_files import detect_arch, read_safetensors_header

SRC = Path(__file__).resolve().parents[2] / "src"


def write_tensors(path: Path, shapes: dict[str, tuple[int, ...]]) -> Path:
    """A real safetensors file with tiny zero tensors of the given shapes."""
    save_file({name: np.zeros(shape, dtype=np.float16) for name, shape in shapes.items()}, path)
    return path


def write_header(path: Path, header: bytes, length: int | None = None) -> Path:
    path.write_bytes(struct.pack("<Q", len(header) if length is None else length) + header)
    return path


def diffusers_folder(root: Path, index: dict) -> Path:
    root.mkdir()
    (root / "model_index.json").write_text(json.dumps(index))
    return root


UNET = "model.diffusion_model.input_blocks.0.0.weight"
KOHYA_SD15_CROSS_ATTENTION = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k"

SAFETENSORS_CASES = {
    "sd15_checkpoint": (
        {
            UNET: (1,),
            "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight": (1,),
            "first_stage_model.encoder.conv_in.weight": (1,),
        },
        ("checkpoint", "sd15", "safetensors"),
    ),
    "sdxl_checkpoint": (
        {
            UNET: (1,),
            "conditioner.embedders.0.transformer.text_model.final_layer_norm.weight": (1,),
            "conditioner.embedders.1.model.ln_final.weight": (1,),
        },
        ("checkpoint", "sdxl", "safetensors"),
    ),
    "sdxl_refiner": (
        {UNET: (1,), "conditioner.embedders.0.model.ln_final.weight": (1,)},
        ("checkpoint", "sdxl-refiner", "safetensors"),
    ),
    "sd2_checkpoint": (
        {UNET: (1,), "cond_stage_model.model.ln_final.weight": (1,)},
        ("checkpoint", "sd2", "safetensors"),
    ),
    "kohya_lora_sd15": (
        {
            KOHYA_SD15_CROSS_ATTENTION + ".lora_down.weight": (4, 768),
            "lora_te_text_model_encoder_layers_0_mlp_fc1.alpha": (),
        },
        ("lora", "sd15", "safetensors"),
    ),
    "kohya_lora_sdxl": (
        {
            "lora_unet_input_blocks_4_1_proj_in.lora_down.weight": (4, 640),
            "lora_te1_text_model_encoder_layers_0_mlp_fc1.lora_down.weight": (4, 768),
        },
        ("lora", "sdxl", "safetensors"),
    ),
    "peft_lora_sdxl": (
        {
            "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.lora_A.weight": (
                4,
                2048,
            ),
            "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.lora_B.weight": (
                640,
                4,
            ),
        },
        ("lora", "sdxl", "safetensors"),
    ),
    "lora_without_cross_attention": (
        {"lora_unet_mid_block_resnets_0_conv1.lora_down.weight": (4, 1280)},
        ("lora", "unknown", "safetensors"),
    ),
    "vae_original_layout": (
        {
            "encoder.down.0.block.0.conv1.weight": (1,),
            "decoder.up.0.block.0.conv1.weight": (1,),
            "quant_conv.weight": (1,),
        },
        ("vae", "unknown", "safetensors"),
    ),
    "vae_diffusers_layout": (
        {
            "encoder.down_blocks.0.resnets.0.conv1.weight": (1,),
            "decoder.up_blocks.0.resnets.0.conv1.weight": (1,),
        },
        ("vae", "unknown", "safetensors"),
    ),
    "controlnet_original_sd15": (
        {
            "control_model.input_hint_block.0.weight": (1,),
            "control_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": (320, 768),
        },
        ("controlnet", "sd15", "safetensors"),
    ),
    "controlnet_diffusers_sdxl": (
        {
            "controlnet_cond_embedding.conv_in.weight": (1,),
            "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight": (640, 2048),
        },
        ("controlnet", "sdxl", "safetensors"),
    ),
    "esrgan_old_arch": (
        {"model.0.weight": (1,), "model.1.sub.0.RDB1.conv1.0.weight": (1,)},
        ("upscaler", "esrgan", "safetensors"),
    ),
    "esrgan_rrdbnet": (
        {"conv_first.weight": (1,), "body.0.rdb1.conv1.weight": (1,)},
        ("upscaler", "esrgan", "safetensors"),
    ),
    "esrgan_compact": (
        {"body.0.weight": (1,), "body.1.weight": (1,)},
        ("upscaler", "esrgan", "safetensors"),
    ),
    "embedding_sd15": ({"emb_params": (2, 768)}, ("embedding", "sd15", "safetensors")),
    "embedding_sdxl": (
        {"clip_l": (2, 768), "clip_g": (2, 1280)},
        ("embedding", "sdxl", "safetensors"),
    ),
    "unknown": ({"transformer.blocks.0.weight": (1,)}, ("unknown", "unknown", "safetensors")),
}


@pytest.mark.parametrize("case", sorted(SAFETENSORS_CASES))
def test_detect_arch_from_safetensors_keys(tmp_path: Path, case: str) -> None:
    shapes, expected = SAFETENSORS_CASES[case]
    # A misleading name: detection must come from the keys alone.
    path = write_tensors(tmp_path / "sdxl_lora_vae_4x-checkpoint.safetensors", shapes)
    assert detect_arch(path) == expected


def test_empty_safetensors_is_unknown(tmp_path: Path) -> None:
    path = write_header(tmp_path / "empty.safetensors", b'{"__metadata__": {"format": "pt"}}')
    assert detect_arch(path) == ("unknown", "unknown", "safetensors")


def test_header_is_read_without_the_tensor_data(tmp_path: Path) -> None:
    path = write_tensors(tmp_path / "model.safetensors", {"body.0.weight": (64, 64)})
    (length,) = struct.unpack("<Q", path.read_bytes()[:8])
    # Cut the tensor bytes off: the header alone must still be readable.
    os.truncate(path, 8 + length)
    header = read_safetensors_header(path)
    assert header["body.0.weight"]["shape"] == [64, 64]
    assert header["body.0.weight"]["dtype"] == "F16"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x01\x02", "too short"),
        (struct.pack("<Q", 200 * 1024 * 1024) + b"{}", "header claims"),
        (struct.pack("<Q", 1000) + b"{}", "header claims"),
        (struct.pack("<Q", 4) + b"\xff\xfe{}", "not JSON"),
        (struct.pack("<Q", 5) + b"nope!", "not JSON"),
        (struct.pack("<Q", 2) + b"[]", "not an object"),
    ],
)
def test_corrupt_safetensors_raise_a_clear_error(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "broken.safetensors"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message):
        read_safetensors_header(path)
    with pytest.raises(ValueError, match="broken.safetensors"):
        detect_arch(path)


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("dreamshaper_8.ckpt", "checkpoint"),
        ("add_detail_LoRA.pt", "lora"),
        ("4x-UltraSharp.pth", "upscaler"),
        ("RealESRGAN_x4plus.pth", "upscaler"),
        ("vae-ft-mse-840000.ckpt", "vae"),
        ("control_v11p_sd15_canny.pth", "controlnet"),
        ("easynegative_embedding.pt", "embedding"),
        ("pytorch_model.bin", "unknown"),
    ],
)
def test_pickle_files_are_never_opened(tmp_path: Path, name: str, kind: str) -> None:
    # The file does not exist: a guess that tried to read it would fail.
    assert detect_arch(tmp_path / name) == (kind, "unknown", "pickle")


def test_other_files_are_unknown(tmp_path: Path) -> None:
    assert detect_arch(tmp_path / "flux1-dev-Q4.gguf") == ("unknown", "unknown", "gguf")


@pytest.mark.parametrize(
    ("index", "expected"),
    [
        ({"_class_name": "StableDiffusionPipeline"}, ("checkpoint", "sd15", "diffusers")),
        ({"_class_name": "StableDiffusionXLPipeline"}, ("checkpoint", "sdxl", "diffusers")),
        (
            {
                "_class_name": "StableDiffusionXLImg2ImgPipeline",
                "text_encoder": [None, None],
                "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
            },
            ("checkpoint", "sdxl-refiner", "diffusers"),
        ),
        (
            {
                "_class_name": "StableDiffusionXLImg2ImgPipeline",
                "text_encoder": ["transformers", "CLIPTextModel"],
            },
            ("checkpoint", "sdxl", "diffusers"),
        ),
        ({"_class_name": "FluxPipeline"}, ("checkpoint", "flux", "diffusers")),
        ({"_class_name": "StableDiffusion3Pipeline"}, ("checkpoint", "sd3", "diffusers")),
        # A pipeline no family claims keeps its class name.
        (
            {"_class_name": "KandinskyV22Pipeline"},
            ("checkpoint", "kandinskyv22pipeline", "diffusers"),
        ),
    ],
)
def test_detect_arch_of_diffusers_folders(tmp_path: Path, index: dict, expected: tuple) -> None:
    assert detect_arch(diffusers_folder(tmp_path / "model", index)) == expected


def test_folder_without_model_index_is_unknown(tmp_path: Path) -> None:
    assert detect_arch(tmp_path) == ("unknown", "unknown", "diffusers")


def test_broken_model_index_raises(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "model_index.json").write_text("{not json")
    with pytest.raises(ValueError, match="model index"):
        detect_arch(folder)


def test_importing_model_files_does_not_import_torch() -> None:
    code = (
        "import sys, medialab_tui.engine.model_files; "
        "heavy = ('torch', 'diffusers', 'transformers', 'safetensors'); "
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
