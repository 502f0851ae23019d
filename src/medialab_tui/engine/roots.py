"""Where models are looked for: the data directory's `models/`, `model_roots`, the
folders ComfyUI's `extra_model_paths.yaml` files name (`comfyui_model_paths`) and the
`models/` layout of A1111/Forge installs (`a1111_roots`). All are read in place.

A shared folder's name suggests a kind (`loras`, `Lora`); a file's keys decide it and
its family (`model_files.detect_arch`), and the hint is used only when they cannot
tell. A yaml that does not parse, a `base_path` that is not there or an install with
no `models/` is a `RootProblem`: one sentence naming the file, the section and the
key, reported by `models scan`, `models list` and `doctor`, while every other root
still loads.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medialab_tui.config import Config, DataDir

if TYPE_CHECKING:
    from medialab_tui.store.db import Store

# The problems of the last scan's roots (a `setting` row), for listings and the TUI.
PROBLEMS_KEY = "models.problems"

# ComfyUI's folder keys (`folder_paths.py`) and the kind each suggests. Keys it maps to
# newer names (`unet`, `clip`) suggest what the new name does.
COMFYUI_KINDS: dict[str, str | None] = {
    "checkpoints": "checkpoint",
    "diffusion_models": "diffusion_model",
    "unet": "diffusion_model",
    "loras": "lora",
    "vae": "vae",
    "vae_approx": "vae",
    "text_encoders": "text_encoder",
    "clip": "text_encoder",
    "clip_vision": "clip_vision",
    "controlnet": "controlnet",
    "t2i_adapter": "controlnet",
    "upscale_models": "upscaler",
    "latent_upscale_models": "upscaler",
    "embeddings": "embedding",
    "hypernetworks": "hypernetwork",
    "diffusers": None,  # folders with model_index.json say what they are
}
# Keys of the yaml that name no model folder (code, and `.yaml` model configs).
COMFYUI_NOT_MODELS = frozenset({"custom_nodes", "configs"})

# An A1111/Forge install: folders under `models/` and the kind each suggests, then the
# folders at the install's top level.
A1111_MODELS: tuple[tuple[str, str], ...] = (
    ("Stable-diffusion", "checkpoint"),
    ("Lora", "lora"),
    ("LyCORIS", "lora"),
    ("VAE", "vae"),
    ("ESRGAN", "upscaler"),
    ("RealESRGAN", "upscaler"),
    ("ControlNet", "controlnet"),
    ("text_encoder", "text_encoder"),  # Forge keeps Flux's CLIP and T5 files here
)
A1111_TOP: tuple[tuple[str, str], ...] = (("embeddings", "embedding"),)


@dataclass(frozen=True)
class Root:
    """A folder models are read from, in place."""

    path: Path
    # The kind the folder's name suggests (None: the files alone say).
    kind: str | None = None
    # Where the root comes from, in words: `data`, `model_roots`, a yaml's
    # `file: section 'x', key 'loras'`, an install's `models/Lora`.
    source: str = ""


@dataclass(frozen=True)
class RootProblem:
    """A configured source of roots that could not be read, with where, as data."""

    file: str
    reason: str
    section: str | None = None
    key: str | None = None

    @property
    def sentence(self) -> str:
        """`/x/extra_model_paths.yaml: section 'comfyui', key 'base_path': names …`."""
        parts = [self.file]
        if self.section is not None:
            parts.append(f"section '{self.section}'" + (f", key '{self.key}'" if self.key else ""))
        elif self.key is not None:
            parts.append(f"key '{self.key}'")
        return ": ".join([*parts, self.reason])

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "section": self.section,
            "key": self.key,
            "reason": self.reason,
            "sentence": self.sentence,
        }

    @classmethod
    def of(cls, value: dict[str, Any]) -> RootProblem:
        return cls(
            file=str(value.get("file", "")),
            reason=str(value.get("reason", "")),
            section=value.get("section"),
            key=value.get("key"),
        )


def root_problems(store: Store) -> list[RootProblem]:
    """What the last scan could not read among the sources of roots (no SQLAlchemy:
    `models list` calls it)."""
    text = store.setting(PROBLEMS_KEY)
    try:
        values = json.loads(text) if text else []
    except ValueError:
        return []
    return [RootProblem.of(v) for v in values if isinstance(v, dict)]


@dataclass
class Roots:
    """Every root, in the order names are given out, and what could not be read."""

    roots: list[Root]
    problems: list[RootProblem]


def all_roots(data: DataDir, config: Config) -> Roots:
    """`<data>/models`, then `model_roots`, the ComfyUI yamls' folders (`is_default`
    sections first, as ComfyUI puts them first) and the A1111 installs' folders."""
    roots = [Root(data.models, source="data")]
    roots += [Root(Path(p), source="model_roots") for p in config.model_roots]
    problems: list[RootProblem] = []
    comfy: list[tuple[bool, Root]] = []
    config_file = str(data.config_path)
    for i, yaml_file in enumerate(config.comfyui_model_paths):
        if not Path(yaml_file).is_file():
            what = _not_there(Path(yaml_file)).replace("is not a folder", "is not a file")
            problems.append(
                RootProblem(
                    config_file, f"names {yaml_file}, which {what}", key=f"comfyui_model_paths[{i}]"
                )
            )
            continue
        found, trouble = comfyui_roots(Path(yaml_file))
        comfy += found
        problems += trouble
    roots += [root for default, root in comfy if default]
    roots += [root for default, root in comfy if not default]
    for i, install in enumerate(config.a1111_roots):
        found_a, trouble_a = a1111_roots(Path(install), config_file, f"a1111_roots[{i}]")
        roots += found_a
        problems += trouble_a
    return Roots(roots, problems)


def _not_there(path: Path) -> str:
    return "is not a folder" if path.exists() else "does not exist"


def comfyui_roots(yaml_file: Path) -> tuple[list[tuple[bool, Root]], list[RootProblem]]:
    """The folders an `extra_model_paths.yaml` names, each with `is_default` and the kind
    its key suggests, read as ComfyUI reads them (`utils/extra_config.py`): each section's
    `base_path` (`~` and `$VARS` expanded, relative to the yaml's folder), then each
    key's value, one folder a line, under `base_path` or else relative to the yaml."""
    import yaml

    name = str(yaml_file)
    try:
        text = yaml_file.read_text(encoding="utf-8")
    except FileNotFoundError:
        return [], [RootProblem(name, "does not exist")]
    except (OSError, UnicodeDecodeError) as exc:
        return [], [RootProblem(name, f"cannot be read ({getattr(exc, 'strerror', None) or exc})")]
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        what = getattr(exc, "problem", None) or "invalid YAML"
        return [], [RootProblem(name, f"does not parse as YAML{where} ({what})")]
    if config is None:
        return [], []
    if not isinstance(config, dict):
        return [], [RootProblem(name, "must be a mapping of sections (like `comfyui:`)")]
    yaml_dir = yaml_file.resolve().parent
    found: list[tuple[bool, Root]] = []
    problems: list[RootProblem] = []
    for section_name, section in config.items():
        section_key = str(section_name)
        if section is None:
            continue
        if not isinstance(section, dict):
            problems.append(
                RootProblem(name, "must be a mapping of folder keys", section=section_key)
            )
            continue
        roots, trouble = _comfyui_section(name, yaml_dir, section_key, section)
        found += roots
        problems += trouble
    return found, problems


def _comfyui_section(
    name: str, yaml_dir: Path, section_key: str, section: dict[Any, Any]
) -> tuple[list[tuple[bool, Root]], list[RootProblem]]:
    def problem(key: str, reason: str) -> RootProblem:
        return RootProblem(name, reason, section=section_key, key=key)

    base: Path | None = None
    if "base_path" in section:
        raw = section["base_path"]
        if not isinstance(raw, str) or not raw.strip():
            return [], [problem("base_path", "must be a folder path")]
        base = Path(os.path.expandvars(os.path.expanduser(raw)))
        if not base.is_absolute():
            base = yaml_dir / base
        if not base.is_dir():
            return [], [problem("base_path", f"names {base}, which {_not_there(base)}")]
    default = section.get("is_default", False)
    found: list[tuple[bool, Root]] = []
    problems: list[RootProblem] = []
    for key_name, value in section.items():
        key = str(key_name)
        if key in ("base_path", "is_default") or key in COMFYUI_NOT_MODELS:
            continue
        if not isinstance(value, str):
            problems.append(problem(key, "must be a folder path, or several, one a line"))
            continue
        for line in value.split("\n"):
            entry = line.strip()
            if not entry:
                continue
            folder = Path(os.path.expandvars(os.path.expanduser(entry)))
            if not folder.is_absolute():
                folder = (base or yaml_dir) / folder
            where = f"{name}: section '{section_key}', key '{key}'"
            found.append(
                (bool(default), Root(Path(os.path.normpath(folder)), COMFYUI_KINDS.get(key), where))
            )
    return found, problems


def a1111_roots(
    install: Path, config_file: str = "config.toml", key: str = "a1111_roots"
) -> tuple[list[Root], list[RootProblem]]:
    """The model folders of an A1111/Forge install (`models/Stable-diffusion`, `Lora`…,
    and `embeddings` at its top); a folder that is not there is passed over. The
    problems name the config file and the key that gave the install."""
    if not install.is_dir():
        return [], [
            RootProblem(config_file, f"names {install}, which {_not_there(install)}", key=key)
        ]
    models = install / "models"
    if not models.is_dir():
        reason = f"names {install}, which has no models/ folder (not an A1111 or Forge install)"
        return [], [RootProblem(config_file, reason, key=key)]
    roots = [
        Root(models / sub, kind, f"{install}: models/{sub}")
        for sub, kind in A1111_MODELS
        if (models / sub).is_dir()
    ]
    roots += [
        Root(install / sub, kind, f"{install}: {sub}")
        for sub, kind in A1111_TOP
        if (install / sub).is_dir()
    ]
    return roots, []
