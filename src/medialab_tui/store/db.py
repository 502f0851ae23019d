"""The SQLite store: connections, schema versions and the audit trail.

Several processes share one database file (the engine host, CLI clients, other
TUIs), so it runs in WAL mode and every writing transaction starts with
`BEGIN IMMEDIATE`: a writer waits for the lock up front instead of failing half
way through when another process got there first.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlmodel import Session, SQLModel

from medialab_tui.config import current_user
from medialab_tui.errors import MedialabError
from medialab_tui.store.tables import Event

SCHEMA_VERSION = 1

# version N -> the function that takes a database from N to N+1.
MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {}


def _make_engine(path: Path, *, immediate: bool) -> Engine:
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


class Store:
    """One data directory's database, opened (and migrated) once per process."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.user = current_user()
        self._migrate()
        self._reader = _make_engine(path, immediate=False)
        self._writer = _make_engine(path, immediate=True)

    def _migrate(self) -> None:
        """Create the schema, or bring an older database up to this version."""
        fresh = not self.path.exists()
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            version = int(row[0]) if row else 0
            if version > SCHEMA_VERSION:
                conn.execute("ROLLBACK")
                raise SchemaTooNew(
                    f"{self.path} was written by a newer medialab (schema {version}, "
                    f"this one knows {SCHEMA_VERSION}); upgrade medialab to open it."
                )
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

    def schema_version(self) -> int:
        with self.read() as s:
            row = (
                s.connection()
                .execute(text("SELECT value FROM meta WHERE key='schema_version'"))
                .fetchone()
            )
        return int(row[0]) if row else 0

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reading; it never takes the write lock."""
        with Session(self._reader, expire_on_commit=False) as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A writing transaction, committed on success and rolled back on error."""
        with Session(self._writer, expire_on_commit=False) as session:
            yield session
            session.commit()

    def record(
        self,
        session: Session,
        action: str,
        object_type: str,
        object_id: int | None,
        **details: Any,
    ) -> None:
        """Add an audit event to the current write transaction."""
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
        self._reader.dispose()
        self._writer.dispose()
