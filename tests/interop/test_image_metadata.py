"""Images written by other tools, their settings read into one shape."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import ExifTags, Image, PngImagePlugin

from medialab_tui.interop.readers import read_image_metadata
from medialab_tui.store.artifacts import write_png

A1111 = (
    "a lighthouse, stormy sea\nNegative prompt: blurry\n"
    "Steps: 30, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 5.5, Seed: 77, "
    'Size: 96x64, Model hash: 31e35c80fc, Model: juggernaut, Lora hashes: "salt: 0123456789ab", '
    "Version: f2.0.1"
)

# ComfyUI's default SD1.5 workflow with a LoRA and a hires pass (API form).
COMFY_HIRES = {
    "4": {
        "class_type": "CheckpointLoaderSimple",
        "inputs": {"ckpt_name": "SD15/dream.safetensors"},
    },
    "10": {
        "class_type": "LoraLoader",
        "inputs": {
            "lora_name": "styles/ink.safetensors",
            "strength_model": 0.7,
            "strength_clip": 0.7,
            "model": ["4", 0],
            "clip": ["4", 1],
        },
    },
    "6": {
        "class_type": "CLIPTextEncode",
        "inputs": {"text": "an ink castle, on a hill", "clip": ["10", 1]},
    },
    "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "photo", "clip": ["10", 1]}},
    "5": {
        "class_type": "EmptyLatentImage",
        "inputs": {"width": 512, "height": 768, "batch_size": 1},
    },
    "3": {
        "class_type": "KSampler",
        "inputs": {
            "seed": 99,
            "steps": 20,
            "cfg": 8.0,
            "sampler_name": "euler_ancestral",
            "scheduler": "normal",
            "denoise": 1.0,
            "model": ["10", 0],
            "positive": ["6", 0],
            "negative": ["7", 0],
            "latent_image": ["5", 0],
        },
    },
    "11": {
        "class_type": "LatentUpscale",
        "inputs": {
            "samples": ["3", 0],
            "upscale_method": "nearest-exact",
            "width": 768,
            "height": 1152,
            "crop": "disabled",
        },
    },
    "12": {
        "class_type": "KSampler",
        "inputs": {
            "seed": 100,
            "steps": 12,
            "cfg": 8.0,
            "sampler_name": "dpmpp_2m",
            "scheduler": "karras",
            "denoise": 0.5,
            "model": ["10", 0],
            "positive": ["6", 0],
            "negative": ["7", 0],
            "latent_image": ["11", 0],
        },
    },
    "8": {"class_type": "VAEDecode", "inputs": {"samples": ["12", 0], "vae": ["4", 2]}},
    "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}},
}

# ComfyUI's Flux dev workflow: a custom sampler, guidance through FluxGuidance, a
# prompt from a primitive node.
COMFY_FLUX = {
    "12": {
        "class_type": "UNETLoader",
        "inputs": {"unet_name": "flux1-dev.safetensors", "weight_dtype": "default"},
    },
    "11": {
        "class_type": "DualCLIPLoader",
        "inputs": {
            "clip_name1": "t5xxl_fp16.safetensors",
            "clip_name2": "clip_l.safetensors",
            "type": "flux",
        },
    },
    "30": {
        "class_type": "PrimitiveStringMultiline",
        "inputs": {"value": "a fox in the snow: cinematic"},
    },
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": ["30", 0], "clip": ["11", 0]}},
    "26": {"class_type": "FluxGuidance", "inputs": {"guidance": 3.5, "conditioning": ["6", 0]}},
    "22": {"class_type": "BasicGuider", "inputs": {"model": ["12", 0], "conditioning": ["26", 0]}},
    "25": {"class_type": "RandomNoise", "inputs": {"noise_seed": 555}},
    "16": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}},
    "17": {
        "class_type": "BasicScheduler",
        "inputs": {"scheduler": "simple", "steps": 24, "denoise": 1.0, "model": ["12", 0]},
    },
    "27": {
        "class_type": "EmptySD3LatentImage",
        "inputs": {"width": 1024, "height": 576, "batch_size": 1},
    },
    "13": {
        "class_type": "SamplerCustomAdvanced",
        "inputs": {
            "noise": ["25", 0],
            "guider": ["22", 0],
            "sampler": ["16", 0],
            "sigmas": ["17", 0],
            "latent_image": ["27", 0],
        },
    },
    "8": {"class_type": "VAEDecode", "inputs": {"samples": ["13", 0], "vae": ["10", 0]}},
    "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "flux", "images": ["8", 0]}},
}

INVOKE = {
    "generation_mode": "sdxl_txt2img",
    "positive_prompt": "a red bicycle, studio light",
    "negative_prompt": "text",
    "width": 1024,
    "height": 1024,
    "seed": 4242,
    "steps": 25,
    "cfg_scale": 6,
    "scheduler": "dpmpp_2m_k",
    "model": {
        "key": "abc",
        "hash": "blake3:1234",
        "name": "Juggernaut XL",
        "base": "sdxl",
        "type": "main",
    },
    "loras": [
        {
            "model": {
                "key": "l1",
                "hash": "blake3:99",
                "name": "bike-style",
                "base": "sdxl",
                "type": "lora",
            },
            "weight": 0.6,
        }
    ],
}

SWARM = {
    "sui_image_params": {
        "prompt": "a lighthouse, dusk",
        "negativeprompt": "people",
        "model": "OfficialStableDiffusion/sd_xl_base_1.0",
        "seed": 31337,
        "steps": 30,
        "cfgscale": 7,
        "aspectratio": "1:1",
        "width": 1024,
        "height": 1024,
        "sampler": "dpmpp_2m",
        "scheduler": "karras",
        "loras": ["coast"],
        "loraweights": ["0.8"],
        "swarm_version": "0.9.5.2",
    },
    "sui_extra_data": {"date": "2026-11-30", "generation_time": "1.2 sec"},
}


def _png(path: Path, size: tuple[int, int] = (96, 64), **chunks: str) -> Path:
    info = PngImagePlugin.PngInfo()
    for key, value in chunks.items():
        info.add_text(key, value)
    Image.new("RGB", size, "gray").save(path, pnginfo=info)
    return path


def _with_comment(path: Path, text: str, fmt: str, little_endian: bool = False) -> Path:
    exif = Image.Exif()
    body = text.encode("utf-16-le" if little_endian else "utf-16-be")
    exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.UserComment] = b"UNICODE\x00" + body
    Image.new("RGB", (96, 64), "gray").save(path, format=fmt, exif=exif)
    return path


def test_a1111_png(tmp_path: Path) -> None:
    found = read_image_metadata(_png(tmp_path / "a.png", parameters=A1111))
    assert found.source == "a1111"
    p = found.params
    assert (p["prompt"], p["negative"], p["seed"], p["steps"], p["cfg"]) == (
        "a lighthouse, stormy sea",
        "blurry",
        77,
        30,
        5.5,
    )
    assert p["sampler"] == "dpmpp_2m_karras" and p["scheduler"] == "Karras"
    assert (p["width"], p["height"], p["model"], p["model_hash"]) == (
        96,
        64,
        "juggernaut",
        "31e35c80fc",
    )
    assert p["loras"] == [{"name": "salt", "hash": "0123456789ab"}]
    assert found.raw["parameters"] == A1111


@pytest.mark.parametrize(
    ("fmt", "little_endian"), [("JPEG", False), ("WEBP", False), ("JPEG", True)]
)
def test_a1111_jpeg_and_webp_user_comment(tmp_path: Path, fmt: str, little_endian: bool) -> None:
    path = _with_comment(tmp_path / f"a.{fmt.lower()}", A1111, fmt, little_endian)
    found = read_image_metadata(path)
    assert found.source == "a1111"
    assert found.params["prompt"] == "a lighthouse, stormy sea" and found.params["seed"] == 77


def test_comfyui_hires_graph_reads_the_pass_that_made_the_saved_image(tmp_path: Path) -> None:
    path = _png(tmp_path / "c.png", prompt=json.dumps(COMFY_HIRES), workflow='{"nodes": []}')
    found = read_image_metadata(path)
    p = found.params
    assert found.source == "comfyui"
    assert (p["prompt"], p["negative"]) == ("an ink castle, on a hill", "photo")
    assert (p["seed"], p["steps"], p["cfg"], p["denoise"]) == (100, 12, 8.0, 0.5)
    assert p["sampler"] == "dpmpp_2m_karras" and p["scheduler"] == "karras"
    assert (p["width"], p["height"]) == (768, 1152)
    assert p["model"] == "dream"
    assert p["loras"] == [{"name": "ink", "weight": 0.7}]
    assert json.loads(found.raw["workflow"]) == {"nodes": []}


def test_comfyui_flux_graph(tmp_path: Path) -> None:
    found = read_image_metadata(_png(tmp_path / "f.png", prompt=json.dumps(COMFY_FLUX)))
    p = found.params
    assert found.source == "comfyui"
    assert p["prompt"] == "a fox in the snow: cinematic" and p["negative"] == ""
    assert (p["seed"], p["steps"], p["sampler"], p["scheduler"]) == (555, 24, "euler", "simple")
    assert p["guidance"] == 3.5 and p["model"] == "flux1-dev"
    assert (p["width"], p["height"]) == (1024, 576)
    assert "cfg" not in p or p["cfg"] is None


def test_invokeai_metadata(tmp_path: Path) -> None:
    found = read_image_metadata(_png(tmp_path / "i.png", invokeai_metadata=json.dumps(INVOKE)))
    p = found.params
    assert found.source == "invokeai"
    assert (p["prompt"], p["negative"], p["seed"], p["steps"], p["cfg"]) == (
        "a red bicycle, studio light",
        "text",
        4242,
        25,
        6.0,
    )
    assert p["sampler"] == "dpmpp_2m_karras" and p["model"] == "Juggernaut XL"
    assert p["loras"] == [{"name": "bike-style", "hash": "blake3:99", "weight": 0.6}]


@pytest.mark.parametrize("where", ["png", "jpeg"])
def test_swarmui_params(tmp_path: Path, where: str) -> None:
    text = json.dumps(SWARM)
    if where == "png":
        path = _png(tmp_path / "s.png", parameters=text)
    else:
        path = _with_comment(tmp_path / "s.jpg", text, "JPEG")
    found = read_image_metadata(path)
    p = found.params
    assert found.source == "swarmui"
    assert (p["prompt"], p["negative"], p["seed"], p["cfg"], p["sampler"]) == (
        "a lighthouse, dusk",
        "people",
        31337,
        7.0,
        "dpmpp_2m_karras",
    )
    assert p["model"] == "sd_xl_base_1.0" and p["loras"] == [{"name": "coast", "weight": 0.8}]


def test_medialab_png_reads_its_own_chunk_first(tmp_path: Path) -> None:
    meta = {
        "prompt": "p, with: colon",
        "negative": "",
        "seed": 5,
        "steps": 4,
        "cfg": 7.0,
        "sampler": "euler",
        "width": 64,
        "height": 64,
        "model": "demo-sd15",
        "stage": "txt2img",
    }
    path = tmp_path / "m.png"
    write_png(path, Image.new("RGB", (64, 64)), meta)
    found = read_image_metadata(path)
    assert found.source == "medialab"
    assert {k: found.params[k] for k in meta} == meta


def test_an_image_without_metadata_is_source_none_with_its_size(tmp_path: Path) -> None:
    path = tmp_path / "plain.png"
    Image.new("RGB", (40, 30)).save(path)
    found = read_image_metadata(path)
    assert found.source == "none" and (found.params["width"], found.params["height"]) == (40, 30)
    assert found.params["prompt"] is None


def test_reading_never_changes_the_file(tmp_path: Path) -> None:
    path = _png(tmp_path / "a.png", parameters=A1111)
    before = path.read_bytes()
    read_image_metadata(path)
    assert path.read_bytes() == before
