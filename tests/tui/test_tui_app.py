"""The TUI shell: hosting or attaching, screens by key, help, palette, quitting, models."""

from __future__ import annotations

import subprocess
import sys

from textual.widgets import DataTable

from conftest import Home, process_gone, query, submit, txt2img_toml, until, wait_for
from medialab_tui.engine.host import HostLock
from medialab_tui.screens.builder import BuilderScreen
from medialab_tui.screens.common import StudioHeader
from medialab_tui.screens.dialogs import QuitScreen
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
        text = str(app.screen.query_one("Static").render())
        assert "Rescan" in text and "Use in builder" in text and "Quit" in text
        await pilot.press("escape")
        assert app.current_mode == "models"


async def test_models_screen_lists_the_registry_and_sends_a_model_to_the_builder(studio) -> None:
    app = studio()
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.press("3")
        await until(pilot, lambda: app.current_mode == "models")
        table = app.screen.query_one(DataTable)
        await until(pilot, lambda: table.row_count >= 3)
        names = [str(table.get_row_at(i)[0]) for i in range(table.row_count)]
        assert any(n.startswith("demo-sdxl") for n in names)
        row = next(i for i, n in enumerate(names) if n.startswith("demo-sdxl"))
        table.move_cursor(row=row)
        await pilot.press("u")
        builder = await until(pilot, lambda: isinstance(app.screen, BuilderScreen) and app.screen)
        await until(pilot, lambda: builder.document["stages"][0].get("model") == "demo-sdxl")


async def test_a_second_tui_attaches_to_the_first_ones_engine(studio, home: Home) -> None:
    first = studio(host_engine=True)
    second = studio(host_engine=True)
    async with first.run_test(size=(120, 36)):
        assert first.engine_host.hosting
        async with second.run_test(size=(120, 36)) as pilot2:
            assert not second.engine_host.hosting
            header = second.screen.query_one(StudioHeader)
            await until(pilot2, lambda: "attached to tui" in str(header.render()))
            run_id = submit(home, txt2img_toml(prompts=["attached"], seeds=[1]))
            wait_for(
                lambda: (
                    query(home, "SELECT status FROM run WHERE id=?", run_id) == [("succeeded",)]
                ),
                timeout=90,
            )


async def test_quitting_with_work_queued_asks_and_stop_leaves_it_queued(studio, home: Home) -> None:
    home.cli("pause", check=True)
    run_id = submit(home, txt2img_toml(prompts=["later"], seeds=[1]))
    app = studio(host_engine=True)
    async with app.run_test(size=(120, 36)) as pilot:
        await until(pilot, lambda: app.summary.counts.get("queued") == 1)  # the state poll
        await pilot.press("ctrl+q")
        assert isinstance(app.screen, QuitScreen)
        await pilot.press("s")
    assert not app.engine_host.hosting
    assert app.engine_host.lock.holder() is None
    assert query(home, "SELECT status FROM job WHERE run_id=?", run_id) == [("queued",)]


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
        assert app.engine_host.hosting
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


def test_a_hang_up_hands_the_queue_to_a_background_server(home: Home) -> None:
    """Closing the terminal (SIGHUP, as when SSH drops) loses no job."""
    import json
    import os
    import shutil
    import signal

    import pytest

    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed")
    home.cli("pause", check=True)
    run_id = submit(home, txt2img_toml(prompts=["after the hang-up"], seeds=[1]))
    session = f"medialab-hup-{os.getpid()}"
    lock = home.root / "engine.lock"

    def holder_role() -> str:
        holder = HostLock(lock).holder()  # None unless a live process holds the lock
        return str(holder.get("role", "")) if holder else ""

    def tui_hosts() -> bool:
        """the TUI in tmux to host the engine"""
        return holder_role() == "tui"

    def server_hosts() -> bool:
        """a background `medialab serve` to take over after the hang-up"""
        return holder_role() == "serve"

    command = f"MEDIALAB_HOME={home.root} {sys.executable} -m medialab_tui"
    subprocess.run(
        ["tmux", "new-session", "-d", "-s", session, "-x", "120", "-y", "36", command], check=True
    )
    serve_pid = None
    try:
        wait_for(tui_hosts, timeout=60)
        tui_pid = json.loads(lock.read_text())["pid"]
        subprocess.run(["tmux", "kill-session", "-t", session], check=True)
        wait_for(server_hosts, timeout=60)

        wait_for(process_gone(tui_pid), timeout=20)  # the TUI ends after handing over
        serve_pid = json.loads(lock.read_text())["pid"]
        home.cli("resume", check=True)
        wait_for(
            lambda: query(home, "SELECT status FROM run WHERE id=?", run_id) == [("succeeded",)],
            timeout=90,
        )
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
        if serve_pid:
            os.kill(serve_pid, signal.SIGTERM)


async def test_a_user_keymap_in_config_toml_rebinds_an_action(studio, home: Home) -> None:
    config = home.root / "config.toml"
    config.write_text(config.read_text() + '[keys]\n"models.rescan" = "z"\n')
    app = studio()
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.press("escape", "3")
        assert app.current_mode == "models"
        await pilot.press("z")
        await until(pilot, lambda: any("unchanged" in str(n.message) for n in app._notifications))
