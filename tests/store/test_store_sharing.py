"""One process's store beside other processes' connections: SQLite's locks hold."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

from medialab_tui.store.db import Store

WRITE = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
conn.execute("INSERT INTO setting (key, value) VALUES (?, '1')", (sys.argv[2],))
conn.close()
"""

HOLD = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1])
conn.execute("SELECT 1 FROM setting").fetchall()
sys.stdin.read()
conn.close()
"""


def _write(path: Path, key: str) -> None:
    subprocess.run([sys.executable, "-c", WRITE, str(path), key], check=True, timeout=60)


def test_opening_the_store_again_keeps_the_first_stores_view_of_other_writers(
    tmp_path: Path,
) -> None:
    """Opening a second store checks the file; were that check to open the file
    itself, closing it would drop the SQLite locks of the first store's connections
    (POSIX locks are per process), and the last other connection to leave would
    reset the WAL under them: a TUI would stop seeing the queue, a new host would not
    see the jobs waiting for it."""
    path = tmp_path / "medialab.db"
    store = Store(path)
    store.put_setting("mine", "1")
    other = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path)], stdin=subprocess.PIPE, text=True
    )
    try:
        for _ in range(3):
            assert store.setting("mine") == "1"
            Store(path).setting("mine")  # e.g. `doctor` or a screen opening it again
    finally:
        other.communicate("", timeout=60)
    _write(path, "first")
    _write(path, "second")
    assert set(store.settings("")) == {"mine", "first", "second"}
    fresh = sqlite3.connect(path)
    try:
        assert fresh.execute("SELECT count(*) FROM setting").fetchone()[0] == 3
    finally:
        fresh.close()
