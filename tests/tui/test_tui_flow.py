"""The main flow, as a person does it: demo pipeline → run → queue → gallery → inspector."""

from __future__ import annotations

from textual.widgets import DataTable

from conftest import EXAMPLES, Home, query, until
from medialab_tui.screens.builder import BuilderScreen


async def test_demo_pipeline_runs_from_the_builder_and_lands_in_the_gallery(
    studio, home: Home
) -> None:
    app = studio(host_engine=True, pipeline=EXAMPLES / "demo.toml")
    async with app.run_test(size=(120, 36)) as pilot:
        builder = await until(pilot, lambda: isinstance(app.screen, BuilderScreen) and app.screen)
        await until(pilot, lambda: builder.ready)  # the demo pipeline is loaded
        await pilot.press("ctrl+r")
        await until(pilot, lambda: app.current_mode == "queue")
        runs = app.screen.query_one("#runs", DataTable)
        await until(pilot, lambda: runs.row_count == 1)
        jobs = app.screen.query_one("#jobs", DataTable)
        seen_progress: set[str] = set()

        def shown_statuses() -> set[str]:
            for i in range(jobs.row_count):
                seen_progress.add(str(jobs.get_row_at(i)[2]))
            return seen_progress

        def finished() -> bool:
            shown_statuses()
            return query(home, "SELECT status FROM run") == [("succeeded",)]

        await until(pilot, finished, timeout=120)
        # The queue listed the run's jobs as they ended (a job shown while it runs is
        # `test_tui_queue`'s `c` test: a demo job can start and end between two polls;
        # the store can also say the run ended a poll before the table does).
        await until(pilot, lambda: jobs.row_count == len(query(home, "SELECT id FROM job")))
        await until(pilot, lambda: "succeeded" in shown_statuses())
        # A toast says the jobs finished.
        await until(pilot, lambda: any("finished" in str(n.message) for n in app._notifications))

        await pilot.press("4")
        table = app.screen.query_one(DataTable)
        await until(pilot, lambda: table.row_count == 8)
        seed = str(table.get_row_at(0)[[key for key, *_ in table.shown].index("seed")]).strip()
        inspector = app.screen.query_one("#gallery-inspector")
        await until(pilot, lambda: inspector.view is not None and str(inspector.view.seed) == seed)
        shown = app.export_screenshot()
        assert "seed" in shown and seed in shown
