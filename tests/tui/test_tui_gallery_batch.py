"""The gallery's marks and batch actions, and images imported from other tools: keys only.

The artifacts are images imported with `medialab import` (no worker run is needed to
mark, star, delete, export or inspect them)."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

from test_tui_gallery import inspector_text, open_gallery, range_text
from textual.widgets import Input, Static

from conftest import Home, query, until
from imagemeta import A1111, png_with
from medialab_tui.screens.dialogs import ConfirmScreen
from medialab_tui.screens.gallery_dialogs import PathScreen
from medialab_tui.screens.gallery_widgets import MARK, GalleryTable, Thumb, ThumbGrid

OSC52 = "\x1b]52;c;aGVsbG8=\x07"  # would write "hello" into the user's clipboard
SHOWN = "^[]52;c;aGVsbG8=^G"


def library(root: Path) -> Path:
    """Two A1111 images (seeds 77 and 78, one prompt holding OSC 52) and a plain one."""
    root.mkdir()
    png_with(root / "a.png", size=(32, 32), parameters=A1111)
    evil = A1111.replace("Seed: 77", "Seed: 78").replace("stormy", f"storm{OSC52}y")
    png_with(root / "b.png", size=(32, 32), parameters=evil)
    png_with(root / "c.png", size=(16, 16))
    return root


def notified(app: Any, text: str) -> bool:
    return any(text in n.message for n in app._notifications)


async def answer_path(pilot: Any, app: Any, path: Path) -> None:
    modal = await until(pilot, lambda: isinstance(app.screen, PathScreen) and app.screen)
    modal.query_one(Input).value = str(path)
    await pilot.press("enter")


async def test_marked_rows_are_starred_together_and_deleted_after_one_question(
    studio: Any, home: Home, tmp_path: Path
) -> None:
    home.cli("import", str(library(tmp_path / "lib")), check=True)
    app = studio()
    async with app.run_test(size=(120, 36)) as pilot:
        screen = await open_gallery(app, pilot)
        table = screen.query_one(GalleryTable)
        await until(pilot, lambda: table.row_count == 3)
        # space marks the highlighted row and moves on: a3 and a2 are marked.
        await pilot.press("space", "space")
        assert screen.marked == {3, 2}
        assert [str(table.get_row_at(i)[0]) for i in range(3)] == [MARK, MARK, ""]
        assert "2 marked" in range_text(screen)

        await pilot.press("s")
        await until(
            pilot, lambda: query(home, "SELECT id FROM artifact WHERE starred") == [(2,), (3,)]
        )
        assert notified(app, "Starred 2 artifacts")

        # The grid shows the same marks.
        await pilot.press("g")
        grid = screen.query_one(ThumbGrid)
        await until(pilot, lambda: len(grid.query(Thumb)) == 3)
        assert [t.has_class("-marked") for t in grid.query(Thumb)] == [True, True, False]
        await pilot.press("g")

        await pilot.press("d")
        confirm = await until(pilot, lambda: isinstance(app.screen, ConfirmScreen) and app.screen)
        assert "Delete 2 marked artifacts?" in confirm.question
        await pilot.press("y")
        await until(pilot, lambda: query(home, "SELECT id FROM artifact") == [(1,)])
        assert app.screen is screen  # asked once, for both
        await until(pilot, lambda: table.row_count == 1)
        assert screen.marked == set() and "marked" not in range_text(screen)
        assert notified(app, "Deleted 2 artifacts")


async def test_import_a_folder_filter_by_source_inspect_the_raw_metadata_and_export(
    studio: Any, home: Home, tmp_path: Path
) -> None:
    folder = library(tmp_path / "lib")
    app = studio()
    async with app.run_test(size=(120, 36)) as pilot:
        screen = await open_gallery(app, pilot)
        table = screen.query_one(GalleryTable)
        assert table.row_count == 0
        await pilot.press("I")
        await answer_path(pilot, app, folder)
        await until(pilot, lambda: table.row_count == 3)
        assert notified(app, "Imported 3 images (2 a1111, 1 none).")
        await pilot.press("I")
        await answer_path(pilot, app, folder)
        await until(pilot, lambda: notified(app, "Imported 0 images; 3 imported before."))
        await pilot.press("I")
        await answer_path(pilot, app, tmp_path / "nowhere")
        await until(pilot, lambda: notified(app, "nowhere does not exist"))
        assert table.row_count == 3

        chips = screen.query_one("#gallery-chips", Static)
        for source, rows in (("here", 0), ("imported", 3), ("a1111", 2), ("comfyui", 0)):
            await pilot.press("e")
            assert screen.gallery_query.source == source
            await until(pilot, lambda rows=rows: table.row_count == rows)
            assert f"e {'made here' if source == 'here' else source}" in str(chips.render())

        await pilot.press("e", "e", "e")  # invokeai, swarmui, medialab
        await pilot.press("e")  # none: the plain PNG
        await until(pilot, lambda: table.row_count == 1)
        await pilot.press("e")  # every source again
        await until(pilot, lambda: table.row_count == 3)

        # The newest of the A1111 images (seed 78): its parameters chunk as written.
        await pilot.press("down")
        await until(pilot, lambda: "[parameters]" in inspector_text(screen))
        text = inspector_text(screen)
        assert "source   a1111" in text and str(folder / "b.png") in text
        assert f"storm{SHOWN}y" in text and "\x1b" not in text and "\x07" not in text
        assert "Steps: 30, Sampler: DPM++ 2M" in text

        await pilot.press("space", "space")  # a2 and a1: the two A1111 images
        target = tmp_path / "out.zip"
        await pilot.press("x")
        await answer_path(pilot, app, target)
        await until(pilot, lambda: notified(app, "Exported 2 artifacts"))
        with zipfile.ZipFile(target) as archive:
            assert sorted(archive.namelist()) == ["a1-a.json", "a1-a.png", "a2-b.json", "a2-b.png"]
        # A second export to the same zip is refused: nothing is replaced.
        before = target.read_bytes()
        await pilot.press("x")
        await answer_path(pilot, app, target)
        await until(pilot, lambda: notified(app, "already exists"))
        assert target.read_bytes() == before
