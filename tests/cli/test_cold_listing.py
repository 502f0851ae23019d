"""The listing commands read the store with plain sqlite3: same JSON, same refusals.

`medialab jobs --json` and the other listings must start fast, so they never import
SQLAlchemy (`benchmarks/cli_cold.py` times them). The JSON they print is pinned in
`cold_listing_expected.json`, written by the SQLModel listings they replaced, from
the store `build_varied_store` makes through the ORM.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from conftest import ROOT, Home
from medialab_tui.store.db import SCHEMA_VERSION, SchemaTooNew, Store

EXPECTED = Path(__file__).with_name("cold_listing_expected.json")

LISTINGS: list[tuple[str, ...]] = [
    ("runs", "--json"),
    ("runs", "--json", "--limit", "1"),
    ("jobs", "--json"),
    ("jobs", "--json", "--status", "failed"),
    ("jobs", "--json", "--run", "r1"),
    ("show", "r1", "--json"),
    ("show", "j2", "--json"),
    ("show", "a3", "--json"),
    ("gallery", "--json"),
    ("gallery", "--json", "--starred"),
    ("gallery", "--json", "--search", "FOX"),
    ("gallery", "--json", "--kind", "video"),
    ("gallery", "--json", "--since", "2026-11-21"),
    ("models", "list", "--json"),
    ("models", "list", "--json", "--kind", "lora"),
]


def at(minute: int) -> datetime:
    return datetime(2026, 11, 20, 12, minute, 7, 123456, tzinfo=UTC)


def build_varied_store(root: Path) -> None:
    """Rows through the ORM with every kind of value the listings print: nulls, floats,
    JSON documents, booleans, times, lineage, unicode and control characters."""
    from medialab_tui.store.tables import Artifact, ArtifactParent, Job, Model, Run

    store = Store(root / "medialab.db")
    pipeline = {"name": "foxes", "stages": [{"type": "txt2img", "model": "demo-sd15"}]}
    with store.write() as s:
        s.add(Run(id=1, name="foxes", status="running", pipeline=pipeline, user="ana",
                  created_at=at(1), started_at=at(2)))  # fmt: skip
        s.add(Run(id=2, name="wh\x1bales ✓", status="failed", mode="review", pipeline={},
                  stage_index=1, stage_count=2, priority=3, error="worker ran out of memory",
                  rerun_of=1, source="/p/w.toml", created_at=at(3), started_at=at(4),
                  finished_at=at(5)))  # fmt: skip
        s.flush()
        s.add(Job(id=1, run_id=1, stage="txt2img", status="succeeded", progress=1.0,
                  step=8, total_steps=8, attempts=1, run_seconds=1.23456,
                  item={"prompt": "a red fox", "seed": 7}, params={"steps": 8, "_x": 1},
                  created_at=at(1), started_at=at(2), finished_at=at(3)))  # fmt: skip
        s.add(Job(id=2, run_id=1, stage="txt2img", status="running", progress=1 / 3,
                  step=2, total_steps=6, attempts=2, priority=5,
                  item={"prompt": "fox\nin snow", "seed": None, "images": ["/in/a.png"]},
                  params={}, created_at=at(2)))  # fmt: skip
        s.add(Job(id=3, run_id=2, stage_index=1, stage="upscale", status="failed",
                  error="out of memory", error_kind="oom", item={}, params={},
                  created_at=at(4)))  # fmt: skip
        s.flush()
        s.add(Artifact(id=1, run_id=1, job_id=1, stage="txt2img", path="/nowhere/a1.png",
                       name="a1", prompt="a red FOX", seed=7, model="demo-sd15", width=64,
                       height=64, params={"steps": 8}, created_at=at(3)))  # fmt: skip
        s.add(Artifact(id=2, run_id=1, job_id=2, stage="txt2img", path="/nowhere/a2.png",
                       name="a2", prompt="", seed=None, starred=True, params={},
                       created_at=datetime(2026, 11, 22, 8, 0, 0, tzinfo=UTC)))  # fmt: skip
        s.add(Artifact(id=3, run_id=2, job_id=3, stage="video", kind="video",
                       path="/nowhere/a3.mp4", name="a3", prompt="fox ✓ \x07", width=32,
                       height=24, params={"fps": 8, "frames": 16, "nested": {"a": [1, 2]}},
                       created_at=at(6)))  # fmt: skip
        s.flush()
        s.add(ArtifactParent(artifact_id=3, parent_id=1))
        s.add(ArtifactParent(artifact_id=3, parent_id=2))
        s.add(Model(name="demo-sd15", kind="checkpoint", arch="sd15", format="diffusers",
                    path="/models/demo-sd15", size=123, sha256="ab" * 32, demo=True,
                    added_at=at(0)))  # fmt: skip
        s.add(Model(name="old-lora", kind="lora", arch="sd15", format="pickle",
                    path="/models/old.pt", size=9, safe=False, added_at=at(0)))  # fmt: skip
    store.dispose()


@pytest.fixture(scope="module")
def varied(tmp_path_factory: pytest.TempPathFactory) -> Home:
    root = tmp_path_factory.mktemp("cold-listing") / "home"
    root.mkdir()
    build_varied_store(root)
    return Home(root)


def test_listings_print_the_json_they_printed_before(varied: Home) -> None:
    expected = json.loads(EXPECTED.read_text())
    assert sorted(expected) == sorted(" ".join(args) for args in LISTINGS)
    for args in LISTINGS:
        proc = varied.cli(*args, check=True)
        # Compared as text: `true` is not `1`, nor `1.0` `1`, as they would be in Python.
        printed = canonical(json.loads(proc.stdout))
        assert printed == canonical(expected[" ".join(args)]), args


def canonical(value: object) -> str:
    return json.dumps(value, sort_keys=True, indent=1, ensure_ascii=False)


IMPORTS_CHECK = """
import json, sys
from medialab_tui.cli import main
code = main(sys.argv[1:])
heavy = ("sqlalchemy", "sqlmodel", "pydantic", "textual", "torch", "PIL")
print(json.dumps([code, sorted(m for m in sys.modules if m.split(".")[0] in heavy)]))
"""


@pytest.mark.parametrize("args", [a for a in LISTINGS if "--search" not in a])
def test_listings_import_neither_sqlalchemy_nor_the_engine(varied: Home, args: tuple) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", IMPORTS_CHECK, *args],
        capture_output=True,
        text=True,
        env=varied.env(),
        cwd=ROOT,
        timeout=60,
    )
    code, heavy = json.loads(proc.stdout.splitlines()[-1])
    assert (code, heavy) == (0, []), proc.stderr


def fingerprint(db: Path) -> tuple[str, str]:
    """The database's content and its WAL's (the -shm index changes with every reader)."""
    wal = db.with_name(db.name + "-wal")
    content = wal.read_bytes() if wal.exists() else b""
    return hashlib.sha256(db.read_bytes()).hexdigest(), hashlib.sha256(content).hexdigest()


def test_listings_refuse_a_store_of_a_newer_schema_as_the_store_does(empty_home: Home) -> None:
    db = empty_home.root / "medialab.db"
    Store(db).dispose()
    conn = sqlite3.connect(db)
    with conn:
        conn.execute(
            "UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),)
        )
    conn.close()
    with pytest.raises(SchemaTooNew) as refused:
        Store(db)
    before = fingerprint(db)
    for args in [("jobs", "--json"), ("runs", "--json"), ("gallery", "--json"), ("show", "r1")]:
        proc = empty_home.cli(*args)
        assert (proc.returncode, proc.stdout) == (SchemaTooNew.exit_code, ""), args
        assert proc.stderr.splitlines()[-1] == f"medialab: {refused.value}", args
        assert f"schema {SCHEMA_VERSION + 1}" in proc.stderr
    assert fingerprint(db) == before
