"""The worker's text stages: `prompt_enhance` writes each variant as a text artifact.

Imports no torch: enhancement is pure Python (`engine/prompts.py`). Every variant
keeps the item's seed, so the images a later stage makes from them differ only by
prompt.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medialab_tui.engine.prompts import PromptError, variants
from medialab_tui.engine.stages.prompt_enhance import PromptEnhanceParams
from medialab_tui.engine.worker.runners import _base_meta, announce
from medialab_tui.store.artifacts import atomic_write_bytes

if TYPE_CHECKING:
    from medialab_tui.engine.worker.main import Worker

SLUG_CHARS = 40


def slug(text: str) -> str:
    """A short file-name-safe form of `text`: lowercase ASCII words joined by hyphens."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    words = re.findall(r"[a-z0-9]+", ascii_text.lower())
    out = ""
    for word in words:
        candidate = f"{out}-{word}" if out else word
        if len(candidate) > SLUG_CHARS:
            break
        out = candidate
    return out or (words[0][:SLUG_CHARS] if words else "prompt")


def run_prompt_enhance(worker: Worker, cmd: dict[str, Any]) -> dict[str, Any]:
    """Write every variant of the item's prompt as `NN-<slug>.txt` with its sidecar."""
    from medialab_tui.engine.worker.main import JobFailed

    item = cmd["item"]
    params = PromptEnhanceParams.model_validate(cmd["params"])
    wildcards = (cmd.get("extras") or {}).get("wildcards") or {}
    seed = int(item.get("seed") or 0)
    worker.check_cancel()
    try:
        made = variants(item.get("prompt", ""), params, seed, wildcards)
    except PromptError as exc:
        raise JobFailed("validation", str(exc)) from None
    base = _base_meta(cmd)
    width = max(2, len(str(len(made) - 1)))
    for index, variant in enumerate(made):
        worker.check_cancel()
        name = f"{index:0{width}d}-{slug(variant.text)}"
        path = Path(cmd["out_dir"]) / f"{name}.txt"
        meta = {
            **base,
            "prompt": variant.text,
            "source_prompt": item.get("prompt", ""),
            "seed": seed,
            "set_choices": variant.choices,
            "variant": variant.number,
            "name": name,
        }
        atomic_write_bytes(path, variant.text.encode("utf-8") + b"\n")
        announce(worker, cmd, path, "text", meta)
        worker.channel.emit("progress", job_id=cmd["job_id"], step=index + 1, total=len(made))
    return {"load_seconds": 0.0, "cache_hit": True}
