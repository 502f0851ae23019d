"""Artifact files: PNG metadata chunks and JSON sidecars.

Every file goes through `store.files.atomic_write_bytes` (a temporary name in the
same folder, renamed into place), so a crash never leaves a half-written file
under its real name. PNGs carry two text chunks: `parameters` in the A1111
"infotext" format, which other tools read, and `medialab` with the full stage
parameters and lineage, which `medialab rerun` reads.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from PIL import Image, PngImagePlugin

from medialab_tui.interop.infotext import Unquoted, format_infotext
from medialab_tui.store.files import atomic_write_bytes, atomic_write_text

# Our sampler keys as A1111 1.9+ writes them: the sampler, then its schedule type.
SAMPLER_LABELS: dict[str, tuple[str, str]] = {
    "default": ("Default", ""),
    "euler": ("Euler", ""),
    "euler_a": ("Euler a", ""),
    "ddim": ("DDIM", ""),
    "dpmpp_2m": ("DPM++ 2M", ""),
    "dpmpp_2m_karras": ("DPM++ 2M", "Karras"),
    "unipc": ("UniPC", ""),
    "heun": ("Heun", ""),
    "dpmpp_2m_sde_karras": ("DPM++ 2M SDE", "Karras"),
    "pndm": ("PLMS", ""),
    "flow_euler": ("Euler", "Simple"),
    "flow_euler_karras": ("Euler", "Karras"),
    "flow_euler_stochastic": ("Euler a", "Simple"),
}

# The keys of a generation that every image descending from it carries (`origin`).
GENERATION_KEYS = (
    "prompt",
    "negative",
    "seed",
    "steps",
    "sampler",
    "cfg",
    "guidance",
    "width",
    "height",
    "model",
    "model_hash",
    "model_sha256",
    "loras",
    "strength",
    "stage",
)
# Stages whose own steps, sampler and CFG make the image (the others refine, detail or
# enlarge one, and the infotext names the generation it came from).
GENERATING = ("txt2img", "img2img", "blend")
# Stages that denoise an image they are given.
DENOISING = ("refine", "detail")


def artifact_dir(artifacts_root: Path, run_id: int, job_id: int) -> Path:
    """`<data>/artifacts/<run>/<job>/` (SPEC §7)."""
    return artifacts_root / f"r{run_id}" / f"j{job_id}"


def generation_of(meta: dict[str, Any]) -> dict[str, Any] | None:
    """The generation an output descends from: itself when its stage generated it,
    else its recorded `origin`; None for a file never generated (a user's photo)."""
    if meta.get("stage") in GENERATING and meta.get("steps"):
        return {k: meta[k] for k in GENERATION_KEYS if meta.get(k) is not None}
    origin = meta.get("origin")
    return origin if isinstance(origin, dict) else None


def infotext(meta: dict[str, Any]) -> str:
    """The A1111 `parameters` text of an output: its prompt and negative, then one line
    with the generation's keys (its own, or those of the image it was made from), this
    stage's keys, the LoRA and Civitai hashes, and the version, in A1111's order."""
    stage = meta.get("stage")
    own = stage in GENERATING
    gen = meta if own else generation_of(meta)
    if gen is None and stage in DENOISING:
        # A refine or detail of a picture that was never generated (a user's photo):
        # its own steps, sampler and model made what there is.
        own, gen = True, meta
    gen = gen or {}
    label, schedule = SAMPLER_LABELS.get(str(gen.get("sampler", "")), (gen.get("sampler"), ""))
    guidance = gen.get("guidance")
    settings: list[tuple[str, Any]] = [
        ("Steps", gen.get("steps")),
        ("Sampler", label),
        ("Schedule type", schedule),
        ("CFG scale", gen.get("cfg") if gen.get("cfg") is not None else (1 if guidance else None)),
        ("Distilled CFG Scale", guidance),
        ("Seed", gen.get("seed", meta.get("seed"))),
        ("Size", f"{gen['width']}x{gen['height']}" if gen.get("width") else None),
        ("Model hash", gen.get("model_hash")),
        ("Model", gen.get("model")),
        ("Denoising strength", gen.get("strength") if own else None),
    ]
    if stage == "refine":
        settings += _refine_keys(meta)
    elif stage == "detail":
        settings += [
            ("ADetailer model", meta.get("detector")),
            ("ADetailer prompt", meta.get("detail_prompt") or None),
            ("ADetailer denoising strength", meta.get("strength")),
        ]
    elif stage == "upscale":
        upscaler = str(meta.get("model") or "")
        settings += [
            ("Postprocess upscale by", meta.get("scale")),
            ("Postprocess upscaler", "Lanczos" if upscaler == "lanczos" else upscaler or None),
        ]
    elif stage in ("i2v", "interpolate"):
        settings += [
            ("Video model", meta.get("model") if stage == "i2v" else None),
            ("Frames", meta.get("frames")),
            ("FPS", meta.get("fps_exact") or meta.get("fps")),
        ]
    loras = _loras(gen.get("loras"), None if own else meta.get("loras"))
    settings += [
        ("Lora hashes", ", ".join(f"{x['name']}: {(x.get('sha256') or '')[:12]}" for x in loras)),
        ("ControlNet 0", _controlnet_text(meta.get("control"))),
        ("Version", f"medialab {meta.get('version', '')}".strip()),
        ("Hashes", _civitai_hashes(gen, loras)),
    ]
    # A key a stage sets again (a refine's own strength) is written once, where it
    # first stands.
    kept: dict[str, Any] = {}
    for key, value in settings:
        if value not in (None, "") or key not in kept:
            kept[key] = value
    prompt = str(meta.get("prompt", gen.get("prompt", "")))
    return format_infotext(prompt, _negative(meta, gen), kept.items())


def _negative(meta: dict[str, Any], gen: dict[str, Any]) -> str:
    value = meta.get("negative") if meta.get("negative") is not None else gen.get("negative")
    return str(value or "")


def _refine_keys(meta: dict[str, Any]) -> list[tuple[str, Any]]:
    if meta.get("method") == "hires":
        return [
            ("Denoising strength", meta.get("strength")),
            ("Hires upscale", meta.get("scale")),
            ("Hires steps", meta.get("steps")),
            ("Hires upscaler", "Lanczos"),
        ]
    return [("Refiner", meta.get("model")), ("Denoising strength", meta.get("strength"))]


def _loras(*groups: Any) -> list[dict[str, Any]]:
    """The LoRAs of the generation and of this stage, each once, in order."""
    seen: dict[str, dict[str, Any]] = {}
    for group in groups:
        for lora in group or []:
            if isinstance(lora, dict) and lora.get("name"):
                seen.setdefault(str(lora["name"]), lora)
    return list(seen.values())


def _civitai_hashes(gen: dict[str, Any], loras: list[dict[str, Any]]) -> str | None:
    """Civitai's `Hashes: {"model": AutoV2, "lora:name": AutoV2}`, last and unquoted as
    Civitai's own extension writes it."""
    hashes: dict[str, str] = {}
    if gen.get("model_hash"):
        hashes["model"] = str(gen["model_hash"])
    for lora in loras:
        if lora.get("sha256"):
            hashes[f"lora:{lora['name']}"] = str(lora["sha256"])[:10]
    return Unquoted(json.dumps(hashes, ensure_ascii=False)) if hashes else None


def _controlnet_text(control: dict[str, Any] | None) -> str | None:
    """The sd-webui-controlnet unit line: preprocessor, model [hash], weight, thresholds."""
    if not control:
        return None
    short = (control.get("sha256") or "")[:8]
    model = f"{control['model']} [{short}]" if short else control["model"]
    fields = f"Module: {control['kind']}, Model: {model}, Weight: {control['scale']}"
    if control["kind"] == "canny":
        fields += f", Threshold A: {control['low']}, Threshold B: {control['high']}"
    return fields


def write_png(path: Path, image: Image.Image, meta: dict[str, Any]) -> None:
    """Save `image` atomically with its `parameters` and `medialab` chunks."""
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", infotext(meta))
    info.add_itxt("medialab", json.dumps(meta, sort_keys=True))
    buf = io.BytesIO()
    image.save(buf, format="PNG", pnginfo=info, compress_level=4)
    atomic_write_bytes(path, buf.getvalue())


def write_sidecar(path: Path, meta: dict[str, Any]) -> Path:
    """Write `<name>.json` beside an artifact; returns the sidecar's path."""
    sidecar = path.with_suffix(".json")
    atomic_write_text(sidecar, json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return sidecar


def read_png_meta(path: Path) -> dict[str, Any]:
    """The `medialab` chunk of a PNG we wrote (empty if it has none)."""
    with Image.open(path) as im:
        raw = im.info.get("medialab") or getattr(im, "text", {}).get("medialab")
    return json.loads(raw) if raw else {}


def read_png_meta_quietly(path: Path) -> dict[str, Any]:
    """`read_png_meta`, or empty for a file that is not a PNG of ours (a user's JPEG,
    a damaged chunk): its lineage is then simply unknown."""
    try:
        found = read_png_meta(path)
    except (OSError, ValueError, SyntaxError):
        return {}
    return found if isinstance(found, dict) else {}
