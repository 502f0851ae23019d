"""The studio shows control characters in user text (`^[`) instead of sending them to the
terminal: run names, prompts, errors, model names, model tags and notes, and notifications."""

from __future__ import annotations

from typing import Any

from sqlmodel import select
from textual.widgets import DataTable, Static

from conftest import Home, submit, txt2img_toml, until
from medialab_tui.config import DataDir
from medialab_tui.screens.gallery import GalleryScreen
from medialab_tui.screens.gallery_widgets import GalleryTable, Inspector
from medialab_tui.screens.models import COLUMNS as MODEL_COLUMNS
from medialab_tui.screens.queue import JOB_COLUMNS, QueueScreen
from medialab_tui.store.db import Store
from medialab_tui.store.tables import Artifact, Job, Model, ModelLabel, Run

SIZE = (120, 36)
OSC52 = "\x1b]52;c;aGVsbG8=\x07"  # would write "hello" into the user's clipboard
SHOWN = "^[]52;c;aGVsbG8=^G"
RAW = ("\x1b", "\x07", "\x9b")


def plant_run(home: Home) -> tuple[int, int]:
    """A queued run whose name and prompt hold OSC 52; its one job runs with an error
    that holds it too (set through the store: no worker is needed, and a pipeline file
    with control characters is refused at submit)."""
    run_id = submit(home, txt2img_toml(prompts=["fox snow"], seeds=[1]))
    store = Store(DataDir(home.root).db_path)
    with store.write() as s:
        run = s.get(Run, run_id)
        assert run is not None
        run.name = f"evil{OSC52}run"
        s.add(run)
        job = s.exec(select(Job).where(Job.run_id == run_id)).one()
        job.item = {**job.item, "prompt": f"fox{OSC52}snow"}
        job.status, job.error = "running", f"broke{OSC52}here"
        s.add(job)
        s.flush()
        job_id = job.id or 0
    store.dispose()
    return run_id, job_id


def screen_text(app: Any) -> str:
    """Everything the screen would draw, as the SVG export sees it."""
    return app.export_screenshot()


def shown_text(widget: Any) -> str:
    """A widget's lines as the terminal shows them."""
    return "\n".join(widget.render_line(y).text for y in range(widget.size.height))


def cell(table: DataTable[Any], key: int, column: int) -> str:
    if str(key) not in {row.key.value for row in table.ordered_rows}:
        return ""
    return str(table.get_row(str(key))[column])


async def test_queue_shows_an_osc52_run_name_and_prompt_as_text(home: Home, studio: Any) -> None:
    run_id, job_id = plant_run(home)
    app = studio(host_engine=False)
    async with app.run_test(size=SIZE) as pilot:
        await app.switch_mode("queue")
        screen = app.screen
        assert isinstance(screen, QueueScreen)
        # On a loaded machine the screen may still be mounting its widgets.
        await until(pilot, lambda: screen.query("#running-info") and screen.query("#jobs"))
        runs, jobs = screen.runs_table, screen.jobs_table
        error = JOB_COLUMNS.index("error")
        await until(pilot, lambda: cell(runs, run_id, 1) and cell(jobs, job_id, error))
        assert cell(runs, run_id, 1) == f"evil{SHOWN}run"
        assert cell(jobs, job_id, error) == f"broke{SHOWN}here"
        title = str(screen.query_one("#jobs-title", Static).render())
        assert f"evil{SHOWN}run" in title
        running = screen.query_one("#running-info", Static)
        await until(pilot, lambda: "fox" in str(running.render()))
        assert f"fox{SHOWN}snow" in str(running.render())
        screen.jobs_table.focus()
        await until(pilot, lambda: SHOWN in str(screen.query_one("#job-error", Static).render()))
        app.notify(f"q{OSC52}q")  # what a failed request's sentence may quote
        # What the toast draws (Pilot leaves toasts off the screen): shown, as plain text.
        notice = await until(
            pilot, lambda: [n for n in app._notifications if n.message.startswith("q^")]
        )
        assert notice[0].message == f"q{SHOWN}q" and not notice[0].markup
        await pilot.pause()
        drawn = screen_text(app)
        for raw in RAW:
            assert raw not in drawn


async def test_gallery_and_models_show_control_characters_in_prompts_and_names(
    home: Home, studio: Any
) -> None:
    run_id, job_id = plant_run(home)
    store = Store(DataDir(home.root).db_path)
    with store.write() as s:
        s.add(
            Artifact(
                run_id=run_id,
                job_id=job_id,
                stage="txt2img",
                path=str(home.root / "missing.png"),
                name="missing.png",
                prompt=f"fox{OSC52}snow",
                seed=1,
                model=f"m{OSC52}",
                params={"negative": f"neg{OSC52}"},
            )
        )
        s.add(
            Model(
                name=f"evil{OSC52}model",
                kind="checkpoint",
                arch="sd15",
                format="safetensors",
                path=str(home.root / f"evil{OSC52}model.safetensors"),
            )
        )
        # Labels as another program could write them: `models tag` and the TUI drop
        # control characters, the database need not have come through them.
        s.add(ModelLabel(name=f"evil{OSC52}model", tags=[f"tag{OSC52}"], note=f"note{OSC52}"))
    store.dispose()
    app = studio(host_engine=False)
    async with app.run_test(size=SIZE) as pilot:
        await app.switch_mode("gallery")
        gallery = app.screen
        assert isinstance(gallery, GalleryScreen)
        await until(pilot, lambda: gallery.loaded)
        table = gallery.query_one(GalleryTable)
        await until(pilot, lambda: table.row_count == 1)
        # The columns shown follow the table's width (model and seed go first when narrow).
        # and are fitted again once the table has its final width (on a loaded machine
        # the first fill can come while the screen is still being laid out).

        def prompt_cell() -> str:
            """the prompt cell at the table's laid-out width"""
            keys = [key for key, *_ in table.shown]
            return str(table.get_row_at(0)[keys.index("prompt")]) if "prompt" in keys else ""

        await until(pilot, lambda: SHOWN in prompt_cell())
        inspector = gallery.query_one(Inspector)
        meta = inspector.query_one("#inspector-meta", Static)
        await until(pilot, lambda: inspector.view is not None and "fox" in str(meta.render()))
        assert f"fox{SHOWN}snow" in str(meta.render())
        assert f"neg{SHOWN}" in str(meta.render())
        drawn = screen_text(app)
        for raw in RAW:
            assert raw not in drawn

        await app.switch_mode("models")
        models = app.screen
        listed = await until(
            pilot, lambda: models.query(DataTable).first() if models.query(DataTable) else None
        )
        evil = f"evil{OSC52}model"  # rows are keyed by model name
        await until(pilot, lambda: evil in {row.key.value for row in listed.ordered_rows})
        row = listed.get_row(evil)
        assert str(row[0]).strip() == f"evil{SHOWN}model"
        assert str(row[MODEL_COLUMNS.index("tags")]) == f"tag{SHOWN}"
        listed.move_cursor(row=listed.get_row_index(evil))
        details = models.query_one("#model-details", Static)
        await until(pilot, lambda: "evil" in shown_text(details))
        assert f"evil{SHOWN}model" in shown_text(details)
        assert f"tag{SHOWN}" in shown_text(details) and f"note{SHOWN}" in shown_text(details)
        drawn = screen_text(app)
        assert f"evil{SHOWN}model" in drawn and f"tag{SHOWN}" in drawn
        for raw in RAW:
            assert raw not in drawn
