"""The SQLite store: connections, schema versions and the audit trail.

Several processes share one database file (the engine host, CLI clients, other
TUIs), so it runs in WAL mode and every writing transaction starts with
`BEGIN IMMEDIATE`: a writer waits for the lock up front instead of failing half
way through when another process got there first.

Opening checks the file first and refuses, with `StoreDamaged`, a database that
is damaged, or missing or empty while its data directory shows it had history:
SQLite would otherwise start a new, empty one over it and the history would be
silently gone. Nothing is written to a file that fails the check, nor to one of
this schema version: opening then only reads.

Reads for listings go through plain read-only `sqlite3` connections (`reading`),
whose rows come back converted as SQLModel would (JSON, times, booleans), so a
listing command never imports SQLAlchemy; sessions (`read`, `write`) create their
SQLAlchemy engines on first use. `changes()` is a cheap counter that moves on every
commit, this process's or another's, for pollers that re-query only on a change.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medialab_tui.config import current_user
from medialab_tui.errors import MedialabError
from medialab_tui.store import backup

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from sqlmodel import Session

SCHEMA_VERSION = 4


def _add_model_labels(conn: sqlite3.Connection) -> None:
    """Schema 2: people's tags and notes on models, by model name (`tables.ModelLabel`)."""
    conn.execute(
        "CREATE TABLE modellabel (name VARCHAR NOT NULL, tags JSON NOT NULL,"
        " note VARCHAR NOT NULL, updated_at DATETIME NOT NULL, PRIMARY KEY (name))"
    )


def _model_roots(conn: sqlite3.Connection) -> None:
    """Schema 3: each model records its root and its path relative to it, and whether
    its hashes are still to be computed. Models in `<data>/models` get the root `models`
    (relative to the data directory, so a copied data directory keeps them); the others
    keep their absolute path until the next scan finds their root."""
    conn.execute("ALTER TABLE model ADD COLUMN root VARCHAR NOT NULL DEFAULT ''")
    conn.execute("ALTER TABLE model ADD COLUMN rel VARCHAR NOT NULL DEFAULT ''")
    conn.execute("ALTER TABLE model ADD COLUMN hash_pending BOOLEAN NOT NULL DEFAULT 0")
    file = next((row[2] for row in conn.execute("PRAGMA database_list") if row[1] == "main"), "")
    models = Path(file).resolve().parent / "models" if file else None
    for ident, path in conn.execute("SELECT id, path FROM model").fetchall():
        if models is not None and Path(path).is_relative_to(models):
            root, rel = "models", Path(path).relative_to(models).as_posix()
        else:
            root, rel = "", path
        conn.execute("UPDATE model SET root = ?, rel = ? WHERE id = ?", (root, rel, ident))


def _job_worker(conn: sqlite3.Connection) -> None:
    """Schema 4: each job records the worker that ran it (config `devices`, a Dask
    node), and each run's next queued job is one index seek (the fair claim)."""
    conn.execute("ALTER TABLE job ADD COLUMN worker VARCHAR NOT NULL DEFAULT ''")
    conn.execute("CREATE INDEX ix_job_run_queue ON job (status, run_id, priority, id)")


# version N -> the function that takes a database from N to N+1.
MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {
    1: _add_model_labels,
    2: _model_roots,
    3: _job_worker,
}


def _make_engine(path: Path, *, immediate: bool) -> Engine:
    from sqlalchemy import create_engine, event

    engine = create_engine(
        f"sqlite:///{path}",
        connect_args={"timeout": 30, "check_same_thread": False},
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
        # Let us issue BEGIN ourselves (pysqlite's own BEGIN is always deferred).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


class SchemaTooNew(MedialabError):
    """The database was written by a newer medialab."""


class StoreDamaged(MedialabError):
    """The database cannot be trusted: damaged, or gone while the data dir has history.

    `problem` ends the sentence about the file ("is damaged (…)"); the advice comes
    from the newest backup, when there is one.
    """

    exit_code = 4

    def __init__(self, path: Path, problem: str) -> None:
        self.path = path
        self.problem = problem
        self.newest_backup = next(iter(backup.list_backups(path)), None)
        super().__init__(self.sentence)

    @property
    def sentence(self) -> str:
        if self.newest_backup is not None:
            advice = (
                "`medialab doctor --restore` brings back the backup from "
                f"{self.newest_backup.label}"
            )
        else:
            advice = f"there is no backup of it in {backup.backups_dir(self.path)}"
        return f"the database {self.path} {self.problem}; nothing was changed, and {advice}."


def _history(path: Path) -> str:
    """What in the database's data directory shows it had rows ('' when nothing does)."""
    root, seen = path.parent, []
    runs = sum(1 for _ in (root / "artifacts").glob("r*")) if (root / "artifacts").is_dir() else 0
    if runs:
        seen.append(f"{runs} run folder{'s' if runs != 1 else ''} in artifacts/")
    inputs = sum(1 for _ in (root / "inputs").iterdir()) if (root / "inputs").is_dir() else 0
    if inputs:
        seen.append(f"{inputs} input file{'s' if inputs != 1 else ''} in inputs/")
    backups = len(backup.list_backups(path))
    if backups:
        seen.append(f"{backups} backup{'s' if backups != 1 else ''}")
    return ", ".join(seen)


def check_database(path: Path, *, deep: bool = False) -> None:
    """Raise `StoreDamaged` unless the database at `path` can be opened safely.

    Cheap by default (the header, the schema, and SQLite's quick_check on small
    files); `deep` runs the quick_check at any size, as the engine host does at start.
    """
    found = backup.problem(path, deep=deep)
    if found is None and (not path.exists() or path.stat().st_size == 0):
        history = _history(path)
        if history:
            state = "empty (0 bytes)" if path.exists() else "missing"
            found = f"is {state} although this data directory has history ({history})"
    if found is not None:
        raise StoreDamaged(path, found)


def damage_of(exc: BaseException, path: Path) -> StoreDamaged | None:
    """The `StoreDamaged` that a database error met later on stands for, if it is one."""
    if isinstance(exc, StoreDamaged):
        return exc
    if backup.is_damage(exc):
        return StoreDamaged(path, f"is damaged ({_sqlite_words(exc)})")
    return None


def _sqlite_words(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    return str(orig if isinstance(orig, BaseException) else exc).splitlines()[0]


def _owner_only(path: Path) -> None:
    """The database and its WAL/SHM are owner-only (SQLite gives the WAL and SHM the
    database file's mode), also when an older medialab made them readable."""
    for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            if file.stat().st_mode & 0o077:
                file.chmod(0o600)
        except OSError:  # gone meanwhile, or not ours to change
            pass


def _stored_time(raw: bytes) -> datetime:
    """A stored time, aware and in UTC (SQLite keeps UTC without an offset), as SQLModel
    returns it."""
    ts = datetime.fromisoformat(raw.decode())
    return ts.replace(tzinfo=UTC) if ts.utcoffset() is None else ts.astimezone(UTC)


# How a plain `sqlite3` connection opened with PARSE_DECLTYPES turns the column types
# SQLModel declares into the values SQLModel gives (VARCHAR, INTEGER, FLOAT need none).
sqlite3.register_converter("JSON", json.loads)
sqlite3.register_converter("DATETIME", _stored_time)
sqlite3.register_converter("BOOLEAN", lambda raw: bool(int(raw)))


def _read_only(path: Path) -> sqlite3.Connection:
    """A connection that can only read, usable from any thread (one at a time)."""
    conn = sqlite3.connect(
        f"{path.resolve().as_uri()}?mode=ro",
        uri=True,
        timeout=30,
        isolation_level=None,
        check_same_thread=False,
        detect_types=sqlite3.PARSE_DECLTYPES,
    )
    conn.row_factory = sqlite3.Row
    return conn


def _schema_too_new(path: Path, version: int) -> SchemaTooNew:
    return SchemaTooNew(
        f"{path} was written by a newer medialab (schema {version}, "
        f"this one knows {SCHEMA_VERSION}); upgrade medialab to open it."
    )


def _stored_version(conn: sqlite3.Connection) -> int:
    """The schema version a database records (0: none yet)."""
    try:
        row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    except sqlite3.OperationalError:  # no meta table: a new database
        return 0
    return int(row[0]) if row else 0


class Store:
    """One data directory's database, checked, opened (and migrated) once per process."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.user = current_user()
        check_database(path)
        self._migrate()
        _owner_only(path)
        self._engines: dict[bool, Engine] = {}
        self._engines_lock = threading.Lock()
        self._lock = threading.Lock()  # the idle readers, the counter, the commit count
        self._idle_readers: list[sqlite3.Connection] = []
        self._counter: sqlite3.Connection | None = None
        self._own_commits = 0
        self._writer_lock = threading.Lock()
        self._plain_writer: sqlite3.Connection | None = None

    def _migrate(self) -> None:
        """Create the schema, or bring an older database up to this version.

        A database of this version is only read: opening a store for a listing takes
        no write lock and writes nothing.
        """
        if self.path.exists() and self.path.stat().st_size:
            conn = _read_only(self.path)
            try:
                version = _stored_version(conn)
            finally:
                conn.close()
            if version > SCHEMA_VERSION:
                raise _schema_too_new(self.path, version)
            if version == SCHEMA_VERSION:
                return
        fresh = not self.path.exists()
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            version = _stored_version(conn)
            if version > SCHEMA_VERSION:
                conn.execute("ROLLBACK")
                raise _schema_too_new(self.path, version)
            if version and version < SCHEMA_VERSION and not fresh:
                conn.execute("ROLLBACK")
                self._backup(version)
                conn.execute("BEGIN IMMEDIATE")
                for v in range(version, SCHEMA_VERSION):
                    MIGRATIONS[v](conn)
            conn.execute("COMMIT")
        finally:
            conn.close()
        if version == 0:
            from sqlmodel import SQLModel

            import medialab_tui.store.tables  # noqa: F401 - the tables SQLModel creates

            # New database: create every table, then record the version.
            engine = _make_engine(self.path, immediate=True)
            SQLModel.metadata.create_all(engine)
            engine.dispose()
        if version != SCHEMA_VERSION:
            conn = sqlite3.connect(self.path, timeout=30)
            with conn:
                conn.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)",
                    (str(SCHEMA_VERSION),),
                )
            conn.close()

    def _backup(self, version: int) -> None:
        """Copy the database aside before a migration touches it."""
        target = self.path.with_name(f"{self.path.name}.v{version}.bak")
        if not target.exists():
            src = sqlite3.connect(self.path)
            dst = sqlite3.connect(target)
            src.backup(dst)
            dst.close()
            src.close()

    def verify(self) -> None:
        """The full check (`PRAGMA quick_check`, whatever the size): `StoreDamaged` if it fails."""
        check_database(self.path, deep=True)

    def schema_version(self) -> int:
        with self.reading() as conn:
            return _stored_version(conn)

    # -- plain reads -----------------------------------------------------------------

    @contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """A read-only connection in one read transaction (one snapshot for every
        statement), its rows `sqlite3.Row`s with JSON, times and booleans converted.

        Connections are kept for the next reader, so a poller pays no connect.
        """
        with self._lock:
            conn = self._idle_readers.pop() if self._idle_readers else None
        if conn is None:
            conn = _read_only(self.path)
        try:
            conn.execute("BEGIN")
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            conn.close()
            raise
        with self._lock:
            self._idle_readers.append(conn)

    def changes(self) -> tuple[int, int]:
        """A value that differs after every commit to the database since it was read.

        `PRAGMA data_version` on one long-lived connection moves when another
        connection commits (another process's, or this process's sessions); the count
        of this store's own commits is added so they count however SQLite sees them.
        Costs one pragma: no table is read.
        """
        with self._lock:
            if self._counter is None:
                self._counter = _read_only(self.path)
            version = int(self._counter.execute("PRAGMA data_version").fetchone()[0])
            return version, self._own_commits

    # -- settings, without a session --------------------------------------------------

    def setting(self, key: str) -> str | None:
        """The value of one `setting` row, None when there is none."""
        with self.reading() as conn:
            row = conn.execute("SELECT value FROM setting WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def settings(self, prefix: str) -> dict[str, str]:
        """The `setting` rows whose keys start with `prefix`, key → value."""
        with self.reading() as conn:
            rows = conn.execute(
                "SELECT key, value FROM setting WHERE substr(key, 1, ?) = ?", (len(prefix), prefix)
            ).fetchall()
        return {str(key): str(value) for key, value in rows}

    def put_setting(self, key: str, value: str) -> None:
        """Write one `setting` row, in a transaction of its own (the same value again
        changes nothing, so the change counter stays)."""
        self._write_settings(
            "INSERT INTO setting (key, value) VALUES (?, ?) ON CONFLICT (key)"
            " DO UPDATE SET value = excluded.value WHERE value IS NOT excluded.value",
            [(key, value)],
        )

    def drop_settings(self, *keys: str) -> None:
        """Remove `setting` rows (those that are there), in one transaction."""
        self._write_settings("DELETE FROM setting WHERE key = ?", [(key,) for key in keys])

    def take_setting(self, key: str) -> str | None:
        """Remove one `setting` row and return its value, in one transaction: of several
        processes taking the same key, exactly one gets it (None for the others)."""
        taken: list[str] = []

        def take(conn: sqlite3.Connection) -> None:
            row = conn.execute("SELECT value FROM setting WHERE key = ?", (key,)).fetchone()
            if row is not None:
                conn.execute("DELETE FROM setting WHERE key = ?", (key,))
                taken.append(str(row[0]))

        self._plain_write(take)
        return taken[0] if taken else None

    def _write_settings(self, sql: str, rows: list[tuple[str, ...]]) -> None:
        self._plain_write(lambda conn: conn.executemany(sql, rows))

    def _plain_write(self, work: Callable[[sqlite3.Connection], object]) -> None:
        """Small writes that must not cost SQLAlchemy's import: a TUI's heartbeat, the
        host's card. One plain connection, kept, used by one thread at a time."""
        with self._writer_lock:
            if self._plain_writer is None:
                self._plain_writer = sqlite3.connect(
                    self.path, timeout=30, isolation_level=None, check_same_thread=False
                )
                self._plain_writer.execute("PRAGMA synchronous=NORMAL")  # as the sessions'
            conn = self._plain_writer
            before = conn.total_changes
            conn.execute("BEGIN IMMEDIATE")
            try:
                work(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            changed = conn.total_changes != before
        if changed:
            with self._lock:
                self._own_commits += 1

    # -- sessions --------------------------------------------------------------------

    def _engine(self, *, immediate: bool) -> Engine:
        with self._engines_lock:
            engine = self._engines.get(immediate)
            if engine is None:
                engine = self._engines[immediate] = _make_engine(self.path, immediate=immediate)
            return engine

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reading; it never takes the write lock."""
        from sqlmodel import Session

        with Session(self._engine(immediate=False), expire_on_commit=False) as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A writing transaction, committed on success and rolled back on error."""
        from sqlmodel import Session

        with Session(self._engine(immediate=True), expire_on_commit=False) as session:
            yield session
            session.commit()
            with self._lock:
                self._own_commits += 1

    def record(
        self,
        session: Session,
        action: str,
        object_type: str,
        object_id: int | None,
        **details: Any,
    ) -> None:
        """Add an audit event to the current write transaction."""
        from medialab_tui.store.tables import Event

        session.add(
            Event(
                user=self.user,
                action=action,
                object_type=object_type,
                object_id=object_id,
                details=details,
            )
        )

    def dispose(self) -> None:
        with self._engines_lock:
            engines, self._engines = list(self._engines.values()), {}
        with self._lock:
            readers, self._idle_readers = self._idle_readers, []
            counter, self._counter = self._counter, None
        with self._writer_lock:
            writer, self._plain_writer = self._plain_writer, None
        for engine in engines:
            engine.dispose()
        for conn in [*readers, counter, writer]:
            if conn is not None:
                conn.close()
