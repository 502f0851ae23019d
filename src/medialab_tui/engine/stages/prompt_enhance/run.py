"""The worker's text stages: `prompt_enhance` writes each variant as a text artifact.

Imports no torch: enhancement is pure Python (`prompts.py` beside this file). Every variant
keeps the item's seed, so the images a later stage makes from them differ only by
prompt.
"""

from __future__ import annotations

import re
import unicodedata

from medialab_tui.engine.stages.prompt_enhance.prompts import PromptError, variants
from medialab_tui.engine.stages.prompt_enhance.spec import PromptEnhanceParams
from medialab_tui.engine.worker.context import JobContext, JobFailed, Timings
from medialab_tui.store.artifacts import atomic_write_bytes

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


def run(job: JobContext, params: PromptEnhanceParams) -> Timings:
    """Write every variant of the item's prompt as `NN-<slug>.txt` with its sidecar."""
    seed = int(job.item.seed or 0)
    job.check_cancel()
    try:
        made = variants(job.item.prompt, params, seed, job.extras.wildcards or {})
    except PromptError as exc:
        raise JobFailed("validation", str(exc)) from None
    base = job.base_meta(params)
    width = max(2, len(str(len(made) - 1)))
    for index, variant in enumerate(made):
        job.check_cancel()
        name = f"{index:0{width}d}-{slug(variant.text)}"
        path = job.out_dir / f"{name}.txt"
        meta = {
            **base,
            "prompt": variant.text,
            "source_prompt": job.item.prompt,
            "seed": seed,
            "set_choices": variant.choices,
            "variant": variant.number,
            "name": name,
        }
        atomic_write_bytes(path, variant.text.encode("utf-8") + b"\n")
        job.announce(path, "text", meta)
        job.progress(index + 1, len(made))
    return {"load_seconds": 0.0, "cache_hit": True}
