"""Atomic file writes: the one way medialab puts a file in place.

Every write goes to a temporary file in the target's own folder (so the final
rename never crosses a filesystem), is flushed to disk, and is then renamed over
the target with `os.replace`. A crash or an error leaves either the old file or
the new one under the real name, never half of one, and the temporary file is
removed. `mkstemp` makes the file owner-only (SPEC §7).
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def _atomic(path: Path, fill: Callable[[BinaryIO], object], *, exclusive: bool = False) -> None:
    """Create `path` from what `fill` writes into an open temporary file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fill(fh)
            fh.flush()
            os.fsync(fh.fileno())
        if exclusive:
            os.link(tmp, path)  # FileExistsError instead of replacing
            os.unlink(tmp)
        else:
            os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes, *, exclusive: bool = False) -> None:
    """Write `data` to `path` through a temporary file and a rename.

    `exclusive=True` never replaces a file already at `path`: it raises
    `FileExistsError` instead (the temporary file is hard-linked into place).
    """
    _atomic(path, lambda fh: fh.write(data), exclusive=exclusive)


def atomic_write_with(
    path: Path, fill: Callable[[BinaryIO], object], *, exclusive: bool = False
) -> None:
    """Write `path` from what `fill` writes into an open file (a zip, a remuxed video),
    atomically; `exclusive=True` raises `FileExistsError` rather than replace a file."""
    _atomic(path, fill, exclusive=exclusive)


def atomic_write_text(path: Path, text: str, *, exclusive: bool = False) -> None:
    """Write `text` to `path` as UTF-8, atomically (newlines are written as given)."""
    atomic_write_bytes(path, text.encode("utf-8"), exclusive=exclusive)


def atomic_copy(src: Path, dst: Path) -> None:
    """Copy the contents of `src` to `dst` atomically; `src` is only read."""
    with src.open("rb") as source:
        _atomic(dst, lambda fh: shutil.copyfileobj(source, fh))


def is_disk_full(exc: BaseException) -> bool:
    """True when `exc` (or what it wraps) says the disk is full: ENOSPC/EDQUOT from the
    filesystem, or SQLite's SQLITE_FULL ("database or disk is full")."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if "database or disk is full" in str(current):
            return True
        current = getattr(current, "orig", None) or current.__cause__ or current.__context__
    return False


def free_bytes(path: Path) -> int:
    """Bytes free to an ordinary user on the filesystem of `path` (0 when unknown)."""
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return 0
