"""What other tools wrote into an image, read into one shape.

Every reader gives the same normalised settings (SPEC §8's imported `params`:
`prompt`, `negative`, `seed`, `steps`, `cfg`, `sampler`, `width`, `height`, `model`,
`source`, and where the tool says them `scheduler`, `denoise`, `guidance`,
`model_hash`, `loras`) and keeps the raw metadata for the inspector:

- A1111 / Forge / SD.Next: the infotext, in PNG's `parameters` text chunk or in the
  EXIF `UserComment` of a JPEG or WebP;
- ComfyUI: the `prompt` graph (and the `workflow` kept raw);
- InvokeAI: `invokeai_metadata` (3.x and later), `sd-metadata` (2.x);
- SwarmUI: `sui_image_params`, as JSON in the `parameters` chunk or the UserComment;
- medialab: its own `medialab` chunk.

Pillow reads only the metadata here, never the pixels.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import ExifTags, Image

from medialab_tui.interop.comfyui import read_prompt_graph
from medialab_tui.interop.infotext import (
    parse_hashes,
    parse_infotext,
    parse_lora_hashes,
)

SOURCES = ("a1111", "comfyui", "invokeai", "swarmui", "medialab", "none")
PARAM_KEYS = ("prompt", "negative", "seed", "steps", "cfg", "sampler", "width", "height", "model")

# Sampler names of each tool → medialab's (`engine` sampler keys); a name not here is
# kept as the tool wrote it.
_A1111_SAMPLERS = {
    "euler": "euler",
    "euler a": "euler_a",
    "ddim": "ddim",
    "dpm++ 2m": "dpmpp_2m",
    "dpm++ 2m karras": "dpmpp_2m_karras",
    "dpm++ 2m sde karras": "dpmpp_2m_sde_karras",
    "unipc": "unipc",
    "heun": "heun",
    "plms": "pndm",
}
_COMFY_SAMPLERS = {
    "euler": "euler",
    "euler_ancestral": "euler_a",
    "ddim": "ddim",
    "dpmpp_2m": "dpmpp_2m",
    "dpmpp_2m_sde": "dpmpp_2m_sde",
    "uni_pc": "unipc",
    "uni_pc_bh2": "unipc",
    "heun": "heun",
}
_INVOKE_SAMPLERS = {
    "euler": "euler",
    "euler_a": "euler_a",
    "ddim": "ddim",
    "dpmpp_2m": "dpmpp_2m",
    "dpmpp_2m_k": "dpmpp_2m_karras",
    "dpmpp_2m_sde_k": "dpmpp_2m_sde_karras",
    "unipc": "unipc",
    "heun": "heun",
    "pndm": "pndm",
}


@dataclass
class ImageMetadata:
    """An image's generation settings, where they came from, and the raw text chunks."""

    source: str = "none"
    params: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)


def read_image_metadata(path: Path) -> ImageMetadata:
    """The settings `path` (PNG, JPEG or WebP) was made with, as far as it says.

    Raises OSError (Pillow's UnidentifiedImageError included) for a file that is not
    an image Pillow can open."""
    with Image.open(path) as im:
        chunks = (
            {str(k): v for k, v in getattr(im, "text", {}).items()} if im.format == "PNG" else {}
        )
        comment = _user_comment(im)
        size = im.size
    raw: dict[str, Any] = {k: v for k, v in chunks.items() if isinstance(v, str)}
    if comment:
        raw["UserComment"] = comment
    found = _read(raw, comment)
    found.raw = raw
    params = {key: found.params.get(key) for key in PARAM_KEYS}
    params.update({k: v for k, v in found.params.items() if k not in params})
    if params.get("width") is None or params.get("height") is None:
        params["width"], params["height"] = size
    params["source"] = found.source
    found.params = params
    return found


def _read(chunks: dict[str, str], comment: str) -> ImageMetadata:
    own = _json(chunks.get("medialab"))
    if isinstance(own, dict):
        return ImageMetadata("medialab", _from_medialab(own))
    for text in (chunks.get("parameters"), comment):
        swarm = _json(text)
        if isinstance(swarm, dict) and isinstance(swarm.get("sui_image_params"), dict):
            return ImageMetadata("swarmui", _from_swarm(swarm["sui_image_params"]))
    for text in (chunks.get("parameters"), comment):
        if text and _json(text) is None and text.strip():
            return ImageMetadata("a1111", from_infotext(text))
    graph = _json(chunks.get("prompt"))
    if isinstance(graph, dict):
        settings = read_prompt_graph(graph)
        if settings:
            return ImageMetadata("comfyui", _from_comfy(settings))
    invoke = _json(chunks.get("invokeai_metadata"))
    if isinstance(invoke, dict):
        return ImageMetadata("invokeai", _from_invoke(invoke))
    legacy = _json(chunks.get("sd-metadata"))
    if isinstance(legacy, dict) and isinstance(legacy.get("image"), dict):
        return ImageMetadata("invokeai", _from_invoke2(legacy))
    return ImageMetadata("none", {})


def _json(text: str | None) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def _user_comment(im: Image.Image) -> str:
    """The EXIF UserComment (A1111 writes it as `UNICODE\\0` + UTF-16 big-endian)."""
    try:
        exif = im.getexif().get_ifd(ExifTags.IFD.Exif)
    except Exception:  # a damaged EXIF block is no metadata, not a failed import
        return ""
    value = exif.get(ExifTags.Base.UserComment)
    if isinstance(value, str):
        return value.strip("\x00").strip()
    if not isinstance(value, bytes) or len(value) < 8:
        return ""
    prefix, body = value[:8], value[8:]
    if prefix.startswith(b"UNICODE"):
        # Big-endian as the EXIF standard and A1111 write it; some tools write it
        # little-endian, which shows as a zero byte after the first character.
        encoding = "utf-16-le" if len(body) > 1 and body[0] != 0 and body[1] == 0 else "utf-16-be"
        text = body.decode(encoding, "replace")
    else:
        text = body.decode("utf-8", "replace")
    return text.strip("\x00").strip()


def _numbers(
    src: dict[str, Any],
    seed: str,
    steps: str,
    cfg: str,
    width: str = "width",
    height: str = "height",
) -> dict[str, Any]:
    """The seed, steps, CFG and size a tool stores under its own key names, as numbers."""
    return {
        "seed": _number(src.get(seed), int),
        "steps": _number(src.get(steps), int),
        "cfg": _number(src.get(cfg), float),
        "width": _number(src.get(width), int),
        "height": _number(src.get(height), int),
    }


def _number(value: Any, kind: type) -> Any:
    if value is None or value == "":
        return None
    try:
        return kind(float(value)) if kind is int else kind(value)
    except (TypeError, ValueError):
        return None


def from_infotext(text: str) -> dict[str, Any]:
    """A1111 settings from an infotext, normalised."""
    info = parse_infotext(text)
    p = info.params
    sampler = p.get("Sampler", "")
    schedule = p.get("Schedule type", "")
    label = (
        f"{sampler} {schedule}".strip() if schedule and schedule.lower() != "automatic" else sampler
    )
    out: dict[str, Any] = {
        "prompt": info.prompt,
        "negative": info.negative,
        "seed": _number(p.get("Seed"), int),
        "steps": _number(p.get("Steps"), int),
        "cfg": _number(p.get("CFG scale"), float),
        "sampler": _A1111_SAMPLERS.get(
            label.lower(), _A1111_SAMPLERS.get(sampler.lower(), sampler or None)
        ),
        "width": _number(p.get("Size-1"), int),
        "height": _number(p.get("Size-2"), int),
        "model": p.get("Model"),
        "model_hash": p.get("Model hash"),
        "scheduler": schedule or None,
        "denoise": _number(p.get("Denoising strength"), float),
        "guidance": _number(p.get("Distilled CFG Scale") or p.get("Guidance"), float),
    }
    loras = parse_lora_hashes(p.get("Lora hashes"))
    hashes = parse_hashes(p.get("Hashes"))
    for key, digest in hashes.items():
        if key.startswith("lora:"):
            loras.setdefault(key.removeprefix("lora:"), digest)
    if loras:
        out["loras"] = [{"name": name, "hash": digest} for name, digest in loras.items()]
    if not out["model_hash"] and hashes.get("model"):
        out["model_hash"] = hashes["model"]
    kept = {k: v for k, v in out.items() if v not in (None, "")}
    kept["prompt"], kept["negative"] = info.prompt, info.negative
    return kept


def _from_comfy(settings: dict[str, Any]) -> dict[str, Any]:
    out = dict(settings)
    out["sampler"] = _comfy_sampler(out.get("sampler"), out.get("scheduler"))
    out.update(_numbers(out, "seed", "steps", "cfg"))
    if isinstance(out.get("model"), str):
        out["model"] = _stem(out["model"])
    for lora in out.get("loras", []):
        if isinstance(lora.get("name"), str):
            lora["name"] = _stem(lora["name"])
    out.setdefault("negative", "")
    return out


def _comfy_sampler(sampler: Any, scheduler: Any) -> str | None:
    """ComfyUI's sampler and scheduler names (SwarmUI uses them too) as one of ours."""
    name = _COMFY_SAMPLERS.get(str(sampler or ""), str(sampler or "") or None)
    if name in ("dpmpp_2m", "dpmpp_2m_sde") and scheduler == "karras":
        return f"{name}_karras"
    return name


def _stem(name: str) -> str:
    """`SDXL/juggernaut.safetensors` → `juggernaut`: the name a registry lists."""
    leaf = name.replace("\\", "/").rsplit("/", 1)[-1]
    for suffix in (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".gguf"):
        if leaf.lower().endswith(suffix):
            return leaf[: -len(suffix)]
    return leaf


def _from_invoke(meta: dict[str, Any]) -> dict[str, Any]:
    model = meta.get("model") if isinstance(meta.get("model"), dict) else {}
    loras = []
    for entry in meta.get("loras") or []:
        if not isinstance(entry, dict):
            continue
        ref = entry.get("model") or entry.get("lora") or {}
        if isinstance(ref, dict):
            loras.append(
                {
                    "name": ref.get("name") or ref.get("model_name"),
                    "hash": ref.get("hash"),
                    "weight": entry.get("weight"),
                }
            )
    scheduler = str(meta.get("scheduler") or "")
    out: dict[str, Any] = {
        "prompt": meta.get("positive_prompt") or "",
        "negative": meta.get("negative_prompt") or "",
        **_numbers(meta, "seed", "steps", "cfg_scale"),
        "sampler": _INVOKE_SAMPLERS.get(scheduler, scheduler or None),
        "model": model.get("name") or model.get("model_name"),
        "model_hash": model.get("hash"),
        "denoise": _number(meta.get("strength") or meta.get("denoising_strength"), float),
        "guidance": _number(meta.get("guidance"), float),
    }
    if loras:
        out["loras"] = loras
    return {k: v for k, v in out.items() if v is not None}


def _from_invoke2(meta: dict[str, Any]) -> dict[str, Any]:
    image = meta["image"]
    prompt = image.get("prompt")
    if isinstance(prompt, list):
        prompt = " ".join(str(p.get("prompt", "")) for p in prompt if isinstance(p, dict))
    text, _, negative = str(prompt or "").partition("[")
    sampler = str(image.get("sampler") or "")
    out = {
        "prompt": text.strip(),
        "negative": negative.rstrip("]").strip(),
        **_numbers(image, "seed", "steps", "cfg_scale"),
        "sampler": {"k_euler_a": "euler_a", "k_euler": "euler", "k_heun": "heun"}.get(
            sampler, sampler or None
        ),
        "model": meta.get("model_weights"),
        "denoise": _number(image.get("strength"), float),
    }
    return {k: v for k, v in out.items() if v is not None}


def _from_swarm(meta: dict[str, Any]) -> dict[str, Any]:
    scheduler = str(meta.get("scheduler") or "")
    out: dict[str, Any] = {
        "prompt": meta.get("prompt") or "",
        "negative": meta.get("negativeprompt") or "",
        **_numbers(meta, "seed", "steps", "cfgscale"),
        "sampler": _comfy_sampler(meta.get("sampler"), scheduler),
        "model": _stem(str(meta["model"])) if meta.get("model") else None,
        "scheduler": scheduler or None,
        "denoise": _number(meta.get("initimagecreativity"), float),
        "guidance": _number(meta.get("fluxguidancescale"), float),
    }
    names, weights = meta.get("loras") or [], meta.get("loraweights") or []
    if isinstance(names, list) and names:
        out["loras"] = [
            {"name": _stem(str(n)), "weight": _number(w, float)}
            for n, w in zip(names, [*weights, *[None] * len(names)], strict=False)
        ]
    return {k: v for k, v in out.items() if v is not None}


def _from_medialab(meta: dict[str, Any]) -> dict[str, Any]:
    out = {key: meta.get(key) for key in PARAM_KEYS}
    out["negative"] = out.get("negative") or ""
    for key in ("model_hash", "denoise", "guidance", "loras", "stage", "run_id", "job_id"):
        if meta.get(key) is not None:
            out[key] = meta[key]
    if out.get("denoise") is None and meta.get("strength") is not None:
        out["denoise"] = meta["strength"]
    return {k: v for k, v in out.items() if v is not None}
