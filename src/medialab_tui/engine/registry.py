"""The model registry: find model files under the roots, identify and hash them.

Architecture comes from a file's keys, never its name (`model_files.detect_arch`).
Hashes are cached by (path, size, mtime), so rescanning unchanged folders costs a
`stat` per entry. Pickle formats are listed but marked unsafe: they can run code,
and so can a folder holding one.

The walk is bounded whatever the roots hold: each real folder is entered once
(by device and inode, so link loops and bind mounts end), at most `MAX_DEPTH`
folders deep; links that leave the roots are followed only when the operator
allows it (`allow_outside_links`); only regular, readable files are ever opened.
What it passes over is reported (`ScanResult.skipped`), not silently dropped.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
import threading
from collections import deque
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import blake3

from medialab_tui.config import Config, DataDir
from medialab_tui.engine.model_files import (
    check_safetensors,
    controlnet_folder_config,
    detect_arch,
    is_opencv_cascade,
    open_regular,
    pickle_files,
)
from medialab_tui.engine.roots import PROBLEMS_KEY, Root, RootProblem, all_roots
from medialab_tui.errors import InputError
from medialab_tui.store.db import Store

if TYPE_CHECKING:
    from medialab_tui.store.tables import Model

WEIGHT_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")
# Detectors for the `detail` stage: OpenCV cascades, listed only when they are one.
DETECTOR_SUFFIXES = (".xml",)
# Folders below a root the walk goes into; deeper ones are skipped and reported.
MAX_DEPTH = 16
_CHUNK = 8 * 1024 * 1024

_NOT_REGULAR = (
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a device"),
    (stat.S_ISBLK, "a device"),
)


@dataclass(frozen=True)
class Skipped:
    """A path the scan passed over (or listed as broken), and why."""

    path: str
    reason: str


@dataclass
class ScanResult:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: int = 0
    # Entries not registered: links out of the roots, loops, FIFOs, unreadable files…
    skipped: list[Skipped] = field(default_factory=list)
    # Models registered with kind "broken" (a damaged file), with what is wrong.
    broken: list[Skipped] = field(default_factory=list)
    # Sources of roots that could not be read (a yaml that does not parse…).
    problems: list[RootProblem] = field(default_factory=list)


@dataclass(frozen=True)
class Found:
    """A model the walk found, with the regular files whose bytes make it."""

    path: Path
    files: tuple[tuple[Path, os.stat_result], ...]
    folder: bool

    @property
    def size(self) -> int:
        return sum(st.st_size for _, st in self.files)

    @property
    def mtime(self) -> float:
        return max((st.st_mtime for _, st in self.files), default=0.0)


def model_roots(data: DataDir, config: Config) -> list[Path]:
    """The folders models are read from (`roots.all_roots`), in the order names are
    given out: `<data>/models` first."""
    return [root.path for root in all_roots(data, config).roots]


def _is_model_folder(path: Path) -> bool:
    return (path / "model_index.json").is_file() or controlnet_folder_config(path) is not None


def _not_regular(st: os.stat_result) -> str:
    what = next((name for test, name in _NOT_REGULAR if test(st.st_mode)), "not a file")
    return f"{what}, not a regular file"


def _again(path: Path) -> str:
    """Why a folder met a second time is skipped (a link loop, or two ways in)."""
    return "a link to a folder already scanned" if path.is_symlink() else "a folder already scanned"


class _Walk:
    """One bounded walk over the roots; folders and files seen are shared by all roots."""

    def __init__(self, roots: Sequence[Path], *, allow_outside: bool) -> None:
        self.roots = [Path(os.path.realpath(r)) for r in roots]
        self.allow_outside = allow_outside
        self.dirs: set[tuple[int, int]] = set()
        self.files: dict[tuple[int, int], Path] = {}
        self.found: list[Found] = []
        self.skipped: list[Skipped] = []

    def skip(self, path: Path, reason: str) -> None:
        self.skipped.append(Skipped(str(path), reason))

    def root(self, root: Path) -> list[Found]:
        """The models under one root, sorted by path."""
        try:
            st = os.stat(root)
        except OSError:
            return []
        key = (st.st_dev, st.st_ino)
        if not stat.S_ISDIR(st.st_mode) or key in self.dirs:
            return []  # not a folder, or inside a root already walked
        self.dirs.add(key)
        start = len(self.found)
        # (folder, depth, reached through a link)
        folders: list[tuple[Path, int, bool]] = [(root, 0, False)]
        # Links wait until every real entry is seen, so a model is listed under
        # its real path and a link to it is the duplicate.
        links: deque[tuple[Path, int]] = deque()
        while folders or links:
            if folders:
                folder, depth, linked = folders.pop()
                for path, entry_st in self._entries(folder, links, depth + 1):
                    self._consider(path, entry_st, depth + 1, folders, via_link=linked)
            else:
                link, depth = links.popleft()
                target_st = self._follow(link, report_any=False)
                if target_st is not None:
                    self._consider(link, target_st, depth, folders, via_link=True)
        return sorted(self.found[start:], key=lambda f: f.path)

    def _entries(
        self, folder: Path, links: deque[tuple[Path, int]] | None, depth: int
    ) -> list[tuple[Path, os.stat_result]]:
        """A folder's visible, non-link entries with their `lstat`; links go to `links`
        (or, with `links` None, come back followed)."""
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError:
            self.skip(folder, "cannot be read")
            return []
        out = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            path = Path(entry.path)
            try:
                if entry.is_symlink():
                    if links is not None:
                        links.append((path, depth))
                        continue
                    followed = self._follow(path, report_any=True)
                    if followed is not None:
                        out.append((path, followed))
                    continue
                out.append((path, entry.stat(follow_symlinks=False)))
            except OSError:
                self.skip(path, "cannot be read")
        return out

    def _follow(self, link: Path, *, report_any: bool) -> os.stat_result | None:
        """The `stat` of what a link points to, or None (reported) when it loops,
        dangles or leaves the roots without the operator's leave."""
        try:
            target = Path(os.path.realpath(link, strict=True))
        except OSError as exc:
            self.skip(link, "a link loop" if exc.errno == errno.ELOOP else "a broken link")
            return None
        try:
            st = os.stat(target)
        except OSError:
            self.skip(link, "cannot be read")
            return None
        inside = any(target.is_relative_to(root) for root in self.roots)
        if not inside and not self.allow_outside:
            relevant = stat.S_ISDIR(st.st_mode) or _is_candidate(link)
            if report_any or relevant:
                self.skip(link, f"a link outside the model roots (to {target})")
            return None
        return st

    def _consider(
        self,
        path: Path,
        st: os.stat_result,
        depth: int,
        folders: list[tuple[Path, int, bool]],
        *,
        via_link: bool,
    ) -> None:
        if stat.S_ISDIR(st.st_mode):
            key = (st.st_dev, st.st_ino)
            if key in self.dirs:
                if via_link:
                    self.skip(path, _again(path))
                return
            if depth > MAX_DEPTH:
                self.skip(path, f"more than {MAX_DEPTH} folders deep")
                return
            self.dirs.add(key)
            if _is_model_folder(path):
                self.found.append(Found(path, self.folder_files(path, depth), folder=True))
            else:
                folders.append((path, depth, via_link))
            return
        if not _is_candidate(path):
            return
        if not stat.S_ISREG(st.st_mode):
            self.skip(path, _not_regular(st))
            return
        if not os.access(path, os.R_OK):
            self.skip(path, "cannot be read")
            return
        key = (st.st_dev, st.st_ino)
        # Real files are all listed (hard links are deliberate copies); one reached
        # through a link is a duplicate of the same file listed before.
        if via_link and key in self.files:
            self.skip(path, f"the same file as {self.files[key]}, already listed")
            return
        if path.suffix.lower() in DETECTOR_SUFFIXES and not is_opencv_cascade(path):
            return
        self.files.setdefault(key, path)
        self.found.append(Found(path, ((path, st),), folder=False))

    def folder_files(self, folder: Path, depth: int = 0) -> tuple[tuple[Path, os.stat_result], ...]:
        """The regular files a model folder is made of, in path order.

        Two folders may share files (a Hugging Face cache links snapshots to the
        same blobs), so only loops inside this folder are cut, not repeats.
        """
        inside: set[tuple[int, int]] = set()
        try:
            st = os.stat(folder)
            inside.add((st.st_dev, st.st_ino))
        except OSError:
            pass
        files: list[tuple[Path, os.stat_result]] = []
        stack = [(folder, depth)]
        while stack:
            current, level = stack.pop()
            for path, entry_st in self._entries(current, None, level + 1):
                if stat.S_ISDIR(entry_st.st_mode):
                    key = (entry_st.st_dev, entry_st.st_ino)
                    if key in inside:
                        self.skip(path, _again(path))
                    elif level + 1 > MAX_DEPTH:
                        self.skip(path, f"more than {MAX_DEPTH} folders deep")
                    else:
                        inside.add(key)
                        self.dirs.add(key)
                        stack.append((path, level + 1))
                elif not stat.S_ISREG(entry_st.st_mode):
                    self.skip(path, _not_regular(entry_st))
                elif not os.access(path, os.R_OK):
                    self.skip(path, "cannot be read")
                else:
                    files.append((path, entry_st))
        return tuple(sorted(files, key=lambda f: f[0]))


def _is_candidate(path: Path) -> bool:
    """Named like a model file (what a loose file must be to be looked at)."""
    return path.suffix.lower() in WEIGHT_SUFFIXES + DETECTOR_SUFFIXES


def find_model_paths(root: Path, *, allow_outside: bool = False) -> list[Path]:
    """Diffusers folders (with `model_index.json`), ControlNet folders, single weight
    files and OpenCV cascades (detectors) under root."""
    return [f.path for f in _Walk([root], allow_outside=allow_outside).root(root)]


def folder_files(folder: Path) -> list[Path]:
    """The files of a model folder, walked as a scan walks it (links followed)."""
    return [p for p, _ in _Walk([folder], allow_outside=True).folder_files(folder)]


class HashStopped(Exception):
    """Hashing was asked to stop (the host is leaving)."""


def hash_model(
    found: Found,
    on_bytes: Callable[[int], None] | None = None,
    stop: threading.Event | None = None,
) -> tuple[str, str]:
    """(blake3 for identity, sha256) over the model's bytes; AutoV2 is sha256[:10].

    `on_bytes` hears of each chunk read; a set `stop` ends it with `HashStopped`.
    """
    fast = blake3.blake3(max_threads=blake3.blake3.AUTO)
    slow = hashlib.sha256()
    for file, _ in found.files:
        if found.folder:
            # A folder's hash covers names too, so moving a file inside it shows.
            name = str(file.relative_to(found.path)).encode()
            fast.update(name)
            slow.update(name)
        with open_regular(file) as fh:
            while chunk := fh.read(_CHUNK):
                if stop is not None and stop.is_set():
                    raise HashStopped
                fast.update(chunk)
                slow.update(chunk)
                if on_bytes is not None:
                    on_bytes(len(chunk))
    return fast.hexdigest(), slow.hexdigest()


def _detect(found: Found) -> tuple[str, str, str]:
    """`detect_arch`, plus every safetensors file of a folder checked to be whole.

    Raises ValueError (or OSError) naming what is damaged.
    """
    kind, arch, fmt = detect_arch(found.path)
    if found.folder:
        for file, _ in found.files:
            if file.suffix.lower() == ".safetensors":
                check_safetensors(file, str(file.relative_to(found.path)))
    return kind, arch, fmt


def _unique_name(path: Path, root: Path, taken: set[str]) -> str:
    name = path.stem if path.is_file() else path.name
    if name not in taken:
        return name
    rel = path.relative_to(root) if path.is_relative_to(root) else path
    candidate = str(rel.with_suffix("") if path.is_file() else rel)
    return candidate if candidate not in taken else str(path)


def _is_safe(found: Found, fmt: str) -> bool:
    """A file is safe unless it is a pickle; a folder only if none of its files is."""
    return fmt != "pickle" and not pickle_files(p for p, _ in found.files)


def root_key(data_root: Path, root: Path) -> str:
    """A root as the registry records it: relative to the data directory when inside
    it (so a copied or moved data directory keeps its models), else absolute."""
    return root.relative_to(data_root).as_posix() if root.is_relative_to(data_root) else str(root)


class _Placed(Protocol):
    path: str
    root: str
    rel: str


@dataclass
class _Known:
    """A registry row as a scan or the hasher reads it (plain SQLite: a rescan that
    finds nothing changed never imports SQLAlchemy)."""

    id: int
    name: str
    path: str
    root: str
    rel: str
    size: int
    mtime: float
    demo: bool


def _known(store: Store, where: str = "", args: tuple[Any, ...] = ()) -> list[_Known]:
    with store.reading() as conn:
        rows = conn.execute(
            "SELECT id, name, path, root, rel, size, mtime, demo FROM model " + where, args
        ).fetchall()
    return [_Known(*row) for row in rows]


def located(row: _Placed, data_root: Path) -> Path:
    """Where a registry entry's model is in the data directory at `data_root`: its root
    (relative to the data directory, or absolute) joined with its relative path."""
    return Path(data_root, row.root, row.rel) if row.rel else Path(row.path)


def _here(row: Model, data_root: Path) -> Model:
    """The (detached) row with `path` where its model is now: in a copied data
    directory, its own copy, before any rescan has written that down."""
    row.path = str(located(row, data_root))
    return row


@dataclass
class _Seen:
    """A model the walk found, under which root."""

    found: Found
    root: Root
    key: str  # the root as recorded (`root_key`)

    @property
    def rel(self) -> str:
        return self.found.path.relative_to(self.root.path).as_posix()


def _identify(seen: _Seen, result: ScanResult) -> tuple[str, str, str]:
    """(kind, arch, format) from the keys; the folder's kind only where they cannot tell
    (a file never opened, keys no family has). A damaged file is `broken`."""
    path = seen.found.path
    try:
        kind, arch, fmt = _detect(seen.found)
    except (ValueError, OSError) as exc:
        # A corrupt file is listed as broken, not a reason to stop the scan.
        result.broken.append(Skipped(str(path), str(exc)))
        return "broken", "unknown", path.suffix.lstrip(".") or "folder"
    hint = seen.root.kind
    if hint is not None and (kind == "unknown" or fmt == "pickle"):
        kind = hint
    return kind, arch, fmt


def scan(
    store: Store, data: DataDir, config: Config, *, demo: frozenset[str] = frozenset()
) -> ScanResult:
    """Bring the registry in line with the files under the model roots.

    Only what is new or changed is opened (its header, never its weights); its hashes
    are left pending (`hash_pending`) for the engine host's hasher or `hash_pending`.
    A root whose source could not be read (a broken yaml) keeps its models until it
    reads again. Two scans at once (a client's and the host's watch) may race: the
    loser starts again from what the winner wrote.
    """
    for attempt in range(3):
        try:
            return _scan(store, data, config, demo)
        except Exception as exc:
            from sqlalchemy.exc import IntegrityError  # loaded by now: a write failed

            if not isinstance(exc, IntegrityError) or attempt == 2:
                raise
    raise AssertionError("unreachable")


def _keep_problems(store: Store, problems: list[RootProblem]) -> None:
    if problems:
        store.put_setting(PROBLEMS_KEY, json.dumps([p.to_json() for p in problems]))
    elif store.setting(PROBLEMS_KEY) is not None:
        store.drop_settings(PROBLEMS_KEY)


def _scan(store: Store, data: DataDir, config: Config, demo: frozenset[str]) -> ScanResult:
    result = ScanResult()
    found_roots = all_roots(data, config)
    result.problems = found_roots.problems
    _keep_problems(store, result.problems)
    rows = _known(store)
    by_place = {str(located(m, data.root)): m for m in rows}
    walk = _Walk([r.path for r in found_roots.roots], allow_outside=config.allow_outside_links)
    seen: list[_Seen] = []
    for root in found_roots.roots:
        key = root_key(data.root, root.path)
        seen += [_Seen(found, root, key) for found in walk.root(root.path)]
    result.skipped = walk.skipped
    places = {str(x.found.path) for x in seen}
    # Models of roots that could not be listed (their yaml is broken) stay as they are.
    listed_roots = {root_key(data.root, r.path) for r in found_roots.roots}
    keep_unlisted = bool(found_roots.problems)
    gone = {
        p: m
        for p, m in by_place.items()
        if p not in places and not (keep_unlisted and m.root and m.root not in listed_roots)
    }
    # A model that left a root and shows up in another one, the same file under the
    # same relative path (a moved shared folder), keeps its name, labels and hashes.
    moved_from = {(m.rel, m.size, m.mtime): m for m in gone.values() if m.rel}
    taken = {m.name for p, m in by_place.items() if p not in gone}
    # (the row's id, or None for a new one; the fields to write; the event to record)
    changes: list[tuple[int | None, dict[str, Any], str]] = []
    for x in seen:
        place = str(x.found.path)
        size, mtime = x.found.size, x.found.mtime
        row = by_place.get(place)
        if row is None:
            row = moved_from.pop((x.rel, size, mtime), None)
            if row is not None:
                del gone[str(located(row, data.root))]
                taken.add(row.name)
        where: dict[str, Any] = {"path": place, "root": x.key, "rel": x.rel}
        if row is not None and row.size == size and row.mtime == mtime:
            result.unchanged += 1
            if (row.path, row.root, row.rel) != (place, x.key, x.rel):
                changes.append((row.id, where, ""))
            continue
        kind, arch, fmt = _identify(x, result)
        if row is None:
            name = _unique_name(x.found.path, x.root.path, taken)
            taken.add(name)
            result.added.append(name)
        else:
            name = row.name
            result.updated.append(name)
        fields: dict[str, Any] = {
            **where,
            "name": name,
            "kind": kind,
            "arch": arch,
            "format": fmt,
            "size": size,
            "mtime": mtime,
            "fast_hash": "",
            "sha256": "",
            "hash_pending": True,
            "safe": _is_safe(x.found, fmt),
            "demo": (row is not None and row.demo) or name in demo,
        }
        changes.append((None if row is None else row.id, fields, "model.scan"))
    if not (changes or gone):
        return result
    from medialab_tui.store.tables import Model

    with store.write() as s:
        # Gone first: their paths and names may be taken by what is new.
        for m in gone.values():
            old = s.get(Model, m.id)
            if old is not None:
                s.delete(old)
                store.record(s, "model.remove", "model", m.id, name=m.name, path=m.path)
                result.removed.append(m.name)
        s.flush()
        for ident, fields, action in changes:
            target = Model(**fields) if ident is None else s.get(Model, ident)
            if target is None:
                continue  # removed meanwhile by another scan: the next one sees it
            for key, value in fields.items():
                setattr(target, key, value)
            s.add(target)
            if action:
                s.flush()
                store.record(s, action, "model", target.id, name=target.name, path=target.path)
    return result


def list_models(store: Store, kind: str | None = None) -> list[Model]:
    """Registry rows by kind, then name, with their paths in this data directory."""
    from sqlmodel import select

    from medialab_tui.store.tables import Model

    with store.read() as s:
        query = select(Model).order_by(Model.kind, Model.name)
        if kind:
            query = query.where(Model.kind == kind)
        rows = list(s.exec(query).all())
    return [_here(m, store.path.parent) for m in rows]


# The hasher's progress, for listings and the Models screen (a `setting` row).
HASHING_KEY = "models.hashing"


@dataclass(frozen=True)
class HashProgress:
    """How far the hashing of one model is, and how many wait after it."""

    name: str
    done: int  # bytes read
    total: int
    waiting: int

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "done": self.done, "total": self.total, "waiting": self.waiting}

    @property
    def sentence(self) -> str:
        share = f"{100 * self.done // self.total}%" if self.total else "…"
        more = f" ({self.waiting} more waiting)" if self.waiting else ""
        return f"hashing {self.name}: {share}{more}"


def hashing_progress(store: Store) -> HashProgress | None:
    """What the engine host's hasher said last (None when it is not hashing)."""
    text = store.setting(HASHING_KEY)
    try:
        value = json.loads(text) if text else None
        return HashProgress(**value) if isinstance(value, dict) else None
    except (ValueError, TypeError):
        return None


def _found_now(path: Path, walk: _Walk) -> Found | None:
    """A registered model as its files are now (a folder's walked as a scan walks it);
    None when it cannot be read."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    if stat.S_ISDIR(st.st_mode):
        return Found(path, walk.folder_files(path), folder=True)
    return Found(path, ((path, st),), folder=False) if stat.S_ISREG(st.st_mode) else None


def hash_pending(
    store: Store,
    config: Config | None = None,
    *,
    names: Collection[str] = (),
    stop: threading.Event | None = None,
    progress: Callable[[HashProgress], None] | None = None,
) -> int:
    """Compute the hashes the registry waits for (only those of `names` when given),
    smallest model first, each written as soon as it is done; returns how many were.

    A model changed or removed since it was scanned is left for the next scan, and its
    hash is not written; a set `stop` ends the work between two chunks. `config` says
    which links a folder's walk follows, as the scan's did.
    """
    data = DataDir(store.path.parent)
    roots = model_roots(data, config) if config is not None else [data.root]
    allow_outside = config.allow_outside_links if config is not None else True
    done = 0
    failed: set[int] = set()
    where = "WHERE hash_pending"
    if names:
        where += f" AND name IN ({', '.join('?' for _ in names)})"
    while stop is None or not stop.is_set():
        rows = [
            m for m in _known(store, where + " ORDER BY size", tuple(names)) if m.id not in failed
        ]
        if not rows:
            return done
        from medialab_tui.store.tables import Model

        for index, row in enumerate(rows):
            if stop is not None and stop.is_set():
                return done
            found = _found_now(located(row, data.root), _Walk(roots, allow_outside=allow_outside))
            if found is None or (found.size, found.mtime) != (row.size, row.mtime):
                failed.add(row.id)
                continue
            read = 0

            def heard(n: int, row: _Known = row, waiting: int = len(rows) - index - 1) -> None:
                nonlocal read
                read += n
                if progress is not None:
                    progress(HashProgress(row.name, read, row.size, waiting))

            try:
                fast, sha = hash_model(found, heard, stop)
            except HashStopped:
                return done
            except OSError:
                failed.add(row.id)
                continue
            with store.write() as s:
                current = s.get(Model, row.id)
                if current is None or not current.hash_pending:
                    continue
                if (current.size, current.mtime) != (row.size, row.mtime):
                    continue
                current.fast_hash, current.sha256, current.hash_pending = fast, sha, False
                s.add(current)
            done += 1
    return done


def sha256_now(store: Store, config: Config, name: str) -> str:
    """A registered model's sha256, hashed now if it is still pending ("" when it cannot
    be: the model is gone, or changed since it was scanned)."""
    hash_pending(store, config, names=[name])
    with store.reading() as conn:
        row = conn.execute("SELECT sha256 FROM model WHERE name = ?", (name,)).fetchone()
    return str(row[0]) if row is not None else ""


def _problem(path: Path) -> str | None:
    """What is wrong with a model on disk, as a clause, or None if it reads."""
    try:
        st = os.stat(path)
        if stat.S_ISDIR(st.st_mode):
            walk = _Walk([path], allow_outside=True)
            _detect(Found(path, walk.folder_files(path), folder=True))
        elif stat.S_ISREG(st.st_mode):
            detect_arch(path)
        else:
            return f"{path} is {_not_regular(st)}"
    except ValueError as exc:
        return str(exc)
    except OSError as exc:
        return f"{path} cannot be read ({exc.strerror or exc})"
    return None


def _path_row(path: Path) -> Model:
    """An unregistered model given by its path, identified now (nothing is stored)."""
    problem = _problem(path)
    if problem is not None:
        raise InputError(problem)
    kind, arch, fmt = detect_arch(path)
    from medialab_tui.store.tables import Model

    row = Model(name=path.stem, kind=kind, arch=arch, format=fmt, path=str(path.resolve()))
    files = folder_files(path) if path.is_dir() else [path]
    row.safe = fmt != "pickle" and not pickle_files(files)
    return row


def _pickle_part(row: Model) -> str | None:
    """The pickle in a model as its sentence names it (a file's suffix, a folder's
    first pickle file), looked at now; None when it holds none."""
    path = Path(row.path)
    if path.is_dir():
        found = pickle_files(folder_files(path))
        if found:
            return str(found[0].relative_to(path))
    elif pickle_files([path]):
        return path.suffix
    return None if row.safe else "pickle weights"


def _allowed(row: Model, allow_pickle: Collection[Path]) -> bool:
    """The operator allowed this exact model (a file or a folder) to load."""
    if row.allowed:
        return True
    target = os.path.realpath(row.path)
    return any(os.path.realpath(p) == target for p in allow_pickle)


def resolve(
    store: Store,
    ref: str,
    *,
    kinds: tuple[str, ...] = (),
    allow_pickle: Collection[Path] = (),
) -> Model:
    """A model by registry name, path, or hash prefix; `InputError` when unknown,
    damaged, of another kind, or holding pickle weights not in `allow_pickle`."""
    from sqlmodel import select

    from medialab_tui.store.tables import Model

    data_root = store.path.parent
    with store.read() as s:
        row = s.exec(select(Model).where(Model.name == ref)).first()
        if row is None and ("/" in ref or ref.endswith(WEIGHT_SUFFIXES + DETECTOR_SUFFIXES)):
            path = Path(ref).expanduser()
            if not path.exists():
                raise InputError(f"model path {ref} does not exist")
            wanted = path.resolve()
            row = next(
                (m for m in s.exec(select(Model)).all() if located(m, data_root) == wanted), None
            )
            if row is None:
                row = _path_row(path)
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
    row = _here(row, data_root)
    if row.kind == "broken":
        raise InputError(
            _problem(Path(row.path))
            or f"model '{ref}' was damaged when last scanned (run `medialab models scan`)"
        )
    if kinds and row.kind not in kinds:
        raise InputError(f"model '{ref}' is a {row.kind}, not a {' or '.join(kinds)}")
    unsafe = _pickle_part(row)
    if unsafe is not None and not _allowed(row, allow_pickle):
        what = "holds a pickle file" if Path(row.path).is_dir() else "is a pickle file"
        raise InputError(
            f"model '{ref}' {what} ({unsafe}), which can run code; convert it to "
            f".safetensors or list its exact path ({row.path}) under allow_pickle in config.toml"
        )
    return row
