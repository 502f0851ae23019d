"""The pipeline that makes an imported image again, from the settings it carries.

An imported image becomes a `txt2img` with its prompt, negative, seed, steps, CFG (or
Flux guidance), sampler, size and LoRAs. Its model is found in the registry by hash
first (A1111's AutoV2 `Model hash`, sha256 in full, or blake3 as InvokeAI writes it),
then by name; a model found neither way is written as `unknown: <name>`, which `run`
refuses with exit 2, naming it, until the operator registers it or names another.
"""

from __future__ import annotations

from typing import Any

from medialab_tui.engine.stages.base import SAMPLERS
from medialab_tui.store.db import Store

UNKNOWN_MODEL = "unknown: "
# The stage of gallery entries imported from other tools (`interop.importing`).
IMPORT_STAGE = "import"


def _by_hash(store: Store, digest: str, kinds: tuple[str, ...]) -> str | None:
    digest = digest.strip().lower()
    blake = digest.removeprefix("blake3:")
    marks = ",".join("?" * len(kinds))
    with store.reading() as conn:
        if blake != digest:
            row = conn.execute(
                f"SELECT name FROM model WHERE fast_hash = ? AND kind IN ({marks})",
                (blake, *kinds),
            ).fetchone()
        elif len(digest) >= 10 and all(c in "0123456789abcdef" for c in digest):
            row = conn.execute(
                f"SELECT name FROM model WHERE substr(sha256, 1, ?) = ? AND kind IN ({marks})",
                (len(digest), digest, *kinds),
            ).fetchone()
        else:
            row = None
    return str(row[0]) if row else None


def _by_name(store: Store, name: str, kinds: tuple[str, ...]) -> str | None:
    marks = ",".join("?" * len(kinds))
    with store.reading() as conn:
        row = conn.execute(
            f"SELECT name FROM model WHERE lower(name) = lower(?) AND kind IN ({marks})",
            (name, *kinds),
        ).fetchone()
    return str(row[0]) if row else None


def find_model(store: Store, name: str | None, digest: str | None, kinds: tuple[str, ...]) -> str:
    """The registry's name for the model an image names, or `unknown: <name>`."""
    for found in (
        _by_hash(store, digest, kinds) if digest else None,
        _by_name(store, name, kinds) if name else None,
    ):
        if found:
            return found
    label = name or (f"hash {digest}" if digest else "not named in the image")
    return f"{UNKNOWN_MODEL}{label}"


def imported_pipeline(store: Store, params: dict[str, Any], ref: str) -> dict[str, Any]:
    """The pipeline document (a pipeline file's shape) for the imported image `ref`."""
    stage: dict[str, Any] = {
        "type": "txt2img",
        "model": find_model(
            store, params.get("model"), params.get("model_hash"), ("checkpoint", "diffusion_model")
        ),
    }
    for key in ("steps", "cfg", "guidance", "width", "height"):
        if isinstance(params.get(key), int | float) and not isinstance(params[key], bool):
            stage[key] = params[key]
    if params.get("sampler") in SAMPLERS:
        stage["sampler"] = params["sampler"]
    loras = []
    for lora in params.get("loras") or []:
        if not isinstance(lora, dict):
            continue
        entry: dict[str, Any] = {
            "model": find_model(store, lora.get("name"), lora.get("hash"), ("lora",))
        }
        if isinstance(lora.get("weight"), int | float):
            entry["weight"] = lora["weight"]
        loras.append(entry)
    if loras:
        stage["loras"] = loras
    inputs: dict[str, Any] = {"prompts": [str(params.get("prompt") or "")]}
    if params.get("negative"):
        inputs["negative"] = str(params["negative"])
    if isinstance(params.get("seed"), int):
        inputs["seeds"] = [params["seed"]]
    return {"name": f"again {ref}", "inputs": inputs, "stages": [stage]}
