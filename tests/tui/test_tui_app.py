"""The TUI shell: attaching to the engine host, screens by key, help, palette, quitting,
models."""

from __future__ import annotations

import subprocess
import sys

import pytest
from rich.cells import cell_len
from rich.text import Text
from textual.pilot import Pilot
from textual.widget import Widget
from textual.widgets import DataTable, Static

from conftest import Home, process_gone, query, submit, txt2img_toml, until, wait_for
from medialab_tui.engine.host import HostLock
from medialab_tui.screens.builder import BuilderScreen
from medialab_tui.screens.common import KeysFooter, StudioHeader
from medialab_tui.screens.help import HelpScreen


async def test_number_keys_switch_screens_and_help_lists_their_keys(studio) -> None:
    app = studio()
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("escape")  # out of any text field the builder focused
        for key, mode in (("2", "queue"), ("3", "models"), ("4", "gallery"), ("1", "builder")):
            await pilot.press(key)
            assert app.current_mode == mode
        await pilot.press("3")
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        text = "\n".join(lines(app.screen.query_one("#help-keys")))
        assert "Rescan" in text and "Use in builder" in text and "Quit" in text
        await pilot.press("escape")
        assert app.current_mode == "models"


def lines(widget: Widget) -> list[str]:
    """The text of a widget's lines as the terminal shows them."""
    return [widget.render_line(y).text for y in range(widget.size.height)]


SIZES = ((80, 24), (100, 30), (160, 45))


@pytest.mark.parametrize("size", SIZES)
async def test_header_and_footer_fit_and_keep_the_host_line_and_quit(studio, size) -> None:
    app = studio()
    async with app.run_test(size=size) as pilot:
        for mode in ("builder", "queue", "models", "gallery"):
            await app.switch_mode(mode)
            await header_and_footer_fit(pilot, size[0] >= 160)


async def header_and_footer_fit(pilot: Pilot[None], wide: bool) -> None:
    app = pilot.app
    # A screen switched to on a loaded machine may still be mounting its widgets.
    header = await until(pilot, lambda: mounted_header(app))
    footer = app.screen.query_one(KeysFooter)
    host = app.engine_host.describe()

    def fits() -> bool:
        """the header to show the host line within its width"""
        shown = header_text(header)
        return host in shown and cell_len(shown) <= header.content_region.width

    await until(pilot, fits)
    shown = header_text(header)
    assert "queue active" in shown or "· active ·" in shown
    await until(pilot, lambda: "^q Quit" in str(footer.render()))
    keys = str(footer.render())
    assert "^p palette" in keys, keys
    assert cell_len(keys) <= footer.size.width, keys
    if wide:
        assert "? help" in shown and "1 Builder" in shown and "4 Gallery" in shown


async def test_a_long_host_line_keeps_the_screen_tabs_at_80_columns(studio) -> None:
    app = studio()
    async with app.run_test(size=(80, 24)) as pilot:
        for mode, name in (("builder", "Builder"), ("queue", "Queue"), ("gallery", "Gallery")):
            await app.switch_mode(mode)
            header = await until(pilot, lambda: mounted_header(app))
            # As a host on another account shows it; set and read with no await between,
            # so the state poll cannot put its own holder back in the meantime.
            app.engine_host.holder = {"role": "serve", "pid": 30636, "user": "operator"}
            shown = Text.from_markup(header.line(78)).plain
            assert cell_len(shown) <= 78, shown
            assert f"{SCREEN_NUMBER[mode]} {name}" in shown, shown
            assert "serve (pid 30636, user operator)" in shown, shown
            assert all(key in shown.split("│")[0] for key in "1234"), shown


SCREEN_NUMBER = {"builder": "1", "queue": "2", "models": "3", "gallery": "4"}


def mounted_header(app) -> StudioHeader | None:
    """The current screen's header once it is mounted (its footer is mounted with it)."""
    found = app.screen.query(StudioHeader)
    return found.first() if found and app.screen.query(KeysFooter) else None


def header_text(header: StudioHeader) -> str:
    return str(header.render())


@pytest.mark.parametrize("mode", ["queue", "gallery"])
async def test_help_shows_key_names_and_no_markup(studio, mode: str) -> None:
    app = studio()
    async with app.run_test(size=(100, 30)) as pilot:
        await app.switch_mode(mode)
        await pilot.press("escape", "question_mark")
        help_screen = await until(pilot, lambda: isinstance(app.screen, HelpScreen) and app.screen)
        text = lines(help_screen.query_one("#help-keys"))
        assert not [line for line in text if "[/" in line or "[b]" in line or "[dim]" in line]
        # `[` and `]` page through the tables, and are shown as keys.
        assert any(line.strip().startswith("]") for line in text), text
        assert any(line.strip().startswith("[") for line in text), text
        # The descriptions start in one column, in both sections.
        starts = {
            len(line) - len(line.lstrip()[len(line.lstrip().split()[0]) :].lstrip())
            for line in text
            if line.strip() and line.strip().split()[0] in ("c", "/", "1", "^q")
        }
        assert len(starts) == 1, text


async def test_models_screen_lists_the_registry_and_sends_a_model_to_the_builder(studio) -> None:
    app = studio()
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.press("3")
        await until(pilot, lambda: app.current_mode == "models")
        table = app.screen.query_one(DataTable)
        await until(pilot, lambda: table.row_count >= 3)
        names = [str(table.get_row_at(i)[0]).strip() for i in range(table.row_count)]
        assert "demo-sdxl" in names
        table.move_cursor(row=names.index("demo-sdxl"))
        await pilot.press("u")
        builder = await until(pilot, lambda: isinstance(app.screen, BuilderScreen) and app.screen)
        await until(pilot, lambda: builder.document["stages"][0].get("model") == "demo-sdxl")


async def test_models_sizes_and_detail_values_line_up(studio) -> None:
    app = studio()
    async with app.run_test(size=(160, 45)) as pilot:
        await app.switch_mode("models")
        screen = app.screen
        table = screen.query_one(DataTable)
        await until(pilot, lambda: table.row_count >= 3)

        def sized_rows() -> list[str]:
            """three or more rows drawn with their sizes"""
            rows = [line for line in lines(table) if " KB " in line or " MB " in line]
            return rows if len(rows) >= 3 else []

        # The rows are counted before they are all drawn: wait for three drawn.
        rows = await until(pilot, sized_rows)
        # Sizes are right-aligned: "68.7 KB" and "6.5 MB" end in the same column.
        size_ends = {max(line.find(" KB "), line.find(" MB ")) for line in rows}
        assert len(size_ends) == 1, rows

        def labelled_lines() -> list[str]:
            """the six labelled lines of the details"""
            details = lines(screen.query_one("#model-details"))
            labels = ("kind", "arch", "format", "size", "sha256", "path")
            found = [line for line in details if line.strip().split(" ")[0] in labels]
            return found if len(found) == 6 else []

        # Every value of the details starts in one column, the long hash wrapped under it.
        labelled = await until(pilot, labelled_lines)
        starts = {len(line) - len(line.lstrip().split(" ", 1)[1].lstrip()) for line in labelled}
        assert len(starts) == 1, labelled


async def test_a_models_kind_with_no_match_says_so_under_the_filter_line(studio) -> None:
    app = studio()
    async with app.run_test(size=(100, 30)) as pilot:
        await app.switch_mode("models")
        screen = app.screen
        table = screen.query_one(DataTable)
        await until(pilot, lambda: table.row_count >= 3)
        filter_line = screen.query_one("#models-filter", Static)
        empty = screen.query_one("#models-empty", Static)
        assert not empty.display
        await pilot.press("k", "k", "k")  # checkpoint, lora, vae: the demo has no vae
        await until(pilot, lambda: "0 models · vae" in str(filter_line.render()))
        assert "k kind" in str(filter_line.render())
        assert empty.display and "No vae models" in str(empty.render())
        await pilot.press("k")  # controlnet: the demo's, each under its family's heading
        await until(
            pilot,
            lambda: screen.models and all(m.kind == "controlnet" for m in screen.models),
        )
        assert table.row_count == len(screen.models) + len(screen.groups)
        assert "demo-sd15-controlnet" in [
            str(row[0]).strip() for row in map(table.get_row_at, range(table.row_count))
        ]
        assert not empty.display


async def test_a_second_tui_attaches_to_the_engine_host_the_first_one_started(
    studio, home: Home
) -> None:
    first = studio(host_engine=True)
    second = studio(host_engine=True)
    async with first.run_test(size=(120, 36)) as pilot1:
        header1 = first.screen.query_one(StudioHeader)
        await until(pilot1, lambda: "attached to serve" in str(header1.render()))
        host = HostLock(home.root / "engine.lock").holder()
        assert host is not None and host["role"] == "serve"
        async with second.run_test(size=(120, 36)) as pilot2:
            header2 = second.screen.query_one(StudioHeader)
            await until(pilot2, lambda: f"pid {host['pid']}" in str(header2.render()))
            run_id = submit(home, txt2img_toml(prompts=["attached"], seeds=[1]))
            wait_for(
                lambda: (
                    query(home, "SELECT status FROM run WHERE id=?", run_id) == [("succeeded",)]
                ),
                timeout=90,
            )


async def test_quitting_leaves_the_host_and_its_queue_alone(studio, home: Home) -> None:
    """No question on quit: the host keeps the work, and without this TUI's heartbeat
    it leaves after its keep-alive once the queue is empty."""
    config = home.root / "config.toml"
    config.write_text(config.read_text() + "keep_alive = 1\n")
    home.cli("pause", check=True)
    run_id = submit(home, txt2img_toml(prompts=["later"], seeds=[1]))
    app = studio(host_engine=True)
    async with app.run_test(size=(120, 36)) as pilot:
        await until(pilot, lambda: app.summary.counts.get("queued") == 1)  # the state poll
        await until(pilot, lambda: app.engine_host.holder is not None)
        host = app.engine_host.holder["pid"]
        await until(pilot, lambda: query(home, "SELECT key FROM setting WHERE key LIKE 'client.%'"))
        await pilot.press("ctrl+q")
    assert not query(home, "SELECT key FROM setting WHERE key LIKE 'client.%'")
    assert (HostLock(home.root / "engine.lock").holder() or {}).get("pid") == host
    assert query(home, "SELECT status FROM job WHERE run_id=?", run_id) == [("queued",)]
    home.cli("resume", check=True)
    wait_for(lambda: query(home, "SELECT status FROM run WHERE id=?", run_id) == [("succeeded",)])
    wait_for(process_gone(host), timeout=30)  # idle, nobody attached: it left by itself


def test_the_ui_process_never_imports_torch(home: Home) -> None:
    code = f"""
import asyncio, sys
from medialab_tui.app import MedialabApp
from medialab_tui.config import DataDir, load_config
from medialab_tui.store.db import Store
from pathlib import Path
data = DataDir(Path({str(home.root)!r})).ensure()
app = MedialabApp(data, load_config(data), Store(data.db_path), host_engine=True)
from textual.worker import WorkerState
async def main():
    async with app.run_test(size=(100, 30)) as pilot:
        for key in "23412":
            await pilot.press(key)
            # Until what the screen loads on show has been loaded.
            while any(w.state in (WorkerState.PENDING, WorkerState.RUNNING) for w in app.workers):
                await pilot.pause(0.05)
        while app.engine_host.holder is None:
            await pilot.pause(0.05)
asyncio.run(main())
heavy = [m for m in ("torch", "diffusers", "transformers") if m in sys.modules]
print(",".join(heavy) or "clean")
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "clean"


def test_screens_never_import_the_app_and_presets_need_no_textual() -> None:
    """One direction: the app imports the screens; presets are plain file code."""
    code = """
import importlib, pkgutil, sys
import medialab_tui.presets
print("textual" in sys.modules)
import medialab_tui.screens as screens
for module in pkgutil.iter_modules(screens.__path__):
    importlib.import_module(f"medialab_tui.screens.{module.name}")
print("medialab_tui.app" in sys.modules)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", "False"]


async def test_a_user_keymap_in_config_toml_rebinds_an_action(studio, home: Home) -> None:
    config = home.root / "config.toml"
    config.write_text(config.read_text() + '[keys]\n"models.rescan" = "z"\n')
    app = studio()
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.press("escape", "3")
        assert app.current_mode == "models"
        await pilot.press("z")
        await until(pilot, lambda: any("unchanged" in str(n.message) for n in app._notifications))
