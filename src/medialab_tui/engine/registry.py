"""The model registry: find model files under the roots, identify and hash them.

Architecture comes from a file's keys, never its name (`model_files.detect_arch`).
Hashes are cached by (path, size, mtime), so rescanning unchanged folders costs a
`stat` per entry. Pickle formats are listed but marked unsafe: they can run code.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import blake3
from sqlmodel import select

from medialab_tui.config import Config, DataDir
from medialab_tui.engine.model_files import (
    controlnet_folder_config,
    detect_arch,
    is_opencv_cascade,
)
from medialab_tui.errors import InputError
from medialab_tui.store.db import Store
from medialab_tui.store.tables import Model

WEIGHT_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")
# Detectors for the `detail` stage: OpenCV cascades, listed only when they are one.
DETECTOR_SUFFIXES = (".xml",)
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
_CHUNK = 8 * 1024 * 1024


@dataclass
class ScanResult:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: int = 0


def model_roots(data: DataDir, config: Config) -> list[Path]:
    """`<data>/models` first, then the configured extra roots."""
    return [data.models, *config.model_roots]


def find_model_paths(root: Path) -> list[Path]:
    """Diffusers folders (with `model_index.json`), ControlNet folders, single weight
    files and OpenCV cascades (detectors) under root."""
    if not root.is_dir():
        return []
    found: list[Path] = []
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            entries = sorted(folder.iterdir())
        except OSError:
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if entry.is_dir():
                if (entry / "model_index.json").is_file() or controlnet_folder_config(entry):
                    found.append(entry)
                else:
                    stack.append(entry)
            elif entry.suffix.lower() in WEIGHT_SUFFIXES:
                found.append(entry)
            elif entry.suffix.lower() in DETECTOR_SUFFIXES and is_opencv_cascade(entry):
                found.append(entry)
    return sorted(found)


def _files_of(path: Path) -> list[Path]:
    """The files whose bytes make a model: one file, or a folder's files in order."""
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))


def _stat(path: Path) -> tuple[int, float]:
    files = _files_of(path)
    stats = [f.stat() for f in files]
    return sum(s.st_size for s in stats), max((s.st_mtime for s in stats), default=0.0)


def hash_model(path: Path) -> tuple[str, str]:
    """(blake3 for identity, sha256) over the model's bytes; AutoV2 is sha256[:10]."""
    fast = blake3.blake3(max_threads=blake3.blake3.AUTO)
    slow = hashlib.sha256()
    base = path if path.is_dir() else path.parent
    for file in _files_of(path):
        if path.is_dir():
            # A folder's hash covers names too, so moving a file inside it shows.
            name = str(file.relative_to(base)).encode()
            fast.update(name)
            slow.update(name)
        with file.open("rb") as fh:
            while chunk := fh.read(_CHUNK):
                fast.update(chunk)
                slow.update(chunk)
    return fast.hexdigest(), slow.hexdigest()


def _unique_name(path: Path, root: Path, taken: set[str]) -> str:
    name = path.stem if path.is_file() else path.name
    if name not in taken:
        return name
    rel = path.relative_to(root) if path.is_relative_to(root) else path
    candidate = str(rel.with_suffix("") if path.is_file() else rel)
    return candidate if candidate not in taken else str(path)


def scan(
    store: Store, data: DataDir, config: Config, *, demo: frozenset[str] = frozenset()
) -> ScanResult:
    """Bring the registry in line with the files under the model roots."""
    result = ScanResult()
    with store.read() as s:
        known = {m.path: m for m in s.exec(select(Model)).all()}
    taken = {m.name for m in known.values()}
    seen: set[str] = set()
    for root in model_roots(data, config):
        for path in find_model_paths(root):
            key = str(path)
            seen.add(key)
            size, mtime = _stat(path)
            row = known.get(key)
            if row is not None and row.size == size and row.mtime == mtime:
                result.unchanged += 1
                continue
            try:
                kind, arch, fmt = detect_arch(path)
            except (ValueError, OSError):
                # A corrupt file is listed as broken, not a reason to stop the scan.
                kind, arch, fmt = "broken", "unknown", path.suffix.lstrip(".") or "folder"
            fast, sha = hash_model(path)
            with store.write() as s:
                if row is None:
                    name = _unique_name(path, root, taken)
                    taken.add(name)
                    row = Model(name=name, kind=kind, arch=arch, format=fmt, path=key)
                    result.added.append(name)
                else:
                    row = s.get(Model, row.id)
                    assert row is not None
                    result.updated.append(row.name)
                row.kind, row.arch, row.format = kind, arch, fmt
                row.size, row.mtime, row.fast_hash, row.sha256 = size, mtime, fast, sha
                row.safe = fmt != "pickle"
                row.demo = row.demo or row.name in demo
                s.add(row)
                store.record(s, "model.scan", "model", row.id, name=row.name, path=key)
    gone = [m for p, m in known.items() if p not in seen]
    if gone:
        with store.write() as s:
            for m in gone:
                row = s.get(Model, m.id)
                if row is not None:
                    s.delete(row)
                    store.record(s, "model.remove", "model", m.id, name=m.name, path=m.path)
                    result.removed.append(m.name)
    return result


def list_models(store: Store, kind: str | None = None) -> list[Model]:
    with store.read() as s:
        query = select(Model).order_by(Model.kind, Model.name)
        if kind:
            query = query.where(Model.kind == kind)
        return list(s.exec(query).all())


def resolve(store: Store, ref: str, *, kinds: tuple[str, ...] = ()) -> Model:
    """A model by registry name, path, or hash prefix; `InputError` when unknown."""
    with store.read() as s:
        row = s.exec(select(Model).where(Model.name == ref)).first()
        if row is None and ("/" in ref or ref.endswith(WEIGHT_SUFFIXES + DETECTOR_SUFFIXES)):
            path = Path(ref).expanduser()
            if not path.exists():
                raise InputError(f"model path {ref} does not exist")
            row = s.exec(select(Model).where(Model.path == str(path.resolve()))).first()
            if row is None:
                kind, arch, fmt = detect_arch(path)
                row = Model(
                    name=path.stem,
                    kind=kind,
                    arch=arch,
                    format=fmt,
                    path=str(path.resolve()),
                    safe=fmt != "pickle",
                )
        if row is None and len(ref) >= 6 and all(c in "0123456789abcdef" for c in ref.lower()):
            low = ref.lower()
            matches = s.exec(
                select(Model).where(Model.sha256.startswith(low) | Model.fast_hash.startswith(low))
            ).all()
            if len(matches) > 1:
                raise InputError(f"model hash prefix {ref} matches {len(matches)} models")
            row = matches[0] if matches else None
    if row is None:
        raise InputError(
            f"unknown model '{ref}' (see `medialab models list`; `medialab models demo` "
            "writes the demo models)"
        )
    if kinds and row.kind not in kinds:
        raise InputError(f"model '{ref}' is a {row.kind}, not a {' or '.join(kinds)}")
    if not row.safe and not row.allowed:
        raise InputError(
            f"model '{ref}' is a pickle file ({Path(row.path).suffix}), which can run code; "
            "convert it to .safetensors or allow it explicitly"
        )
    return row
