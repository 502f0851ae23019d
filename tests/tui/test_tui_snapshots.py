"""Snapshot tests: each screen at 100×30, compared with the SVG kept in tests/tui/__snapshots__.

The data directory sits at a fixed path so paths shown on screen do not change
between runs. Update after an intended change with `pytest --snapshot-update`.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlmodel import select
from textual.pilot import Pilot
from textual.widgets import Static
from textual.worker import WorkerState

from conftest import EXAMPLES, until
from medialab_tui.app import MedialabApp
from medialab_tui.config import DataDir, load_config
from medialab_tui.engine.registry import scan
from medialab_tui.screens.builder import BuilderScreen
from medialab_tui.screens.common import StudioHeader, StudioScreen
from medialab_tui.screens.gallery import GalleryScreen
from medialab_tui.store.db import Store
from medialab_tui.store.tables import Model

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
    # The demo files' bytes (so their hashes and sizes) follow the torch, diffusers and
    # transformers versions that wrote them; the picture of the screen should not.
    with store.write() as s:
        for model in s.exec(select(Model)).all():
            model.sha256 = hashlib.sha256(model.name.encode()).hexdigest()
            model.fast_hash = model.sha256[:32]
            model.size = 6_815_744
            s.add(model)
    app = MedialabApp(data, config, store, pipeline=EXAMPLES / "demo.toml", host_engine=False)
    yield app
    shutil.rmtree(SNAPSHOT_HOME, ignore_errors=True)


def text(screen: StudioScreen, selector: str) -> str:
    return str(screen.query_one(selector, Static).content)


# What each screen shows once its first load has landed.
LOADED = {
    "builder": lambda screen: (
        isinstance(screen, BuilderScreen) and screen.ready and "Total" in text(screen, "#estimate")
    ),
    "queue": lambda screen: text(screen, "#runs-title") != "Runs",
    "models": lambda screen: " models · " in text(screen, "#models-filter"),
    "gallery": lambda screen: isinstance(screen, GalleryScreen) and screen.loaded,
}


async def settled(pilot: Pilot[None], mode: str) -> None:
    """Wait until `mode` is the screen shown, its data is in its widgets, the header shows
    the app's state, and no thread worker is still on its way with more."""
    app = pilot.app
    assert isinstance(app, MedialabApp)
    screen = await until(pilot, lambda: app.current_mode == mode and app.screen)
    assert isinstance(screen, StudioScreen)
    await until(pilot, lambda: LOADED[mode](screen))
    header = screen.query_one(StudioHeader)
    await until(pilot, lambda: app.status_line() in str(header.render()))
    await until(
        pilot,
        lambda: all(w.state not in (WorkerState.PENDING, WorkerState.RUNNING) for w in app.workers),
    )


@pytest.mark.parametrize(
    ("screen", "keys"),
    [("builder", []), ("queue", ["2"]), ("models", ["3"]), ("gallery", ["4"])],
)
def test_screen_snapshot(
    snap_compare, snapshot_app: MedialabApp, screen: str, keys: list[str]
) -> None:
    async def open_screen(pilot: Pilot[None]) -> None:
        await settled(pilot, "builder")
        for key in keys:
            await pilot.press(key)
        await settled(pilot, screen)

    assert snap_compare(snapshot_app, terminal_size=SIZE, run_before=open_screen), (
        f"the {screen} screen changed; see the snapshot report"
    )
