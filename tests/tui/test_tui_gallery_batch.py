"""The gallery's marks and batch actions, and images imported from other tools: keys only.

The artifacts are images imported with `medialab import` (no worker run is needed to
mark, star, delete, export or inspect them)."""

from __future__ import annotations

import zipfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from test_tui_gallery import inspector_text, open_gallery, range_text
from textual.widgets import Checkbox, Input, Static

from conftest import Home, query, until
from imagemeta import A1111, png_with
from medialab_tui.screens.dialogs import ConfirmScreen
from medialab_tui.screens.gallery import GalleryScreen
from medialab_tui.screens.gallery_dialogs import ExportScreen, PathQuestion
from medialab_tui.screens.gallery_widgets import MARK, GalleryTable, Thumb, ThumbGrid
from videoclips import Videos

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


@asynccontextmanager
async def library_gallery(
    studio: Any, home: Home, tmp_path: Path, size: tuple[int, int] = (120, 36)
) -> AsyncIterator[tuple[Any, Any, GalleryScreen, GalleryTable]]:
    """The gallery open on the three images of `library`, imported first."""
    home.cli("import", str(library(tmp_path / "lib")), check=True)
    app = studio()
    async with app.run_test(size=size) as pilot:
        screen = await open_gallery(app, pilot)
        table = screen.query_one(GalleryTable)
        await until(pilot, lambda: table.row_count == 3)
        yield app, pilot, screen, table


async def answer_path(pilot: Any, app: Any, path: Path) -> None:
    modal = await until(pilot, lambda: isinstance(app.screen, PathQuestion) and app.screen)
    modal.query_one(Input).value = str(path)
    await pilot.press("enter")


async def test_marked_rows_are_starred_together_and_deleted_after_one_question(
    studio: Any, home: Home, tmp_path: Path
) -> None:
    async with library_gallery(studio, home, tmp_path) as (app, pilot, screen, table):
        # space marks the highlighted row and moves on: a3 and a2 are marked.
        await pilot.press("space", "space")
        assert screen.marked == {3, 2}
        assert [str(table.get_row_at(i)[0]) for i in range(3)] == [MARK, MARK, ""]
        assert "2 marked" in range_text(screen)

        await pilot.press("s")
        await until(
            pilot, lambda: query(home, "SELECT id FROM artifact WHERE starred") == [(2,), (3,)]
        )
        await until(pilot, lambda: notified(app, "Starred 2 artifacts"))

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
        await until(pilot, lambda: notified(app, "Deleted 2 artifacts"))
        await until(pilot, lambda: table.row_count == 1)
        assert screen.marked == set()
        await until(pilot, lambda: "marked" not in range_text(screen))


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
        await until(pilot, lambda: notified(app, "Imported 3 images (2 a1111, 1 none)."))
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


async def test_marks_the_filters_hide_are_left_alone_by_star_delete_and_export(
    studio: Any, home: Home, tmp_path: Path
) -> None:
    """What a batch does is what can be seen: a mark hidden by a filter is said and kept."""
    async with library_gallery(studio, home, tmp_path) as (app, pilot, screen, table):
        await pilot.press("space", "space")  # a3 (the plain PNG) and a2 (A1111)
        assert screen.marked == {3, 2}
        await pilot.press("e", "e", "e")  # made here, imported, a1111: a3 is hidden
        assert screen.gallery_query.source == "a1111"
        await until(pilot, lambda: table.row_count == 2)
        await until(pilot, lambda: "2 marked, 1 hidden by the filters" in range_text(screen))

        await pilot.press("s")
        await until(pilot, lambda: query(home, "SELECT id FROM artifact WHERE starred") == [(2,)])
        hidden = "Starred a2 (1 more marked artifact is hidden by the filters"
        await until(pilot, lambda: notified(app, hidden))

        await pilot.press("x")
        export = await until(pilot, lambda: isinstance(app.screen, ExportScreen) and app.screen)
        assert "Export a2 to:" in export.question
        assert "1 more marked artifact is hidden by the filters and left alone" in export.hint
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is screen)

        await pilot.press("d")
        confirm = await until(pilot, lambda: isinstance(app.screen, ConfirmScreen) and app.screen)
        assert "Delete 1 marked artifact?" in confirm.question
        assert "1 more marked artifact is hidden by the filters" in confirm.question
        await pilot.press("y")
        await until(pilot, lambda: query(home, "SELECT id FROM artifact") == [(1,), (3,)])
        await until(pilot, lambda: table.row_count == 1)
        assert screen.marked == {3}

        # Every mark hidden: nothing is done to the highlighted row either.
        assert screen.current is not None and screen.current.id == 1
        for key in ("d", "s", "x"):
            app._notifications.clear()
            await pilot.press(key)
            await until(pilot, lambda: notified(app, "The 1 marked artifact is hidden"))
            assert app.screen is screen
        assert query(home, "SELECT id, starred FROM artifact") == [(1, 0), (3, 0)]

        # Shown again, the mark is acted on.
        await pilot.press(*["e"] * 6)  # comfyui … none, then every source
        assert screen.gallery_query.source == ""
        await until(pilot, lambda: table.row_count == 2)
        await until(pilot, lambda: "1 marked (u clears)" in range_text(screen))
        await pilot.press("s")
        await until(pilot, lambda: query(home, "SELECT id FROM artifact WHERE starred") == [(3,)])


async def test_export_strips_the_metadata_when_toggled(
    studio: Any, home: Home, tmp_path: Path
) -> None:
    async with library_gallery(studio, home, tmp_path, (100, 30)) as (app, pilot, screen, _):
        await pilot.press("down")  # a2: an A1111 image (seed 78)
        await until(pilot, lambda: screen.current is not None and screen.current.id == 2)

        # tab to the toggle, space turns it on (and goes back to the path), enter exports.
        await pilot.press("x")
        modal = await until(pilot, lambda: isinstance(app.screen, ExportScreen) and app.screen)
        strip = modal.query_one("#export-strip", Checkbox)
        assert strip.value is False
        modal.query_one(Input).value = str(tmp_path / "bare")
        await pilot.press("tab", "space")
        assert strip.value is True and modal.query_one(Input).has_focus
        await pilot.press("enter")
        await until(pilot, lambda: notified(app, "Exported 1 artifact without their metadata"))
        assert sorted(p.name for p in (tmp_path / "bare").iterdir()) == ["a2-b.png"]
        with Image.open(tmp_path / "bare" / "a2-b.png") as im:
            assert "parameters" not in im.info and "medialab" not in im.info
            assert im.size == (32, 32)

        # ctrl+t toggles it from the path field; twice is off again: the metadata stays.
        await pilot.press("x")
        modal = await until(pilot, lambda: isinstance(app.screen, ExportScreen) and app.screen)
        modal.query_one(Input).value = str(tmp_path / "kept")
        await pilot.press("ctrl+t")
        assert modal.query_one("#export-strip", Checkbox).value is True
        await pilot.press("ctrl+t", "enter")
        await until(pilot, lambda: notified(app, f"Exported 1 artifact to {tmp_path / 'kept'}"))
        assert sorted(p.name for p in (tmp_path / "kept").iterdir()) == ["a2-b.json", "a2-b.png"]
        with Image.open(tmp_path / "kept" / "a2-b.png") as im:
            assert "Seed: 78" in im.info["parameters"]


async def test_deleting_a_video_takes_its_first_frame_thumbnail_to_the_trash_too(
    studio: Any, home: Home
) -> None:
    frames = [np.full((32, 48, 3), 40 * i, np.uint8) for i in range(4)]
    made = Videos(home.root).video("i2v", frames, Fraction(8))
    path = Path(made.path)
    thumb = path.with_suffix(".thumb.png")
    assert thumb.is_file() and path.with_suffix(".json").is_file()
    app = studio()
    async with app.run_test(size=(120, 36)) as pilot:
        screen = await open_gallery(app, pilot)
        await until(pilot, lambda: screen.query_one(GalleryTable).row_count == 1)
        await pilot.press("d")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await until(pilot, lambda: query(home, "SELECT count(*) FROM artifact") == [(0,)])
    assert sorted(p.name for p in path.parent.iterdir()) == []
    trash = home.root / "trash"
    assert sorted(p.name for p in trash.iterdir()) == [
        f"a{made.id}-5.json",
        f"a{made.id}-5.mp4",
        f"a{made.id}-5.thumb.png",
    ]
