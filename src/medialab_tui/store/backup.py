"""Checking the database file, and the engine host's rolling backups of it.

The checks never write: the SQLite header is read as bytes, and everything else
goes through a read-only connection, which never checkpoints a WAL into a file
that may be damaged. Backups are taken with SQLite's online backup API, so they
are consistent while other processes write, land in `<data>/backups/` under a
temporary name first, are checked, and only then renamed into place; the newest
`KEEP_BACKUPS` stay. `medialab doctor --restore` brings the newest good one back
and keeps the file it replaces aside, renamed, never deleted.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import tempfile
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from medialab_tui.errors import MedialabError
from medialab_tui.store.files import atomic_copy

log = logging.getLogger("medialab.store")

# The host takes a backup at start and after every this many completed jobs.
BACKUP_EVERY_JOBS = 50
KEEP_BACKUPS = 3
# Databases up to this size get a full `PRAGMA quick_check` whenever they are
# opened (a few milliseconds); larger ones only get their header, schema and
# table roots read, and the full check when the engine host starts.
FULL_CHECK_BYTES = 16 * 1024 * 1024
# SQLite's primary result codes for a damaged file: SQLITE_CORRUPT, SQLITE_NOTADB.
SQLITE_NOTADB = 26
DAMAGE_CODES = (11, SQLITE_NOTADB)
# What "what will be lost" counts.
COUNTED = ("run", "job", "artifact")

_PREFIX, _SUFFIX = "medialab-", ".db"
_STAMP = "%Y%m%dT%H%M%S%fZ"


def backups_dir(db_path: Path) -> Path:
    """`<data>/backups/`, beside the database."""
    return db_path.parent / "backups"


def is_damage(exc: BaseException) -> bool:
    """True when `exc` (or what it wraps: SQLAlchemy's `.orig`, a cause) is SQLite
    saying the file is damaged or not a database; a locked or full disk is not."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, sqlite3.DatabaseError):
            code = getattr(current, "sqlite_errorcode", None)
            if code is not None and code & 0xFF in DAMAGE_CODES:
                return True
        orig = getattr(current, "orig", None)
        current = orig if isinstance(orig, BaseException) else current.__cause__
    return False


def _read_only(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30)


def problem(path: Path, *, deep: bool = False) -> str | None:
    """What is wrong with the database file at `path`, as the end of a sentence
    ("is damaged (…)"); None when it reads fine, is missing or is empty.

    `deep` runs `PRAGMA quick_check` whatever the size (the engine host's start).
    """
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return None
    if size == 0:
        return None
    # The header is SQLite's to read: a file of this process's own that is opened and
    # closed beside SQLite's connections drops their POSIX locks (closing any
    # descriptor of a file releases every lock the process holds on it), and another
    # process could then reset the WAL under them.
    try:
        conn = _read_only(path)
        try:
            tables = [
                row[0]
                for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            ]
            if deep or size <= FULL_CHECK_BYTES:
                rows = [str(row[0]) for row in conn.execute("PRAGMA quick_check")]
                if rows != ["ok"]:
                    said = " ".join(" ".join(rows).split())
                    return f"is damaged (SQLite's quick_check: {said[:120]})"
            else:
                for table in tables:
                    conn.execute(f'SELECT 1 FROM "{table}" LIMIT 1').fetchall()
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        if getattr(exc, "sqlite_errorcode", 0) & 0xFF == SQLITE_NOTADB:
            return "is not an SQLite database (it does not start with the SQLite header)"
        if not is_damage(exc):
            raise
        return f"is damaged ({exc})"
    return None


def counts(path: Path) -> dict[str, int | None]:
    """Rows per counted table, each None where that table cannot be read."""
    found: dict[str, int | None] = dict.fromkeys(COUNTED)
    if not path.is_file() or path.stat().st_size == 0:
        return found
    try:
        conn = _read_only(path)
    except sqlite3.DatabaseError:
        return found
    try:
        for table in COUNTED:
            try:
                found[table] = int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
            except sqlite3.DatabaseError:
                found[table] = None
    finally:
        conn.close()
    return found


def _many(n: int | None, noun: str) -> str:
    return f"? {noun}s" if n is None else f"{n} {noun}{'' if n == 1 else 's'}"


def describe_counts(found: dict[str, int | None]) -> str:
    """`3 runs, 1 job, 6 artifacts` (`? jobs` where a table cannot be read)."""
    return ", ".join(_many(n, table) for table, n in found.items())


@dataclass(frozen=True)
class Backup:
    """One copy in `<data>/backups/`, named by the UTC time it was taken."""

    path: Path
    taken_at: datetime

    @property
    def label(self) -> str:
        """`2026-12-01 20:38:12 UTC`, for sentences."""
        return self.taken_at.strftime("%Y-%m-%d %H:%M:%S UTC")


def list_backups(db_path: Path) -> list[Backup]:
    """The backups of this database, newest first (not checked)."""
    found = []
    folder = backups_dir(db_path)
    if not folder.is_dir():
        return []
    for path in folder.glob(f"{_PREFIX}*{_SUFFIX}"):
        stamp = path.name.removeprefix(_PREFIX).removesuffix(_SUFFIX)
        try:
            taken = datetime.strptime(stamp, _STAMP).replace(tzinfo=UTC)
        except ValueError:
            continue
        found.append(Backup(path, taken))
    return sorted(found, key=lambda b: b.taken_at, reverse=True)


def newest_good_backup(db_path: Path) -> Backup | None:
    """The newest backup that passes the full check."""
    for candidate in list_backups(db_path):
        if problem(candidate.path, deep=True) is None and candidate.path.stat().st_size:
            return candidate
    return None


def _fingerprint(path: Path) -> tuple[object, ...] | None:
    """What changes whenever the queue or the gallery does (None: cannot tell)."""
    try:
        conn = _read_only(path)
        try:
            row = conn.execute(
                "SELECT (SELECT max(id) FROM event), (SELECT count(*) FROM run), "
                "(SELECT count(*) FROM job), (SELECT count(*) FROM artifact), "
                "(SELECT max(finished_at) FROM job)"
            ).fetchone()
        finally:
            conn.close()
    except sqlite3.DatabaseError:
        return None
    return tuple(row)


def take_backup(db_path: Path, keep: int = KEEP_BACKUPS) -> Backup | None:
    """Copy the live database into `<data>/backups/` with the online backup API.

    Nothing new is written when the newest backup already holds the same data, so
    hosts restarted often do not push older, different backups out. A copy that
    fails the check is dropped (the older backups stay) and None is returned.
    """
    folder = backups_dir(db_path)
    folder.mkdir(mode=0o700, exist_ok=True)
    newest = list_backups(db_path)[:1]
    now = _fingerprint(db_path)
    if newest and now is not None and _fingerprint(newest[0].path) == now:
        return newest[0]
    taken = datetime.now(UTC)
    target = folder / f"{_PREFIX}{taken.strftime(_STAMP)}{_SUFFIX}"
    fd, tmp_name = tempfile.mkstemp(prefix=f".{_PREFIX}", suffix=".partial", dir=folder)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        source = _read_only(db_path)
        copy = sqlite3.connect(tmp)
        try:
            source.backup(copy)
            # A standalone file: no -wal/-shm beside it when it is read later.
            copy.execute("PRAGMA journal_mode=DELETE")
        finally:
            copy.close()
            source.close()
        found = problem(tmp, deep=True)
        if found is not None:
            log.warning("the backup of %s was not kept: it %s", db_path, found)
            return None
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    _prune(db_path, keep)
    return Backup(target, taken)


def _prune(db_path: Path, keep: int) -> None:
    for old in list_backups(db_path)[keep:]:
        old.path.unlink(missing_ok=True)
    # Partial copies left by a host that died while copying.
    for partial in backups_dir(db_path).glob(f".{_PREFIX}*.partial"):
        partial.unlink(missing_ok=True)


# -- the engine host's rolling backups ---------------------------------------------

_lock = threading.Lock()
_completed: dict[Path, int] = {}
_backed_up: set[Path] = set()


def host_started(db_path: Path) -> Backup | None:
    """The engine host's backup at start, after its store passed the full check.

    A backup that cannot be written (a full disk, say) is logged, never fatal: the
    host serves on with the backups it has.
    """
    _backed_up.add(db_path)
    _completed[db_path] = 0
    return _backup_quietly(db_path)


_running: list[threading.Thread] = []


def job_completed(db_path: Path) -> None:
    """Count a completed job; the host's first (its backup at start predates its
    work) and every `BACKUP_EVERY_JOBS`-th one start a backup on a thread of its own,
    so the queue never waits on the copy. Never raises: a failed backup is logged."""
    done = _completed.get(db_path, 0) + 1
    _completed[db_path] = done
    if db_path in _backed_up and done != 1 and done % BACKUP_EVERY_JOBS:
        return
    _backed_up.add(db_path)
    # Not a daemon: a host that leaves right after its last job still finishes the copy.
    thread = threading.Thread(target=_backup_quietly, args=(db_path,), name="backup")
    _running.append(thread)
    thread.start()


def finish_pending(timeout: float = 60.0) -> None:
    """Wait for the backups under way (a host does before it lets go of the lock, so
    whoever takes it next finds them complete)."""
    while _running:
        _running.pop().join(timeout)


def _backup_quietly(db_path: Path) -> Backup | None:
    with _lock:
        try:
            return take_backup(db_path)
        except (OSError, sqlite3.Error) as exc:
            log.warning("could not back up %s: %s", db_path, exc)
            return None


# -- restoring -----------------------------------------------------------------------


class NoGoodBackup(MedialabError):
    """There is no backup that passes the check to restore from."""

    exit_code = 4


@dataclass(frozen=True)
class RestorePlan:
    """What `medialab doctor --restore` would do, to tell the operator before it does."""

    db_path: Path
    backup: Backup
    backup_counts: dict[str, int | None]
    current_counts: dict[str, int | None]
    current_problem: str | None  # None: the current file reads fine (or is missing)
    unindexed_files: int  # artifact files on disk that the backup does not index
    aside: Path  # where the current file goes: `medialab.db.damaged-<time>` beside it

    def lines(self) -> list[str]:
        """The explanation, one sentence a line."""
        lines = [
            f"The newest good backup is from {self.backup.label}: "
            f"{describe_counts(self.backup_counts)}."
        ]
        state = f"The current database {self.current_problem or 'reads fine'}"
        if not self.db_path.exists():
            lines.append("There is no database file now.")
        elif any(n is not None for n in self.current_counts.values()):
            lost = [
                _many(n - (self.backup_counts[t] or 0), t)
                for t, n in self.current_counts.items()
                if n is not None and n > (self.backup_counts[t] or 0)
            ]
            held = f"{state}: it holds {describe_counts(self.current_counts)}"
            if self.current_problem:
                held += " as far as it can be read"
            lines.append(
                f"{held}; {', '.join(lost)} made after the backup will be lost."
                if lost
                else f"{held}."
            )
        else:
            lines.append(f"{state}: none of its rows can be read.")
        if self.unindexed_files:
            lines.append(
                f"{_many(self.unindexed_files, 'artifact file')} on disk "
                f"{'is' if self.unindexed_files == 1 else 'are'} not in the backup: "
                "they stay under artifacts/ but leave the gallery."
            )
        if self.db_path.exists():
            lines.append(f"The current file is kept as {self.aside.name}, never deleted.")
        return lines


def plan_restore(db_path: Path) -> RestorePlan:
    """Find the newest good backup and compare it with the current database."""
    chosen = newest_good_backup(db_path)
    if chosen is None:
        raise NoGoodBackup(
            f"there is no good backup in {backups_dir(db_path)} to restore; nothing was changed"
        )
    return RestorePlan(
        db_path=db_path,
        backup=chosen,
        backup_counts=counts(chosen.path),
        current_counts=counts(db_path),
        current_problem=problem(db_path, deep=True)
        or ("is empty (0 bytes)" if db_path.is_file() and not db_path.stat().st_size else None),
        unindexed_files=_unindexed_files(db_path, chosen.path),
        aside=db_path.with_name(
            f"{db_path.name}.damaged-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}"
        ),
    )


def _under_artifacts(path: str) -> tuple[str, ...]:
    """`r1/j1/00.png` of a stored artifact path, wherever the data dir was then."""
    parts = Path(path).parts
    tail = [i for i, part in enumerate(parts) if part == "artifacts"]
    return parts[tail[-1] + 1 :] if tail else parts


def _unindexed_files(db_path: Path, backup: Path) -> int:
    """Artifact files in the data dir that the backup does not index (not sidecars)."""
    artifacts = db_path.parent / "artifacts"
    conn = _read_only(backup)
    try:
        known = {_under_artifacts(str(row[0])) for row in conn.execute("SELECT path FROM artifact")}
    finally:
        conn.close()
    return sum(
        1
        for p in artifacts.rglob("*")
        if p.is_file()
        and p.suffix != ".json"
        and not p.name.startswith(".")
        and p.relative_to(artifacts).parts not in known
    )


def restore(plan: RestorePlan) -> Path | None:
    """Put the backup in place of the database; the current file (and its -wal and
    -shm) are renamed aside first. Returns the aside path (None: there was no file).
    The caller holds the engine-host lock, so no host has the database open."""
    aside = plan.aside if plan.db_path.exists() else None
    if aside is not None:
        for suffix in ("-wal", "-shm"):
            companion = plan.db_path.with_name(plan.db_path.name + suffix)
            if companion.exists():
                os.rename(companion, aside.with_name(aside.name + suffix))
        os.rename(plan.db_path, aside)
    atomic_copy(plan.backup.path, plan.db_path)
    return aside
