"""Everything medialab writes in the data directory is owner-only (SPEC §7; hardening
item 5): the database and its WAL, logs, input copies, artifact folders and files,
backups and the demo models; a data directory found open to others is tightened."""

from __future__ import annotations

import json
import os
import signal
import stat
from pathlib import Path

import pytest

from conftest import EXAMPLES, Home, wait_for
from medialab_tui import config

UPSCALE = f"""
name = "up"
[inputs]
images = ["{EXAMPLES / "images" / "rings.png"}"]
[[stages]]
type = "upscale"
model = "lanczos"
scale = 2
"""


def _open_to_others(root: Path) -> list[str]:
    """Every entry under `root` (itself included) with a group or other permission bit."""
    return [
        f"{stat.S_IMODE(p.lstat().st_mode):04o} {p}"
        for p in (root, *root.rglob("*"))
        if stat.S_IMODE(p.lstat().st_mode) & 0o077
    ]


def _notice(root: Path) -> str:
    return f"medialab: {root} was open to other users (0755); it is now owner-only (0700)."


@pytest.mark.slow
def test_everything_a_real_run_writes_is_owner_only(empty_home: Home) -> None:
    root = empty_home.root
    root.chmod(0o755)
    serve = empty_home.spawn("serve")
    try:

        def hosting() -> bool:
            """the serve process to take the host lock"""
            text = (root / "engine.lock").read_text() if (root / "engine.lock").exists() else ""
            return bool(text) and json.loads(text)["pid"] == serve.pid

        wait_for(hosting, timeout=60)
        empty_home.cli("run", str(empty_home.pipeline("up", UPSCALE)), "--json", check=True)
    finally:
        serve.send_signal(signal.SIGTERM)
        _, serve_stderr = serve.communicate(timeout=30)
    assert _notice(root) in serve_stderr.splitlines()
    written = {p.relative_to(root).parts[0] for p in root.rglob("*") if p.is_file()}
    assert {"medialab.db", "engine.lock", "logs", "inputs", "artifacts", "backups"} <= written
    assert list((root / "artifacts").rglob("*.png")) and list((root / "inputs").iterdir())
    assert _open_to_others(root) == []


def test_a_looser_data_dir_is_tightened_with_a_one_line_notice(empty_home: Home) -> None:
    root = empty_home.root
    root.chmod(0o755)
    first = empty_home.cli("runs")
    assert first.returncode == 0
    assert first.stderr.splitlines() == [_notice(root)]
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    again = empty_home.cli("runs")
    assert again.returncode == 0 and again.stderr == ""
    assert _open_to_others(root) == []


def test_a_database_an_older_medialab_left_readable_is_made_owner_only(
    empty_home: Home,
) -> None:
    empty_home.cli("runs", check=True)
    db = empty_home.root / "medialab.db"
    db.chmod(0o644)
    empty_home.cli("runs", check=True)
    assert stat.S_IMODE(db.stat().st_mode) == 0o600


@pytest.mark.slow
def test_demo_models_written_into_the_data_dir_are_owner_only(demo_models_dir: Path) -> None:
    """`models demo` writes into `<data>/models` under medialab's umask, so the demo
    models are owner-only like everything else in the data directory."""
    assert list(demo_models_dir.iterdir())
    assert _open_to_others(demo_models_dir.parent) == []


def test_exports_can_still_follow_the_users_umask(monkeypatch: pytest.MonkeyPatch) -> None:
    """The umask the user had is remembered for files written outside the data dir."""
    monkeypatch.setattr(config, "_user_umask", None)
    previous = os.umask(0o027)
    try:
        config.keep_private()
        assert config.user_umask() == 0o027
        assert os.umask(0o077) == config.PRIVATE_UMASK
    finally:
        os.umask(previous)
