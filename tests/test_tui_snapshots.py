"""Snapshot tests: each screen at 100×30, compared with the SVG kept in tests/__snapshots__.

The data directory sits at a fixed path so paths shown on screen do not change
between runs. Update after an intended change with `pytest --snapshot-update`.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import EXAMPLES
from medialab_tui.app import MedialabApp
from medialab_tui.config import DataDir, load_config
from medialab_tui.engine.registry import scan
from medialab_tui.store.db import Store

SNAPSHOT_HOME = Path("/tmp/medialab-snapshot-home")
SIZE = (100, 30)


@pytest.fixture
def snapshot_app(demo_models_dir: Path) -> Iterator[MedialabApp]:
    shutil.rmtree(SNAPSHOT_HOME, ignore_errors=True)
    data = DataDir(SNAPSHOT_HOME).ensure()
    for name in ("demo-sd15", "demo-sdxl"):
        shutil.copytree(demo_models_dir / name, data.models / name)
    store = Store(data.db_path)
    config = load_config(data)
    scan(store, data, config)
    app = MedialabApp(data, config, store, pipeline=EXAMPLES / "demo.toml", host_engine=False)
    yield app
    shutil.rmtree(SNAPSHOT_HOME, ignore_errors=True)


@pytest.mark.parametrize(
    ("screen", "keys"),
    [("builder", []), ("queue", ["2"]), ("models", ["3"]), ("gallery", ["4"])],
)
def test_screen_snapshot(
    snap_compare, snapshot_app: MedialabApp, screen: str, keys: list[str]
) -> None:
    async def open_screen(pilot) -> None:
        await pilot.pause(1.0)  # the first state poll and the builder's estimate
        for key in keys:
            await pilot.press(key)
        await pilot.pause(1.0)  # the screen's thread workers fill its tables

    assert snap_compare(snapshot_app, terminal_size=SIZE, run_before=open_screen), (
        f"the {screen} screen changed; see the snapshot report"
    )
