"""The Queue screen and the review view, driven by keys on the real app and the real store."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, Static

from conftest import Home, query, run_status, submit, txt2img_toml, until
from medialab_tui.screens.builder_form import TextPrompt
from medialab_tui.screens.common import KeysFooter
from medialab_tui.screens.dialogs import ConfirmScreen
from medialab_tui.screens.queue import QueueScreen
from medialab_tui.screens.review import OutputCard, ReviewScreen

SIZE = (120, 36)
UPSCALE = """
[[stages]]
type = "upscale"
model = "lanczos"
scale = 2
"""


def cell(table: DataTable[object], key: int, column: int | str) -> str:
    """The plain text of one cell (column by index or by name), or '' when the row is not
    shown."""
    if str(key) not in {row.key.value for row in table.ordered_rows}:
        return ""
    if isinstance(column, str):
        names = [str(c.label) for c in table.ordered_columns]
        column = names.index(column)
    return str(table.get_row(str(key))[column])


def highlighted(table: DataTable[object]) -> str | None:
    return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value


async def open_queue(pilot: Pilot[Any]) -> QueueScreen:
    # Switch directly: the builder (the first screen) may have a text field focused,
    # where `2` is typed rather than taken as the screen key.
    await pilot.app.switch_mode("queue")
    await pilot.pause()
    screen = pilot.app.screen
    assert isinstance(screen, QueueScreen)
    return screen


def job_ids(home: Home, run_id: int) -> list[int]:
    return [row[0] for row in query(home, "SELECT id FROM job WHERE run_id=? ORDER BY id", run_id)]


async def test_queued_runs_and_their_jobs_appear_in_the_tables(home: Home, studio) -> None:
    older = submit(home, txt2img_toml(prompts=["a"], seeds=[1]), name="older")
    newer = submit(home, txt2img_toml(prompts=["b", "c"], seeds=[2]), name="newer")
    app = studio(host_engine=False)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_queue(pilot)
        runs, jobs = screen.runs_table, screen.jobs_table
        await until(pilot, lambda: runs.row_count == 2 and jobs.row_count == 2)
        # Newest first, with the cursor on the newest run and its jobs below.
        assert [row.key.value for row in runs.ordered_rows] == [str(newer), str(older)]
        assert cell(runs, newer, 2) == "pending"
        assert cell(runs, newer, "done") == "0/2"
        for job in job_ids(home, newer):
            assert cell(jobs, job, 0) == f"j{job}"
            assert cell(jobs, job, 2) == "queued"
        # Moving down shows the older run's one job instead.
        await pilot.press("down")
        (older_job,) = job_ids(home, older)
        await until(pilot, lambda: jobs.row_count == 1 and cell(jobs, older_job, 2) == "queued")


async def test_the_cursor_stays_on_its_run_when_newer_runs_arrive(home: Home, studio) -> None:
    first = submit(home, txt2img_toml(prompts=["a"], seeds=[1]))
    second = submit(home, txt2img_toml(prompts=["b"], seeds=[2]))
    app = studio(host_engine=False)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_queue(pilot)
        runs = screen.runs_table
        await until(pilot, lambda: runs.row_count == 2)
        await pilot.press("down")
        assert highlighted(runs) == str(first)
        newest = submit(home, txt2img_toml(prompts=["c"], seeds=[3]))
        await until(pilot, lambda: runs.row_count == 3)
        assert [row.key.value for row in runs.ordered_rows] == [
            str(newest),
            str(second),
            str(first),
        ]
        assert highlighted(runs) == str(first)
        assert screen.run_id == first


@pytest.mark.slow
async def test_a_submitted_run_progresses_to_succeeded_while_shown(home: Home, studio) -> None:
    app = studio(host_engine=True)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_queue(pilot)
        home.cli(
            "run",
            str(home.pipeline("p", txt2img_toml(prompts=["a"], seeds=[1]))),
            "--no-wait",
            check=True,
        )
        run_id = int(query(home, "SELECT max(id) FROM run")[0][0])
        (job,) = job_ids(home, run_id)
        runs, jobs = screen.runs_table, screen.jobs_table
        await until(pilot, lambda: cell(runs, run_id, 0) == f"r{run_id}")
        await until(pilot, lambda: cell(runs, run_id, 2) == "succeeded", timeout=90)
        await until(pilot, lambda: cell(jobs, job, 2) == "succeeded")
        assert cell(runs, run_id, "done") == "1/1"
        assert "100%" in cell(jobs, job, "progress")
        assert run_status(home, run_id) == "succeeded"


@pytest.mark.slow
async def test_c_on_a_running_job_cancels_it(home: Home, studio) -> None:
    run_id = submit(home, txt2img_toml(prompts=["slow"], seeds=[1], steps=300))
    (job,) = job_ids(home, run_id)
    app = studio(host_engine=True)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_queue(pilot)
        jobs = screen.jobs_table
        await until(pilot, lambda: cell(jobs, job, 2) == "running", timeout=90)
        # The detail panel follows it: which job, and its live preview from the engine.
        preview = screen.query_one("#running-preview")
        await until(pilot, lambda: preview.display and preview.image is not None)
        assert f"j{job}" in str(screen.query_one("#running-info").render())
        await pilot.press("tab")
        assert jobs.has_focus
        await pilot.press("c")

        def cancelled() -> bool:
            """the job to end cancelled in the store"""
            return query(home, "SELECT status FROM job WHERE id=?", job)[0][0] == "cancelled"

        await until(pilot, cancelled)
        await until(pilot, lambda: cell(jobs, job, 2) == "cancelled")
        # With the jobs table focused, `c` cancelled the job, not its run (and asked nothing).
        actions = [row[0] for row in query(home, "SELECT action FROM event")]
        assert "job.cancel" in actions and "run.cancel" not in actions
        # `r` undoes it: the job goes back in the queue.
        await pilot.press("r")

        def requeued() -> bool:
            """the job to be queued or running again"""
            status = query(home, "SELECT status FROM job WHERE id=?", job)[0][0]
            return status in ("queued", "running")

        await until(pilot, requeued)


async def test_p_pauses_and_resumes_the_queue_and_the_footer_says_which(home: Home, studio) -> None:
    def state() -> str:
        rows = query(home, "SELECT value FROM setting WHERE key='queue_state'")
        return rows[0][0] if rows else "active"

    app = studio(host_engine=False)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_queue(pilot)
        footer = screen.query_one(KeysFooter)

        def keys() -> str:
            return str(footer.render())

        await until(pilot, lambda: "p Pause" in keys())
        await pilot.press("p")
        await until(pilot, lambda: state() == "paused")
        await until(pilot, lambda: "p Resume" in keys())
        assert "Pause" not in keys()
        await pilot.press("p")
        await until(pilot, lambda: state() == "active")
        await until(pilot, lambda: "p Pause" in keys())
        assert "Resume" not in keys()
        # Paused from elsewhere (the CLI): the footer follows the queue's state.
        home.cli("pause", check=True)
        await until(pilot, lambda: "p Resume" in keys())


async def test_plus_raises_the_highlighted_runs_priority(home: Home, studio) -> None:
    run_id = submit(home, txt2img_toml(prompts=["a"], seeds=[1]))
    app = studio(host_engine=False)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_queue(pilot)
        await until(pilot, lambda: cell(screen.runs_table, run_id, 0))
        await pilot.press("plus", "plus", "minus")

        def raised() -> bool:
            """the run and its queued job to have priority 1"""
            run = query(home, "SELECT priority FROM run WHERE id=?", run_id)[0][0]
            job = query(home, "SELECT priority FROM job WHERE run_id=?", run_id)[0][0]
            return run == 1 and job == 1

        await until(pilot, raised)
        await until(pilot, lambda: cell(screen.runs_table, run_id, "prio") == "+1")


async def test_enter_on_a_run_not_in_review_says_so(home: Home, studio) -> None:
    run_id = submit(home, txt2img_toml(prompts=["a"], seeds=[1]))
    app = studio(host_engine=False)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_queue(pilot)
        await until(pilot, lambda: cell(screen.runs_table, run_id, 0))
        screen.runs_table.focus()
        await until(pilot, lambda: screen.focused is screen.runs_table)
        await pilot.press("enter")

        def said() -> bool:
            """the notice that only runs in review open"""
            return any("only runs waiting in review" in n.message for n in app._notifications)

        await until(pilot, said)
        assert app.screen is screen


@pytest.mark.slow
async def test_approving_one_output_in_review_continues_the_run_with_it(home: Home, studio) -> None:
    text = txt2img_toml(
        prompts=["a red fox"], seeds=[7], per_input=3, mode="checkpoint", review=True, extra=UPSCALE
    )
    proc = home.cli("run", str(home.pipeline("review", text)), "--json", check=True)
    run_id = int(json.loads(proc.stdout.splitlines()[-1])["run_id"].removeprefix("r"))
    assert run_status(home, run_id) == "review"

    app = studio(host_engine=True)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_queue(pilot)
        await until(pilot, lambda: cell(screen.runs_table, run_id, 2) == "review")
        await pilot.press("enter")
        review = await until(pilot, lambda: isinstance(app.screen, ReviewScreen) and app.screen)
        await until(pilot, lambda: len(review.query(OutputCard)) == 3)
        cards = list(review.query(OutputCard))
        await pilot.press("right", "space")
        assert [card.selected for card in cards] == [False, True, False]
        chosen = cards[1].artifact.id
        # `e` edits the prompt the chosen output passes on to the upscale stage.
        await pilot.press("e")
        asked = await until(pilot, lambda: isinstance(app.screen, TextPrompt) and app.screen)
        asked.query_one(Input).value = "a red fox, edited in review"
        await pilot.press("enter")
        await until(pilot, lambda: app.screen is review)
        assert cards[1].edited == "a red fox, edited in review"
        assert "edited" in str(cards[1].query_one(".caption", Static).render())
        await pilot.press("a")
        await until(pilot, lambda: app.screen is screen)
        assert run_status(home, run_id) != "review"

        def finished() -> bool:
            """the approved run to finish"""
            return run_status(home, run_id) in ("succeeded", "failed", "cancelled")

        await until(pilot, finished, timeout=90)
    assert run_status(home, run_id) == "succeeded"
    upscales = query(home, "SELECT id, item FROM job WHERE run_id=? AND stage='upscale'", run_id)
    assert len(upscales) == 1
    assert json.loads(upscales[0][1])["prompt"] == "a red fox, edited in review"
    (parent,) = query(
        home,
        "SELECT parent_id FROM artifactparent JOIN artifact ON artifact.id=artifact_id "
        "WHERE artifact.stage='upscale' AND artifact.run_id=?",
        run_id,
    )
    assert parent[0] == chosen


def execute(home: Home, sql: str, *args: Any) -> None:
    """Change the store as the engine would (a job starts running): the test's own data."""
    conn = sqlite3.connect(home.root / "medialab.db", timeout=30)
    try:
        conn.execute(sql, args)
        conn.commit()
    finally:
        conn.close()


def start_running(home: Home, run_id: int) -> None:
    execute(home, "UPDATE run SET status='running' WHERE id=?", run_id)
    execute(home, "UPDATE job SET status='running', step=1, total_steps=4 WHERE run_id=?", run_id)


async def test_the_jobs_table_follows_the_running_run_until_a_run_is_picked(
    home: Home, studio
) -> None:
    first = submit(home, txt2img_toml(prompts=["a"], seeds=[1]))
    second = submit(home, txt2img_toml(prompts=["b"], seeds=[2]))
    third = submit(home, txt2img_toml(prompts=["c"], seeds=[3]))
    start_running(home, first)
    app = studio(host_engine=False)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_queue(pilot)
        runs, jobs = screen.runs_table, screen.jobs_table

        async def shows(run_id: int) -> None:
            (job,) = job_ids(home, run_id)
            await until(pilot, lambda: screen.run_id == run_id and cell(jobs, job, 0))
            assert highlighted(runs) == str(run_id)

        # The running run, not the newest one, is shown; a newer running run takes over.
        await shows(first)
        assert "following the running run" in str(screen.query_one("#runs-title").render())
        start_running(home, second)
        await shows(second)
        # Moving the cursor picks a run: a run that starts running now does not move it.
        await pilot.press("up")
        await shows(third)
        assert not screen.follow
        fourth = submit(home, txt2img_toml(prompts=["d"], seeds=[4]))
        start_running(home, fourth)
        await until(pilot, lambda: cell(runs, fourth, "status") == "running")
        await pilot.pause()
        assert screen.run_id == third and highlighted(runs) == str(third)
        # The picked run ends: the screen follows the running run again.
        home.cli("cancel", f"r{third}", check=True)
        await shows(fourth)
        assert screen.follow
        # Pick again, then `f` follows again.
        await pilot.press("down", "down")
        await shows(second)
        assert not screen.follow
        await pilot.press("f")
        await shows(fourth)


async def test_a_pick_that_a_poll_overtakes_is_kept(home: Home, studio) -> None:
    """Under load a poll's snapshot can be applied between the user's cursor move and
    the handling of its highlight; the cursor must stay where the user put it."""
    first = submit(home, txt2img_toml(prompts=["a"], seeds=[1]))
    second = submit(home, txt2img_toml(prompts=["b"], seeds=[2]))
    start_running(home, second)
    app = studio(host_engine=False)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_queue(pilot)
        runs = screen.runs_table
        (job,) = job_ids(home, second)
        await until(pilot, lambda: screen.run_id == second and cell(screen.jobs_table, job, 0))
        assert screen.follow
        runs.move_cursor(row=runs.get_row_index(str(first)))  # what ↓ does; no event handled yet
        screen.show(screen._shown[0])  # the last poll's snapshot, applied first
        assert highlighted(runs) == str(first)
        await pilot.pause()
        assert screen.run_id == first and not screen.follow
        assert highlighted(runs) == str(first)


async def test_plus_on_a_job_shows_in_its_priority_column(home: Home, studio) -> None:
    run_id = submit(home, txt2img_toml(prompts=["a", "b"], seeds=[1]))
    first, second = job_ids(home, run_id)
    app = studio(host_engine=False)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_queue(pilot)
        jobs = screen.jobs_table
        await until(pilot, lambda: cell(jobs, second, "prio") == "0")
        await pilot.press("tab", "down", "plus")
        await until(pilot, lambda: cell(jobs, second, "prio") == "+1")
        assert cell(jobs, first, "prio") == "0"
        await pilot.press("minus", "minus")
        await until(pilot, lambda: cell(jobs, second, "prio") == "-1")


async def test_c_on_a_run_asks_before_cancelling_it(home: Home, studio) -> None:
    run_id = submit(home, txt2img_toml(prompts=["a"], seeds=[1]))
    app = studio(host_engine=False)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_queue(pilot)
        await until(pilot, lambda: cell(screen.runs_table, run_id, 0))
        await pilot.press("c")
        dialog = await until(pilot, lambda: isinstance(app.screen, ConfirmScreen) and app.screen)
        assert f"Cancel run r{run_id}" in str(dialog.query_one(Static).render())
        await pilot.press("n")
        await until(pilot, lambda: app.screen is screen)
        await pilot.pause()
        assert run_status(home, run_id) == "pending"
        await pilot.press("c")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await until(pilot, lambda: run_status(home, run_id) == "cancelled")
        await until(pilot, lambda: cell(screen.runs_table, run_id, "status") == "cancelled")
