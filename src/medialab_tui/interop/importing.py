"""`medialab import`: images made by other tools (or by medialab) into the gallery.

Each image is copied byte for byte into the data directory (the original is only
read), identified by its content (blake3), and indexed with the settings its metadata
names (`interop.readers`): gallery entries of `stage = "import"` whose `params` carry
the normalised settings and `source`, with the raw metadata kept under `metadata` for
the inspector. The same content imported again, under any name, is recognised and not
copied twice.

One import is one run (`name = "import"`, already succeeded) with a job per image, so
an imported image has the run, job and artifact ids every other artifact has.
"""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import blake3
from PIL import Image, UnidentifiedImageError

from medialab_tui.config import DataDir
from medialab_tui.errors import InputError
from medialab_tui.interop.readers import read_image_metadata
from medialab_tui.interop.recipe import IMPORT_STAGE
from medialab_tui.store.artifacts import artifact_dir, write_sidecar
from medialab_tui.store.db import Store
from medialab_tui.store.files import atomic_write_bytes

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
STAGE = IMPORT_STAGE
# An image larger than this is refused (a decompression bomb is not a picture).
MAX_PIXELS = 268_435_456


@dataclass(frozen=True)
class Imported:
    """What happened to one file: `imported`, `duplicate` (of `artifact`) or `skipped`."""

    path: str
    status: str
    artifact: str = ""
    source: str = ""
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "status": self.status,
            "artifact": self.artifact or None,
            "source": self.source or None,
            "reason": self.reason or None,
        }


@dataclass(frozen=True)
class _Candidate:
    path: Path
    data: bytes
    digest: str
    width: int
    height: int


def collect(paths: Iterable[Path]) -> tuple[list[Path], list[Imported], set[Path]]:
    """The image files named by `paths` (files, or folders walked recursively in name
    order), the files in those folders passed over, and the files named themselves.

    A path that does not exist, or a named file that is not a PNG, JPEG or WebP, is an
    `InputError` naming it: nothing is imported then."""
    files: list[Path] = []
    passed: list[Imported] = []
    named: set[Path] = set()
    for raw in paths:
        path = Path(raw).expanduser()
        if not path.exists():
            raise InputError(f"{path} does not exist")
        if path.is_dir():
            for folder, subdirs, names in os.walk(path):
                subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
                for name in sorted(names):
                    found = Path(folder) / name
                    if name.startswith("."):
                        continue
                    if found.suffix.lower() in IMAGE_SUFFIXES:
                        files.append(found)
                    else:
                        passed.append(Imported(str(found), "skipped", reason="not an image"))
        elif path.suffix.lower() in IMAGE_SUFFIXES:
            files.append(path)
            named.add(path)
        else:
            raise InputError(f"{path} is not a PNG, JPEG or WebP image")
    return files, passed, named


def _read(path: Path) -> _Candidate:
    """The file's bytes, hash and size; OSError/ValueError when it is not a readable image."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError("not a regular file")
        with os.fdopen(fd, "rb", closefd=False) as fh:
            data = fh.read()
    finally:
        os.close(fd)
    try:
        with Image.open(io.BytesIO(data)) as im:
            width, height = im.size
            if width * height > MAX_PIXELS:
                raise ValueError(f"{width}×{height} is more pixels than medialab opens")
            im.verify()
    except (UnidentifiedImageError, SyntaxError) as exc:
        raise ValueError("not an image Pillow can read") from exc
    return _Candidate(path, data, blake3.blake3(data).hexdigest(), width, height)


def _known(store: Store) -> dict[str, str]:
    """blake3 → artifact ref of everything imported before."""
    with store.reading() as conn:
        rows = conn.execute(
            "SELECT id, json_extract(params, '$.import.blake3') FROM artifact WHERE stage = ?",
            (STAGE,),
        ).fetchall()
    return {str(digest): f"a{ident}" for ident, digest in rows if digest}


def import_images(
    store: Store,
    data: DataDir,
    paths: Iterable[Path],
    progress: Callable[[int, int], None] | None = None,
) -> list[Imported]:
    """Import every image under `paths`; one result per file, in the order found."""
    files, passed, named = collect(paths)
    known = _known(store)
    batch: dict[str, _Candidate] = {}
    # (status, path, digest, what it says: the earlier artifact or why it was skipped)
    found: list[tuple[str, Path, str, str]] = []
    for done, path in enumerate(files, 1):
        try:
            candidate = _read(path)
        except (OSError, ValueError) as exc:
            reason = str(exc) if isinstance(exc, ValueError) else exc.strerror or str(exc)
            if path in named:
                # A file asked for by name that cannot be read: nothing is imported.
                raise InputError(f"{path} cannot be imported: {reason}") from None
            found.append(("skipped", path, "", reason))
        else:
            digest = candidate.digest
            if digest in known or digest in batch:
                found.append(("duplicate", path, digest, known.get(digest, "")))
            else:
                batch[digest] = candidate
                found.append(("imported", path, digest, ""))
        if progress is not None:
            progress(done, len(files))
    written = _write(store, data, list(batch.values())) if batch else {}
    results = []
    for status, path, digest, said in found:
        if status == "skipped":
            results.append(Imported(str(path), status, reason=said))
        elif status == "duplicate":
            # A second copy within this import names what its first copy became.
            results.append(Imported(str(path), status, artifact=said or written[digest][0]))
        else:
            ref, source = written[digest]
            results.append(Imported(str(path), status, artifact=ref, source=source))
    return results + passed


def _write(store: Store, data: DataDir, fresh: list[_Candidate]) -> dict[str, tuple[str, str]]:
    """One run, a job and an artifact per image, files copied: digest → (ref, source)."""
    from medialab_tui.store.tables import Artifact, Job, Run, utcnow

    written: dict[str, tuple[str, str]] = {}
    files: list[Path] = []
    try:
        with store.write() as s:
            now = utcnow()
            run = Run(
                created_at=now,
                name=STAGE,
                status="succeeded",
                mode="auto",
                pipeline={"name": STAGE, "stages": [{"type": STAGE}]},
                source="import",
                user=store.user,
                started_at=now,
                finished_at=now,
            )
            s.add(run)
            s.flush()
            for candidate in fresh:
                found = read_image_metadata(candidate.path)
                params = {
                    **found.params,
                    "import": {
                        "original": str(candidate.path.resolve()),
                        "blake3": candidate.digest,
                        "bytes": len(candidate.data),
                    },
                    "metadata": found.raw,
                }
                job = Job(
                    created_at=now,
                    run_id=run.id or 0,
                    stage=STAGE,
                    status="succeeded",
                    progress=1.0,
                    item={"prompt": params.get("prompt") or "", "seed": params.get("seed")},
                    params={"source": found.source},
                    user=store.user,
                    started_at=now,
                    finished_at=now,
                )
                s.add(job)
                s.flush()
                folder = artifact_dir(data.artifacts, run.id or 0, job.id or 0)
                target = folder / _file_name(candidate.path)
                atomic_write_bytes(target, candidate.data, exclusive=True)
                files.append(target)
                files.append(write_sidecar(target, params))
                seed = params.get("seed")
                artifact = Artifact(
                    run_id=run.id or 0,
                    job_id=job.id or 0,
                    stage=STAGE,
                    kind="image",
                    path=str(target),
                    name=target.stem,
                    prompt=str(params.get("prompt") or ""),
                    seed=seed if isinstance(seed, int) else None,
                    model=str(params.get("model") or ""),
                    width=candidate.width,
                    height=candidate.height,
                    params=params,
                )
                s.add(artifact)
                s.flush()
                written[candidate.digest] = (f"a{artifact.id}", found.source)
            store.record(s, "run.import", "run", run.id, images=len(fresh))
    except BaseException:
        # The transaction is rolled back: the copies it would have indexed go too.
        for path in files:
            path.unlink(missing_ok=True)
        raise
    return written


def _file_name(path: Path) -> str:
    """The original's name, kept to printable characters (a job's folder holds one)."""
    stem = "".join(ch if ch.isprintable() and ch not in "/\\" else "_" for ch in path.stem)
    return f"{stem.strip() or 'image'}{path.suffix.lower()}"
