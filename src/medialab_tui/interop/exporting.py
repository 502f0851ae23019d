"""`medialab export`: artifacts copied out of the data directory, metadata intact.

An export copies each artifact's file byte for byte (a PNG keeps its `parameters` and
`medialab` chunks, an mp4 its `comment` tag) with its JSON sidecar beside it, into a
folder or one zip file. `strip=True` writes copies that carry no metadata instead:
images re-saved from their pixels (PNG text chunks and EXIF left behind; a JPEG keeps
its quantisation, a WebP is written lossless), videos remuxed without their tags (the
frames are not re-encoded), and no sidecars. A video's first-frame thumbnail is the
gallery's and stays behind.

Files are named `<artifact>-<name>` (`a12-00-s7.png`); a name already taken in the
folder gets `-2`, `-3`… and nothing there is ever replaced. A zip that exists is
replaced only with `force=True`. Every file is written atomically (`store.files`).
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from medialab_tui.errors import InputError
from medialab_tui.store import queries
from medialab_tui.store.db import Store
from medialab_tui.store.files import atomic_write_bytes, atomic_write_with
from medialab_tui.store.ids import parse_ref
from medialab_tui.store.views import ArtifactView

# Already compressed: stored in a zip as they are.
_STORED = (".png", ".jpg", ".jpeg", ".webp", ".mp4", ".mov", ".mkv", ".webm")


@dataclass(frozen=True)
class Exported:
    """One artifact written out: its ref and the files (or zip members) made for it."""

    artifact: str
    files: tuple[str, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        return {"artifact": self.artifact, "files": list(self.files)}


def artifacts_of(store: Store, refs: Iterable[str]) -> list[ArtifactView]:
    """The artifacts `refs` name, in the order named, each once: an artifact (`a7`)
    itself, a job (`j40`) or a run (`r12`) all of its artifacts.

    An id the store does not know, or a run or job with no artifacts, is an
    `InputError` naming it."""
    found: dict[int, ArtifactView] = {}
    for ref in refs:
        kind, ident = parse_ref(ref)
        view = queries.find(store, ref).view  # NotFound (exit 2) names the id
        if kind == "artifact":
            assert isinstance(view, ArtifactView)
            views = [view]
        else:
            views = [
                a
                for a in queries.run_artifacts(store, view.run_id if kind == "job" else ident)
                if kind == "run" or a.job_id == ident
            ]
            if not views:
                raise InputError(f"{kind} {ref.strip()} has no artifacts to export")
        for a in views:
            found.setdefault(a.id, a)
    return list(found.values())


def stripped(view: ArtifactView) -> bytes:
    """The artifact's file without its metadata (see the module's docstring)."""
    path = Path(view.path)
    if view.kind == "video":
        return _remux_without_tags(path)
    if view.kind != "image":
        return path.read_bytes()  # a text has no metadata but its sidecar
    from PIL import Image

    with Image.open(path) as im:
        fmt = im.format or "PNG"
        im.load()
        # Nothing read from the file is written back but the transparency (part of the
        # picture): no text chunks, EXIF, XMP or ICC profile.
        im.info = {k: v for k, v in im.info.items() if k == "transparency"}
        options: dict[str, Any] = {}
        if fmt == "JPEG":
            options["quality"] = "keep"  # the original's quantisation tables
        elif fmt == "WEBP":
            options["lossless"] = True
        buf = io.BytesIO()
        im.save(buf, format=fmt, **options)
    return buf.getvalue()


def _remux_without_tags(path: Path) -> bytes:
    """The video's packets in a new mp4 with no container or stream tags (no comment)."""
    import av

    buf = io.BytesIO()
    with av.open(str(path)) as source, av.open(buf, "w", format="mp4") as target:
        streams = [s for s in source.streams if s.type in ("video", "audio")]
        mapped = {s.index: target.add_stream_from_template(s) for s in streams}
        for out in mapped.values():
            out.metadata.clear()
        for packet in source.demux(streams):
            if packet.dts is None:
                continue  # the demuxer's end-of-stream marker
            packet.stream = mapped[packet.stream.index]
            target.mux(packet)
    return buf.getvalue()


def _contents(view: ArtifactView, strip: bool) -> list[tuple[str, Callable[[], bytes]]]:
    """(file name, contents) of what one artifact exports: its file, then its sidecar."""
    path = Path(view.path)
    name = f"{view.ref}-{path.name}"
    if strip:
        return [(name, lambda: stripped(view))]
    parts: list[tuple[str, Callable[[], bytes]]] = [(name, path.read_bytes)]
    sidecar = path.with_suffix(".json")
    if sidecar.is_file():
        parts.append((f"{view.ref}-{sidecar.name}", sidecar.read_bytes))
    return parts


def _numbered(name: str, n: int) -> str:
    """`a1-x.png` → `a1-x-2.png`; a sidecar's `.json` and a thumbnail's `.thumb.png`
    keep the same stem as their file."""
    stem, dot, suffix = name.partition(".")
    return f"{stem}-{n}{dot}{suffix}"


def export_artifacts(
    views: list[ArtifactView],
    target: Path,
    *,
    strip: bool = False,
    force: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> list[Exported]:
    """Write `views` into the folder `target` (made when missing) or, when it ends in
    `.zip`, into that zip; one result per artifact.

    Refused with an `InputError`, before anything is written: an artifact whose file
    is gone, a zip that exists (without `force`), a folder that is a file."""
    for view in views:
        if not Path(view.path).is_file():
            raise InputError(f"the file of {view.ref} is missing: {view.path}")
    if target.suffix.lower() == ".zip":
        if target.is_dir():
            raise InputError(f"{target} is a folder, not a zip file")
        if target.exists() and not force:
            raise InputError(f"{target} already exists; --force replaces it")
        if not target.parent.is_dir():
            raise InputError(f"{target.parent} does not exist")
        return _to_zip(views, target, strip, force, progress)
    if target.exists() and not target.is_dir():
        raise InputError(f"{target} is a file, not a folder (a zip file ends in .zip)")
    return _to_folder(views, target, strip, progress)


def _to_folder(
    views: list[ArtifactView],
    folder: Path,
    strip: bool,
    progress: Callable[[int, int], None] | None,
) -> list[Exported]:
    folder.mkdir(parents=True, exist_ok=True)
    results = []
    for done, view in enumerate(views, 1):
        parts = [(name, read()) for name, read in _contents(view, strip)]
        n = 1
        while True:
            names = [name if n == 1 else _numbered(name, n) for name, _ in parts]
            if not any((folder / name).exists() for name in names):
                try:
                    written = _write_all(folder, names, [data for _, data in parts])
                except FileExistsError:
                    pass  # taken meanwhile: try the next number
                else:
                    results.append(Exported(view.ref, written))
                    break
            n += 1
        if progress is not None:
            progress(done, len(views))
    return results


def _write_all(folder: Path, names: list[str], contents: list[bytes]) -> tuple[str, ...]:
    """Write every file, none replacing another; on a clash none of them stays."""
    written: list[Path] = []
    try:
        for name, data in zip(names, contents, strict=True):
            path = folder / name
            atomic_write_bytes(path, data, exclusive=True)
            written.append(path)
    except FileExistsError:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    return tuple(str(p) for p in written)


def _to_zip(
    views: list[ArtifactView],
    target: Path,
    strip: bool,
    force: bool,
    progress: Callable[[int, int], None] | None,
) -> list[Exported]:
    results: list[Exported] = []

    def fill(fh: BinaryIO) -> None:
        taken: set[str] = set()
        with zipfile.ZipFile(fh, "w") as archive:
            for done, view in enumerate(views, 1):
                parts = _contents(view, strip)
                n = 1
                while any((name if n == 1 else _numbered(name, n)) in taken for name, _ in parts):
                    n += 1
                names = []
                for name, read in parts:
                    member = name if n == 1 else _numbered(name, n)
                    method = (
                        zipfile.ZIP_STORED
                        if Path(member).suffix.lower() in _STORED
                        else zipfile.ZIP_DEFLATED
                    )
                    archive.writestr(member, read(), compress_type=method)
                    taken.add(member)
                    names.append(member)
                results.append(Exported(view.ref, tuple(names)))
                if progress is not None:
                    progress(done, len(views))

    try:
        atomic_write_with(target, fill, exclusive=not force)
    except FileExistsError:
        raise InputError(f"{target} already exists; --force replaces it") from None
    return results
