"""A damaged or vanished database is refused, never overwritten, and can be restored
from the engine host's rolling backups (hardening item 2).

The history comes from a real run through the CLI (an input image upscaled with the
built-in Lanczos, so no models are needed); the damage is done to the real SQLite
file; every command is a real `medialab` subprocess.
"""

from __future__ import annotations

import random
import shutil
import signal
import sqlite3
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DatabaseError

from conftest import EXAMPLES, Home, wait_for
from medialab_tui.engine.host import HostLock
from medialab_tui.store import backup
from medialab_tui.store.db import Store, StoreDamaged, damage_of
from medialab_tui.store.tables import Run, Setting

pytestmark = pytest.mark.slow

UPSCALE = f"""
name = "up"
[inputs]
images = ["{EXAMPLES / "images" / "rings.png"}"]
[[stages]]
type = "upscale"
model = "lanczos"
scale = 2
"""


def _half(db: Path) -> None:
    with db.open("r+b") as fh:
        fh.truncate(db.stat().st_size // 2)


def _garbage(db: Path) -> None:
    """The middle third of the pages overwritten with noise; the header page intact."""
    page = 4096
    pages = db.stat().st_size // page
    start, end = max(1, pages // 3), max(2, 2 * pages // 3)
    noise = random.Random(8).randbytes((end - start) * page)
    with db.open("r+b") as fh:
        fh.seek(start * page)
        fh.write(noise)


def _zero(db: Path) -> None:
    db.write_bytes(b"")


def _not_a_database(db: Path) -> None:
    db.write_text("these are the operator's notes, not a database\n" * 200)


DAMAGE: dict[str, Callable[[Path], None]] = {
    "truncated-to-half": _half,
    "garbage-over-pages": _garbage,
    "zero-bytes-with-history": _zero,
    "not-a-database": _not_a_database,
}
COMMANDS = {
    "runs": ["runs"],
    "jobs": ["jobs", "--json"],
    "gallery": ["gallery"],
    "run": ["run", "PIPELINE"],
    "serve": ["serve"],
    "doctor": ["doctor"],
}


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory with history: one real run, and the backup its host took."""
    root = tmp_path_factory.mktemp("made") / "home"
    root.mkdir()
    home = Home(root)
    home.cli("run", str(home.pipeline("up", UPSCALE)), "--json", check=True)
    home.cli("stop", check=True)  # the host `run` started; it finishes its backup first
    return root


@pytest.fixture
def copy_of(made: Path, tmp_path: Path) -> Callable[[], Home]:
    def copy() -> Home:
        root = tmp_path / "home"
        shutil.copytree(made, root, symlinks=True)
        home = Home(root)
        home.pipeline("up", UPSCALE)
        return home

    return copy


def _db(home: Home) -> Path:
    return home.root / "medialab.db"


def _one_sentence(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_store_is_refused_with_one_sentence_and_left_as_it_was(
    copy_of: Callable[[], Home], damage: str, command: str
) -> None:
    home = copy_of()
    DAMAGE[damage](_db(home))
    before = _db(home).read_bytes()
    args = [str(home.root.parent / "up.toml") if a == "PIPELINE" else a for a in COMMANDS[command]]
    proc = home.cli(*args, timeout=120)
    assert proc.returncode == 4, (proc.stdout, proc.stderr)
    sentence = _one_sentence(proc.stderr)
    assert sentence.startswith(f"medialab: the database {_db(home)} is ")
    assert "nothing was changed" in sentence and "medialab doctor --restore" in sentence
    assert _db(home).read_bytes() == before
    if command == "doctor":
        assert "DAMAGED" in proc.stdout and "backups" in proc.stdout
    if damage == "zero-bytes-with-history":
        assert "is empty (0 bytes) although this data directory has history" in sentence


def test_the_host_checks_the_whole_of_a_large_store_before_serving(
    copy_of: Callable[[], Home],
) -> None:
    """Past `FULL_CHECK_BYTES` opening reads only the header, schema and table roots;
    `serve` still runs the full quick_check and refuses a bad page anywhere."""
    home = copy_of()
    store = Store(_db(home))
    with store.write() as s:
        s.add(Setting(key="filler", value="x" * (backup.FULL_CHECK_BYTES + 1024 * 1024)))
    store.dispose()
    size = _db(home).stat().st_size
    assert size > backup.FULL_CHECK_BYTES
    with _db(home).open("r+b") as fh:  # noise over ten pages of the filler's overflow chain
        fh.seek(size // 2 // 4096 * 4096)
        fh.write(random.Random(5).randbytes(10 * 4096))
    before = _db(home).read_bytes()
    proc = home.cli("serve", timeout=120)
    assert proc.returncode == 4, (proc.stdout, proc.stderr)
    assert "is damaged (SQLite's quick_check: " in _one_sentence(proc.stderr)
    assert _db(home).read_bytes() == before
    assert not (home.root / "engine.lock").read_text()  # the lock was let go


def test_a_deleted_database_with_history_is_refused_and_not_recreated(
    copy_of: Callable[[], Home],
) -> None:
    home = copy_of()
    _db(home).unlink()
    proc = home.cli("runs")
    assert proc.returncode == 4
    assert "is missing although this data directory has history" in _one_sentence(proc.stderr)
    assert not _db(home).exists()


def test_a_new_data_directory_starts_empty(empty_home: Home) -> None:
    proc = empty_home.cli("runs")
    assert proc.returncode == 0 and "No runs yet" in proc.stdout
    assert proc.stderr.count("\n") <= 1  # at most the notice that the folder was tightened


def test_the_first_completed_job_of_a_host_leaves_an_owner_only_backup(made: Path) -> None:
    found = backup.list_backups(made / "medialab.db")
    # One at the host's start (the run was queued, nothing made yet), one after its job.
    assert len(found) == 2
    assert backup.counts(found[0].path) == {"run": 1, "job": 1, "artifact": 1}
    assert backup.counts(found[1].path) == {"run": 1, "job": 1, "artifact": 0}
    assert stat.S_IMODE(found[0].path.stat().st_mode) == 0o600
    assert stat.S_IMODE((made / "backups").stat().st_mode) == 0o700


def test_the_host_backs_up_the_store_when_it_starts(copy_of: Callable[[], Home]) -> None:
    home = copy_of()
    shutil.rmtree(home.root / "backups")
    serve = home.spawn("serve")
    try:

        def backed_up() -> list[backup.Backup]:
            """the serve process to take its backup at start"""
            return backup.list_backups(_db(home))

        taken = wait_for(backed_up, timeout=60)
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.wait(timeout=30)
    assert serve.returncode == 0, serve.stderr.read() if serve.stderr else ""
    assert backup.counts(taken[0].path) == {"run": 1, "job": 1, "artifact": 1}
    assert backup.problem(taken[0].path, deep=True) is None


def test_backups_roll_only_when_the_data_changed_and_keep_three(tmp_path: Path) -> None:
    db = tmp_path / "medialab.db"
    store = Store(db)
    first = backup.take_backup(db)
    assert first is not None and backup.take_backup(db) == first  # nothing new: no copy
    for n in range(4):
        with store.write() as s:
            s.add(Run(name=f"r{n}", pipeline={"stages": []}))
        backup.take_backup(db)
    kept = backup.list_backups(db)
    assert len(kept) == backup.KEEP_BACKUPS
    assert [backup.counts(b.path)["run"] for b in kept] == [4, 3, 2]


def test_every_nth_completed_job_takes_a_backup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(backup, "BACKUP_EVERY_JOBS", 3)
    db = tmp_path / "medialab.db"
    store = Store(db)
    backup.host_started(db)

    def counted() -> list[int | None]:
        return [backup.counts(b.path)["run"] for b in backup.list_backups(db)]

    for n in range(1, 7):
        with store.write() as s:
            s.add(Run(name=f"r{n}", pipeline={"stages": []}))
        backup.job_completed(db)
        # The copy runs on a thread of its own; wait for it before the next job.
        backup.finish_pending()
        if n in (1, 3, 6):
            assert counted()[:1] == [n]
        else:
            assert counted()[:1] == [n - 1 if n < 3 else 3]
    # The host's first job backs up too (its start backup predates its work).
    assert counted() == [6, 3, 1]


def test_a_backup_that_cannot_be_written_does_not_stop_the_host(tmp_path: Path) -> None:
    db = tmp_path / "medialab.db"
    Store(db).dispose()
    (tmp_path / "backups").write_text("a file where the folder should be")
    assert backup.host_started(db) is None


@pytest.mark.parametrize("damage", DAMAGE)
def test_restore_brings_the_rows_back_and_keeps_the_damaged_file_aside(
    copy_of: Callable[[], Home], damage: str
) -> None:
    home = copy_of()
    DAMAGE[damage](_db(home))
    damaged = _db(home).read_bytes()

    refused = home.cli("doctor", "--restore")  # no terminal: --yes is required
    assert refused.returncode == 2
    assert "pass --yes" in refused.stderr.strip().splitlines()[-1]
    assert _db(home).read_bytes() == damaged

    proc = home.cli("doctor", "--restore", "--yes")
    assert proc.returncode == 0, proc.stderr
    taken = backup.list_backups(_db(home))[0]
    assert f"The newest good backup is from {taken.label}: 1 run, 1 job, 1 artifact." in (
        proc.stderr
    )
    assert "Traceback" not in proc.stderr
    aside = list(home.root.glob("medialab.db.damaged-*[0-9]Z"))
    assert len(aside) == 1 and aside[0].read_bytes() == damaged
    assert str(aside[0]) in proc.stdout
    runs = home.json("runs")
    assert isinstance(runs, list) and [r["id"] for r in runs] == ["r1"]
    assert len(home.json("gallery")) == 1  # type: ignore[arg-type]


def test_restore_tells_what_is_lost_since_the_backup(copy_of: Callable[[], Home]) -> None:
    home = copy_of()
    store = Store(_db(home))
    with store.write() as s:
        s.add(Run(name="after the backup", pipeline={"stages": []}))
    store.dispose()
    proc = home.cli("doctor", "--restore", "--yes")
    assert proc.returncode == 0, proc.stderr
    assert (
        "The current database reads fine: it holds 2 runs, 1 job, 1 artifact; "
        "1 run made after the backup will be lost." in proc.stderr
    )


def test_restore_waits_for_the_engine_host_to_stop(copy_of: Callable[[], Home]) -> None:
    home = copy_of()
    _zero(_db(home))
    lock = HostLock(home.root / "engine.lock")
    assert lock.try_acquire("serve")
    try:
        proc = home.cli("doctor", "--restore", "--yes")
    finally:
        lock.release()
    assert proc.returncode == 4
    assert "before restoring" in _one_sentence(proc.stderr)
    assert _db(home).read_bytes() == b""


def test_restore_without_a_good_backup_changes_nothing(copy_of: Callable[[], Home]) -> None:
    home = copy_of()
    _half(_db(home))
    for found in backup.list_backups(_db(home)):
        _garbage(found.path)
    before = _db(home).read_bytes()
    proc = home.cli("doctor", "--restore", "--yes")
    assert proc.returncode == 4
    assert "there is no good backup" in _one_sentence(proc.stderr)
    assert _db(home).read_bytes() == before


def test_damage_met_after_opening_names_the_file(tmp_path: Path) -> None:
    """A page read after the open-time check that turns out bad is `StoreDamaged` (exit 4)
    at the CLI's edge, through SQLAlchemy's wrapping; a locked database is not damage."""
    db = tmp_path / "medialab.db"
    store = Store(db)
    with store.write() as s:
        for n in range(300):
            s.add(Run(name=f"run {n} " * 20, pipeline={"stages": []}))
    store.dispose()
    _garbage(db)
    engine = create_engine(f"sqlite:///{db}")
    with pytest.raises(DatabaseError) as caught, engine.connect() as conn:
        conn.execute(text("SELECT * FROM run")).fetchall()
    engine.dispose()
    damage = damage_of(caught.value, db)
    assert isinstance(damage, StoreDamaged) and damage.exit_code == 4
    assert damage.sentence.startswith(f"the database {db} is damaged (")
    assert damage_of(sqlite3.OperationalError("database is locked"), db) is None
