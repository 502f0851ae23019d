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

from medialab_tui.store.files import atomic_write_bytes, atomic_write_text

SAMPLER_LABELS = {
    "default": "Default",
    "euler": "Euler",
    "euler_a": "Euler a",
    "ddim": "DDIM",
    "dpmpp_2m": "DPM++ 2M",
    "dpmpp_2m_karras": "DPM++ 2M Karras",
    "unipc": "UniPC",
    "heun": "Heun",
    "dpmpp_2m_sde_karras": "DPM++ 2M SDE Karras",
    "pndm": "PLMS",
}


def artifact_dir(artifacts_root: Path, run_id: int, job_id: int) -> Path:
    """`<data>/artifacts/<run>/<job>/` (SPEC §7)."""
    return artifacts_root / f"r{run_id}" / f"j{job_id}"


def infotext(meta: dict[str, Any]) -> str:
    """The A1111 `parameters` text: prompt, negative, then a settings line."""
    lines = [str(meta.get("prompt", ""))]
    if meta.get("negative"):
        lines.append(f"Negative prompt: {meta['negative']}")
    settings: list[tuple[str, Any]] = [
        ("Steps", meta.get("steps")),
        ("Sampler", SAMPLER_LABELS.get(str(meta.get("sampler", "")), meta.get("sampler"))),
        ("CFG scale", meta.get("cfg")),
        ("Seed", meta.get("seed")),
        ("Size", f"{meta['width']}x{meta['height']}" if meta.get("width") else None),
        ("Model hash", meta.get("model_hash")),
        ("Model", meta.get("model")),
        ("Denoising strength", meta.get("strength")),
        ("Hires upscale", meta.get("scale")),
        ("Lora hashes", _lora_hashes(meta.get("loras"))),
        ("ControlNet 0", _controlnet_text(meta.get("control"))),
        ("Version", f"medialab {meta.get('version', '')}".strip()),
    ]
    lines.append(", ".join(f"{k}: {v}" for k, v in settings if v not in (None, "")))
    return "\n".join(lines)


def _lora_hashes(loras: list[dict[str, Any]] | None) -> str | None:
    """A1111's `Lora hashes: "name: <sha256[:12]>, ..."`."""
    if not loras:
        return None
    return '"' + ", ".join(f"{x['name']}: {(x.get('sha256') or '')[:12]}" for x in loras) + '"'


def _controlnet_text(control: dict[str, Any] | None) -> str | None:
    """The sd-webui-controlnet unit line: preprocessor, model [hash], weight, thresholds."""
    if not control:
        return None
    short = (control.get("sha256") or "")[:8]
    model = f"{control['model']} [{short}]" if short else control["model"]
    fields = f"Module: {control['kind']}, Model: {model}, Weight: {control['scale']}"
    if control["kind"] == "canny":
        fields += f", Threshold A: {control['low']}, Threshold B: {control['high']}"
    return f'"{fields}"'


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
