"""The command palette finds each screen's actions; notices replace instead of stack,
and a run that waits in review, fails or completes says so with the bell."""

from __future__ import annotations

from textual.command import CommandList, CommandPalette

from conftest import Home, query, submit, txt2img_toml, until

UPSCALE = """
[[stages]]
type = "upscale"
model = "lanczos"
scale = 2
"""


async def open_palette(pilot) -> CommandPalette:
    """Ctrl+P until the command palette is up: a key pressed while a just-switched-to
    screen is still being set up can be lost on a busy machine, so press it again
    (only while no palette is open) instead of waiting on one that is not coming."""
    app = pilot.app
    for _ in range(6):
        await pilot.press("ctrl+p")
        try:
            return await until(
                pilot, lambda: isinstance(app.screen, CommandPalette) and app.screen, timeout=10
            )
        except AssertionError:
            assert not isinstance(app.screen, CommandPalette)
    raise AssertionError("the command palette did not open on ctrl+p")


async def palette_run(pilot, words: str) -> None:
    """Open the palette, type `words`, and take the first hit."""
    palette = await open_palette(pilot)
    await pilot.press(*words)
    hits = palette.query_one(CommandList)

    def found() -> bool:
        """the palette to list a hit for the words typed"""
        if not hits.option_count:
            return False
        return words.lower() in str(hits.get_option_at_index(0).prompt).lower()

    await until(pilot, found)
    await pilot.press("enter")


async def test_the_palette_finds_pause_on_the_queue_and_runs_it(studio, home: Home) -> None:
    app = studio()
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("escape", "2")
        await until(pilot, lambda: app.current_mode == "queue")
        await palette_run(pilot, "pause")

        def paused() -> bool:
            """the queue to be paused"""
            return query(home, "SELECT value FROM setting WHERE key='queue_state'") == [("paused",)]

        await until(pilot, paused)


async def test_the_palette_finds_run_on_the_builder(studio, home: Home) -> None:
    app = studio()
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: app.current_mode == "builder")
        await pilot.press("escape")
        palette = await open_palette(pilot)
        await pilot.press(*"run")
        hits = palette.query_one(CommandList)

        def listed() -> list[str]:
            """the builder's Run and Dry run to be listed"""
            names = [str(hits.get_option_at_index(i).prompt) for i in range(hits.option_count)]
            starts = {n.split(" (")[0] for n in names}
            return names if {"Run", "Dry run"} <= starts else []

        await until(pilot, listed)


async def test_job_endings_share_one_notice_and_a_finished_run_rings(
    studio, home: Home, serve
) -> None:
    app = studio()
    rings: list[int] = []
    app.bell = lambda: rings.append(1)  # the terminal edge: count the bells
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: app._last_event is not None)  # the first summary is in
        serve()
        run_id = submit(home, txt2img_toml(prompts=["a", "b", "c"], seeds=[1]))

        def completed() -> bool:
            """the run's own notice to be shown"""
            return any(f"Run r{run_id}" in str(n.message) for n in app._notifications)

        await until(pilot, completed, timeout=120)
        messages = [str(n.message) for n in app._notifications]
        tallies = [m for m in messages if "finished" in m]
        assert len(tallies) == 1, messages  # one notice, replaced, not three
        assert any(f"Run r{run_id} test completed" in m for m in messages), messages
        assert rings, "a completed run rings the bell"


async def test_a_run_waiting_in_review_says_so_and_bell_can_be_off(
    studio, home: Home, serve
) -> None:
    config = home.root / "config.toml"
    config.write_text(config.read_text() + "bell = false\n")
    app = studio()
    rings: list[int] = []
    app.bell = lambda: rings.append(1)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: app._last_event is not None)
        serve()
        text = txt2img_toml(prompts=["a"], seeds=[1], mode="checkpoint", review=True, extra=UPSCALE)
        run_id = submit(home, text)

        def waiting() -> bool:
            """the run to say it waits in review"""
            return any(
                f"Run r{run_id}" in str(n.message) and "review" in str(n.message)
                for n in app._notifications
            )

        await until(pilot, waiting, timeout=120)
        assert not rings
