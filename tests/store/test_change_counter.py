"""The store's change counter, and the TUI client answering polls from it.

An idle studio must not query the store on every poll: `Store.changes()` moves on
every commit, another process's or this one's, and `StudioClient` re-runs a listing
only when it moved.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from conftest import ROOT
from medialab_tui.client import StudioClient
from medialab_tui.config import DataDir, load_config
from medialab_tui.store import queries
from medialab_tui.store.db import Store
from medialab_tui.store.tables import Artifact, Job, Run, Setting

ANOTHER_PROCESS_ADDS_A_RUN = """
import sys
from pathlib import Path
from medialab_tui.store.db import Store
from medialab_tui.store.tables import Run
store = Store(Path(sys.argv[1]))
with store.write() as s:
    s.add(Run(name=sys.argv[2], pipeline={}))
store.dispose()
"""


def add_run_from_another_process(db: Path, name: str) -> None:
    subprocess.run(
        [sys.executable, "-c", ANOTHER_PROCESS_ADDS_A_RUN, str(db), name],
        check=True,
        cwd=ROOT,
        timeout=60,
    )


@pytest.fixture
def data(tmp_path: Path) -> DataDir:
    return DataDir(tmp_path / "home").ensure()


@pytest.fixture
def store(data: DataDir) -> Iterator[Store]:
    store = Store(data.db_path)
    with store.write() as s:
        run = Run(name="first", pipeline={})
        s.add(run)
        s.flush()
        job = Job(run_id=run.id or 0, stage="txt2img", item={"prompt": "p"}, params={})
        s.add(job)
        s.flush()
        s.add(
            Artifact(
                run_id=run.id or 0,
                job_id=job.id or 0,
                stage="txt2img",
                path="/nowhere/a1.png",
                name="a1",
                params={},
                created_at=datetime(2026, 11, 20, tzinfo=UTC),
            )
        )
    yield store
    store.dispose()


def test_the_counter_stays_while_nothing_is_committed(store: Store, data: DataDir) -> None:
    before = store.changes()
    queries.list_runs(store)
    queries.gallery(store, queries.GalleryQuery())
    # Another process only reading does not move it either.
    subprocess.run(
        [sys.executable, "-m", "medialab_tui", "--data-dir", str(data.root), "jobs", "--json"],
        check=True,
        capture_output=True,
        cwd=ROOT,
        timeout=60,
    )
    assert store.changes() == before


def test_the_counter_moves_when_another_process_commits(store: Store) -> None:
    before = store.changes()
    add_run_from_another_process(store.path, "from elsewhere")
    after = store.changes()
    assert after != before
    add_run_from_another_process(store.path, "and again")
    assert store.changes() not in (before, after)


def test_the_counter_moves_with_this_process_own_writes(store: Store) -> None:
    before = store.changes()
    with store.write() as s:
        s.add(Setting(key="queue_state", value="paused"))
    after = store.changes()
    assert after != before
    # Also a write that does not go through the store's sessions.
    conn = sqlite3.connect(store.path)
    with conn:
        conn.execute("UPDATE setting SET value = 'active' WHERE key = 'queue_state'")
    conn.close()
    assert store.changes() not in (before, after)


def test_a_write_that_fails_is_no_change(store: Store) -> None:
    before = store.changes()
    with pytest.raises(RuntimeError), store.write() as s:
        s.add(Setting(key="queue_state", value="paused"))
        s.flush()
        raise RuntimeError("given up half way")
    assert store.changes() == before


@pytest.fixture
def client(data: DataDir, store: Store) -> StudioClient:
    return StudioClient(data, load_config(data), store)


def test_the_client_answers_a_poll_from_its_last_answer_until_the_store_changes(
    client: StudioClient, store: Store
) -> None:
    first = client.runs()
    again = client.runs()
    # The same view objects: the second poll ran no query.
    assert [r.name for r in again] == ["first"]
    assert all(a is b for a, b in zip(first, again, strict=True))
    summary = client.summary(0)
    assert client.summary(0) is summary

    add_run_from_another_process(store.path, "second")
    fresh = client.runs()
    assert [r.name for r in fresh] == ["second", "first"]
    assert fresh[1] is not first[0]
    assert client.summary(0) is not summary


def test_the_client_sees_its_own_writes_at_the_next_poll(client: StudioClient) -> None:
    query = queries.GalleryQuery(starred=True)
    assert client.gallery(query) == []
    assert client.gallery_count(query) == 0
    client.star(1, True)
    assert [a.ref for a in client.gallery(query)] == ["a1"]
    assert client.gallery_count(query) == 1


def test_a_caller_changing_its_answer_does_not_change_the_next(client: StudioClient) -> None:
    runs = client.runs()
    runs.clear()
    assert [r.name for r in client.runs()] == ["first"]


SETTINGS_WITHOUT_SQLALCHEMY = """
import json, sys
from pathlib import Path
from medialab_tui.store.db import Store
store = Store(Path(sys.argv[1]))
before = store.changes()
store.put_setting("client.a", "1")
store.put_setting("client.b", "2")
store.put_setting("client.a", "3")
store.put_setting("other", "4")
moved = store.changes() != before
seen = [store.setting("client.a"), store.setting("gone"), store.settings("client.")]
store.drop_settings("client.b", "gone")
seen.append(store.settings("client."))
print(json.dumps([moved, seen, "sqlalchemy" in sys.modules]))
"""


def test_settings_are_written_and_read_without_sqlalchemy(store: Store) -> None:
    """A TUI's heartbeat and the host's card are small writes: no SQLAlchemy import."""
    proc = subprocess.run(
        [sys.executable, "-c", SETTINGS_WITHOUT_SQLALCHEMY, str(store.path)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        timeout=60,
    )
    moved, seen, imported = json.loads(proc.stdout)
    assert moved and not imported
    assert seen == ["3", None, {"client.a": "3", "client.b": "2"}, {"client.a": "3"}]
    # This process sees the other's commits, through its sessions too.
    assert store.setting("other") == "4"
    with store.read() as s:
        row = s.get(Setting, "client.a")
    assert row is not None and row.value == "3"


def test_a_setting_written_here_moves_this_store_counter(store: Store, data: DataDir) -> None:
    before = store.changes()
    store.put_setting("client.here", "1")
    after = store.changes()
    assert after != before
    # The same value again writes nothing: neither this store nor another sees a change.
    elsewhere = Store(data.db_path)
    seen = elsewhere.changes()
    store.put_setting("client.here", "1")
    store.drop_settings("not.there")
    assert (store.changes(), elsewhere.changes()) == (after, seen)
    store.drop_settings("client.here")
    assert store.changes() not in (before, after)
    assert elsewhere.changes() != seen
    assert store.setting("client.here") is None
    elsewhere.dispose()
