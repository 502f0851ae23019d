"""Pipeline documents on disk: files saved from the builder and versioned presets.

A preset is a folder under `<data>/presets/` named after the pipeline, holding one
`v<N>.toml` per save; saving never replaces a version, so every earlier one can
be loaded again. Plain files and no Textual: the builder calls this from thread
workers, and loads a preset like any pipeline file (`engine.pipeline`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w

from medialab_tui.store.files import atomic_write_text

VERSION_FILE = re.compile(r"v(\d+)\.toml")


def slug(name: str) -> str:
    """A pipeline name as a file or folder name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "pipeline"


def pipeline_toml(document: Mapping[str, Any]) -> str:
    """A pipeline document (the shape of a TOML file) as TOML text."""
    return tomli_w.dumps(document)


def write_pipeline(path: Path, document: Mapping[str, Any]) -> None:
    """Write a pipeline document to `path`, replacing what is there, atomically."""
    atomic_write_text(path, pipeline_toml(document))


@dataclass(frozen=True)
class PresetVersion:
    """One saved version of a preset: `<root>/<name>/v<number>.toml`."""

    name: str
    number: int
    path: Path

    @property
    def label(self) -> str:
        return f"{self.name}  v{self.number}"


class Presets:
    """The presets under `root`, each a folder of numbered versions."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def save(self, name: str, document: Mapping[str, Any]) -> PresetVersion:
        """Save `document` as the next version of the preset `name`; earlier versions stay."""
        folder = self.root / slug(name)
        text = pipeline_toml(document)
        number = max((v.number for v in self.versions(name)), default=0) + 1
        while True:
            version = PresetVersion(folder.name, number, folder / f"v{number}.toml")
            try:
                atomic_write_text(version.path, text, exclusive=True)
                return version
            except FileExistsError:  # another builder saved this version meanwhile
                number += 1

    def versions(self, name: str | None = None) -> list[PresetVersion]:
        """Every version of the preset `name` (of all presets when None), by name,
        newest version first."""
        pattern = f"{slug(name)}/v*.toml" if name is not None else "*/v*.toml"
        found = [
            PresetVersion(path.parent.name, int(match.group(1)), path)
            for path in self.root.glob(pattern)
            if (match := VERSION_FILE.fullmatch(path.name))
        ]
        return sorted(found, key=lambda v: (v.name, -v.number))
