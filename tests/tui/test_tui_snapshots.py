"""Snapshot tests: every screen at 80×24, 100×30 and 160×45, compared with the SVGs
kept in tests/tui/__snapshots__.

The data is pinned: a data directory at a fixed path (paths shown on screen do not
change between runs), the demo models with fixed hashes and sizes, and runs, jobs and
artifacts written straight into the store with fixed times and images drawn here, so
nothing on screen depends on the clock, the process or the torch version. Update after
an intended change with `pytest --snapshot-update`, and look at the report.
"""

from __future__ import annotations

import hashlib
import shutil
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from PIL import Image, ImageDraw
from sqlmodel import select
from textual.pilot import Pilot
from textual.screen import Screen
from textual.widgets import Static
from textual.worker import WorkerState

from conftest import EXAMPLES, until
from medialab_tui.app import MedialabApp
from medialab_tui.config import DataDir, load_config
from medialab_tui.engine.pipeline import parse_pipeline
from medialab_tui.engine.registry import scan
from medialab_tui.screens.builder import BuilderScreen
from medialab_tui.screens.common import KeysFooter, StudioHeader, StudioScreen
from medialab_tui.screens.gallery import GalleryScreen
from medialab_tui.screens.gallery_widgets import Inspector
from medialab_tui.screens.help import HelpScreen
from medialab_tui.screens.queue import QueueScreen
from medialab_tui.screens.review import OutputCard, ReviewScreen
from medialab_tui.store.db import Store
from medialab_tui.store.labels import label_model
from medialab_tui.store.tables import Artifact, ArtifactParent, Job, Model, Run

SNAPSHOT_HOME = Path("/tmp/medialab-snapshot-home")
SIZES = {"80x24": (80, 24), "100x30": (100, 30), "160x45": (160, 45)}
SNAPSHOT_MODELS = (
    "demo-sd15",
    "demo-sdxl",
    "demo-sd15-lora.safetensors",
    "demo-sd3",
    "demo-flux",
    "demo-flux-lora.safetensors",
    "demo-esrgan-x4.safetensors",
)
T0 = datetime(2026, 1, 2, 9, 30, tzinfo=UTC)  # a day that is never today
NEGATIVE = "blurry, low quality"
Row = TypeVar("Row", Run, Job, Artifact, ArtifactParent)


def draw(path: Path, size: int, seed: int) -> None:
    """A picture that is the same on every machine: a sky, a sun and hills by seed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", (size, size), (20 + seed * 7 % 60, 40, 90 + seed * 13 % 120))
    pen = ImageDraw.Draw(image)
    sun = size * (20 + seed * 17 % 50) // 100
    pen.ellipse((sun, size // 8, sun + size // 4, size // 8 + size // 4), fill=(250, 200, 90))
    pen.polygon(
        [(0, size), (size // 3, size // 2), (size, size)], fill=(30, 110 + seed % 5 * 20, 60)
    )
    image.save(path)


def pipeline(
    name: str, *stages: dict[str, Any], mode: str = "auto", **inputs: Any
) -> dict[str, Any]:
    document = {"name": name, "mode": mode, "inputs": inputs, "stages": list(stages)}
    return parse_pipeline(document, "snapshot").to_dict()


TXT2IMG = {"type": "txt2img", "model": "demo-sd15", "steps": 8, "width": 64, "height": 64}
UPSCALE = {"type": "upscale", "model": "lanczos", "scale": 2}


class Pinned:
    """Writes runs, jobs and artifacts into the store, each a minute after the last."""

    def __init__(self, store: Store, data: DataDir) -> None:
        self.store = store
        self.data = data
        self.clock = T0

    def tick(self) -> datetime:
        self.clock += timedelta(minutes=1)
        return self.clock

    def add(self, row: Row) -> Row:
        """Store `row` and hand it back with its id."""
        with self.store.write() as s:
            s.add(row)
            s.flush()
            s.expunge(row)
        return row

    def run(self, document: dict[str, Any], **fields: Any) -> Run:
        return self.add(
            Run(
                name=document["name"],
                mode=document["mode"],
                pipeline=document,
                stage_count=len(document["stages"]),
                created_at=self.tick(),
                user="ana",
                **fields,
            )
        )

    def job(self, run: Run, stage_index: int, prompt: str, seed: int, **fields: Any) -> Job:
        stage = run.pipeline["stages"][stage_index]
        return self.add(
            Job(
                run_id=run.id or 0,
                stage_index=stage_index,
                stage=stage["type"],
                item={"prompt": prompt, "negative": NEGATIVE, "seed": seed, "images": []},
                params=stage,
                created_at=self.tick(),
                user="ana",
                **fields,
            )
        )

    def artifact(self, job: Job, seed: int, size: int, parent: Artifact | None = None) -> Artifact:
        path = self.data.artifacts / f"r{job.run_id}" / f"j{job.id}" / f"{seed}.png"
        draw(path, size, seed)
        artifact = self.add(
            Artifact(
                run_id=job.run_id,
                job_id=job.id or 0,
                stage=job.stage,
                path=str(path),
                name=path.name,
                prompt=job.item["prompt"],
                seed=seed,
                model=job.params.get("model", ""),
                width=size,
                height=size,
                params={"negative": NEGATIVE, "steps": 8, "cfg": 7.0, "sampler": "default"},
                created_at=self.tick(),
            )
        )
        if parent is not None:
            self.add(ArtifactParent(artifact_id=artifact.id or 0, parent_id=parent.id or 0))
        return artifact


def pin_runs(store: Store, data: DataDir) -> None:
    """Five runs, one of each kind the queue shows: done, in review, failed, running, queued."""
    pin = Pinned(store, data)
    done = pin.run(
        pipeline("harbour", TXT2IMG, UPSCALE, prompts=["harbour at dusk, oil painting"]),
        status="succeeded",
        stage_index=1,
    )
    for seed in (11, 12):
        made = pin.artifact(
            pin.job(done, 0, "harbour at dusk, oil painting", seed, status="succeeded"), seed, 64
        )
        upscale = pin.job(done, 1, "harbour at dusk, oil painting", seed, status="succeeded")
        pin.artifact(upscale, seed, 128, parent=made)
    review = pin.run(
        pipeline(
            "fox portraits",
            {**TXT2IMG, "per_input": 3, "review": True},
            UPSCALE,
            mode="checkpoint",
            prompts=["a red fox in the snow, portrait"],
        ),
        status="review",
    )
    job = pin.job(review, 0, "a red fox in the snow, portrait", 21, status="succeeded")
    for seed in (21, 22, 23):
        pin.artifact(job, seed, 64)
    failed = pin.run(pipeline("sdxl test", TXT2IMG, prompts=["a castle"]), status="failed")
    pin.job(
        failed,
        0,
        "a castle",
        5,
        status="failed",
        attempts=1,
        error="demo-sdxl: the model file is missing (moved or deleted since the last scan)",
    )
    running = pin.run(
        pipeline("lighthouse", TXT2IMG, prompts=["lighthouse in a storm", "calm sea"]),
        status="running",
    )
    # No start time: the ETA needs the clock, and the picture must not.
    job = pin.job(
        running,
        0,
        "lighthouse in a storm",
        7,
        status="running",
        attempts=1,
        step=3,
        total_steps=8,
        progress=0.375,
        worker="cuda:1",
    )
    pin.job(running, 0, "calm sea", 7)
    # The live preview the engine writes for the running job.
    draw(data.root / "cache" / "previews" / f"j{job.id}.png", 64, 7)
    later = pin.run(pipeline("later", TXT2IMG, prompts=["a quiet street"]), priority=1)
    pin.job(later, 0, "a quiet street", 3, priority=1)


@pytest.fixture
def snapshot_app(demo_models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MedialabApp]:
    # Times on screen are local: pin the zone too.
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    shutil.rmtree(SNAPSHOT_HOME, ignore_errors=True)
    data = DataDir(SNAPSHOT_HOME).ensure()
    (SNAPSHOT_HOME / "config.toml").write_text('graphics = "halfcell"\n')
    # Models of several families and kinds, so the Models screen shows its groups.
    for name in SNAPSHOT_MODELS:
        copy = shutil.copytree if (demo_models_dir / name).is_dir() else shutil.copyfile
        copy(demo_models_dir / name, data.models / name)
    store = Store(data.db_path)
    config = load_config(data)
    scan(store, data, config)
    # The demo files' bytes (so their hashes and sizes) follow the torch, diffusers and
    # transformers versions that wrote them; the picture of the screen should not.
    with store.write() as s:
        for model in s.exec(select(Model)).all():
            model.sha256 = hashlib.sha256(model.name.encode()).hexdigest()
            model.fast_hash = model.sha256[:32]
            model.size = 6_815_744 if model.name == "demo-sd15" else 70_254
            model.hash_pending = False
            s.add(model)
    label_model(store, "demo-sd15", add=["portrait", "fast"], note="the small one for tries")
    label_model(store, "demo-sd15-lora", add=["style"])
    pin_runs(store, data)
    app = MedialabApp(data, config, store, pipeline=EXAMPLES / "demo.toml", host_engine=False)
    yield app
    shutil.rmtree(SNAPSHOT_HOME, ignore_errors=True)
    monkeypatch.undo()
    time.tzset()


def text(screen: Screen[Any], selector: str) -> str:
    return str(screen.query_one(selector, Static).render())


def queue_loaded(screen: Screen[Any]) -> bool:
    """The runs, the running run's jobs (followed) and the running job's panel."""
    return (
        isinstance(screen, QueueScreen)
        and screen.runs_table.row_count == 5
        and screen.jobs_table.row_count == 2
        and "step 3/8" in text(screen, "#running-info")
        and getattr(screen.query_one("#running-preview"), "image", None) is not None
    )


def gallery_loaded(screen: Screen[Any]) -> bool:
    """The page and the inspector's picture of the highlighted artifact."""
    if not isinstance(screen, GalleryScreen) or not screen.loaded:
        return False
    inspector = screen.query_one(Inspector)
    picture = inspector.query_one("#inspector-picture")
    current = screen.current
    return (
        current is not None
        and inspector.view is not None
        and inspector.view.id == current.id
        and getattr(picture, "image", None) is not None
    )


def review_loaded(screen: Screen[Any]) -> bool:
    """The three outputs, each with its picture."""
    cards = list(screen.query(OutputCard)) if isinstance(screen, ReviewScreen) else []
    return len(cards) == 3 and all(card.image is not None for card in cards)


# What each screen shows once its first load has landed.
LOADED: dict[str, Callable[[Screen[Any]], bool]] = {
    "builder": lambda screen: (
        isinstance(screen, BuilderScreen) and screen.ready and "Total" in text(screen, "#estimate")
    ),
    "queue": queue_loaded,
    "models": lambda screen: " models · " in text(screen, "#models-filter"),
    "gallery": gallery_loaded,
    "help": lambda screen: isinstance(screen, HelpScreen),
    "review": review_loaded,
}


async def settled(pilot: Pilot[None], what: str) -> None:
    """Wait until the screen `what` is shown with its data in its widgets, the header
    and footer show the app's state, and no thread worker is still on its way with more."""
    app = pilot.app
    assert isinstance(app, MedialabApp)
    await until(pilot, lambda: LOADED[what](app.screen))
    base = next(s for s in reversed(app.screen_stack) if isinstance(s, StudioScreen))
    header, footer = base.query_one(StudioHeader), base.query_one(KeysFooter)
    # The state poll has landed: the running and queued jobs are counted.
    await until(pilot, lambda: "1 run" in str(header.render()))
    await until(pilot, lambda: "Quit" in str(footer.render()))
    await until(
        pilot,
        lambda: all(w.state not in (WorkerState.PENDING, WorkerState.RUNNING) for w in app.workers),
    )


async def open_help(pilot: Pilot[None]) -> None:
    await pilot.press("2")
    await settled(pilot, "queue")  # the screen under the help is part of the picture
    await pilot.press("question_mark")


async def open_review(pilot: Pilot[None]) -> None:
    await pilot.press("2")
    await settled(pilot, "queue")
    # From the followed running run (r4) down to the run in review (r2).
    await pilot.press("down", "down", "enter")


SCREENS: dict[str, Callable[[Pilot[None]], Any]] = {
    "builder": lambda pilot: pilot.pause(),
    "queue": lambda pilot: pilot.press("2"),
    "models": lambda pilot: pilot.press("3"),
    "gallery": lambda pilot: pilot.press("4"),
    "help": open_help,
    "review": open_review,
}


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("screen", list(SCREENS))
def test_screen_snapshot(snap_compare, snapshot_app: MedialabApp, screen: str, size: str) -> None:
    async def open_screen(pilot: Pilot[None]) -> None:
        await settled(pilot, "builder")
        # Out of the text field the builder focuses first, so digits switch screens.
        await pilot.press("escape")
        await SCREENS[screen](pilot)
        await settled(pilot, screen)

    assert snap_compare(snapshot_app, terminal_size=SIZES[size], run_before=open_screen), (
        f"the {screen} screen at {size} changed; see the snapshot report"
    )
