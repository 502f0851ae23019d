"""The store: WAL, owner-only data dir, schema versions, events with the Unix user."""

from __future__ import annotations

import shutil
import sqlite3
import stat
from pathlib import Path

import pytest
from sqlmodel import select

from medialab_tui.config import DataDir, current_user
from medialab_tui.store import db as store_db
from medialab_tui.store.db import SCHEMA_VERSION, SchemaTooNew, Store
from medialab_tui.store.tables import Event, Run

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def test_data_dir_is_created_owner_only(tmp_path: Path) -> None:
    data = DataDir(tmp_path / "home").ensure()
    for path in (data.root, data.models, data.artifacts, data.logs):
        assert stat.S_IMODE(path.stat().st_mode) == 0o700


def test_database_uses_wal_and_records_its_schema_version(tmp_path: Path) -> None:
    store = Store(tmp_path / "m.db")
    conn = sqlite3.connect(tmp_path / "m.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.schema_version() == SCHEMA_VERSION


def test_every_recorded_event_names_the_unix_user(tmp_path: Path) -> None:
    store = Store(tmp_path / "m.db")
    with store.write() as s:
        run = Run(name="x", pipeline={"stages": []})
        s.add(run)
        s.flush()
        store.record(s, "run.submit", "run", run.id)
    with store.read() as s:
        events = s.exec(select(Event)).all()
    assert [(e.user, e.action, e.object_id) for e in events] == [
        (current_user(), "run.submit", run.id)
    ]


def test_version_1_database_opens_with_everything_in_it(tmp_path: Path) -> None:
    """A database written by schema 1 (kept in tests/fixtures) opens without losing rows."""
    db = tmp_path / "old.db"
    shutil.copyfile(FIXTURES / "medialab-v1.db", db)
    store = Store(db)
    assert store.schema_version() == SCHEMA_VERSION
    conn = sqlite3.connect(db)
    counts = {
        t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
        for t in ("run", "job", "artifact", "model", "event")
    }
    assert counts == {"run": 1, "job": 2, "artifact": 2, "model": 1, "event": 3}


def test_migration_keeps_a_backup_and_runs_each_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The migration path: a newer schema runs every step from the old version, after a backup."""
    db = tmp_path / "old.db"
    shutil.copyfile(FIXTURES / "medialab-v1.db", db)
    monkeypatch.setattr(store_db, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    monkeypatch.setitem(
        store_db.MIGRATIONS,
        SCHEMA_VERSION,
        lambda conn: conn.execute("ALTER TABLE run ADD COLUMN note TEXT DEFAULT ''"),
    )
    store = Store(db)
    assert store.schema_version() == SCHEMA_VERSION + 1
    assert (tmp_path / "old.db.v1.bak").exists()  # the fixture is schema 1
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT name, note FROM run").fetchall() == [("portraits", "")]


def test_a_database_from_a_newer_medialab_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "new.db"
    Store(db)
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("UPDATE meta SET value='999' WHERE key='schema_version'")
    conn.close()
    with pytest.raises(SchemaTooNew, match="newer medialab"):
        Store(db)
