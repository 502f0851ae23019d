"""Images as other tools write them (their metadata, real formats), for the import tests."""

from __future__ import annotations

from pathlib import Path

from PIL import ExifTags, Image, PngImagePlugin

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


def png_with(path: Path, size: tuple[int, int] = (96, 64), **chunks: str) -> Path:
    info = PngImagePlugin.PngInfo()
    for key, value in chunks.items():
        info.add_text(key, value)
    Image.new("RGB", size, "gray").save(path, pnginfo=info)
    return path


def jpeg_or_webp_with(path: Path, text: str, fmt: str, little_endian: bool = False) -> Path:
    exif = Image.Exif()
    body = text.encode("utf-16-le" if little_endian else "utf-16-be")
    exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.UserComment] = b"UNICODE\x00" + body
    Image.new("RGB", (96, 64), "gray").save(path, format=fmt, exif=exif)
    return path
