"""The gallery: real artifacts from the real CLI, browsed, filtered and acted on by keys."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path
from typing import Any

from PIL import Image
from textual.binding import Binding
from textual.pilot import Pilot
from textual.widgets import OptionList, Select, Static, TextArea

from conftest import Home, query, txt2img_toml, until
from medialab_tui.presets import pipeline_toml
from medialab_tui.screens.builder import BuilderScreen
from medialab_tui.screens.common import BuilderRequest, KeysFooter
from medialab_tui.screens.compare import CompareScreen
from medialab_tui.screens.dialogs import ConfirmScreen
from medialab_tui.screens.gallery import PAGE_SIZE, GalleryScreen
from medialab_tui.screens.gallery_widgets import GalleryTable, Inspector, Thumb, ThumbGrid


def make_artifacts(home: Home, prompts: list[str], seeds: list[int]) -> None:
    pipeline = home.pipeline("p", txt2img_toml(prompts=prompts, seeds=seeds))
    home.cli("run", str(pipeline), "--json", check=True)


async def open_gallery(app: Any, pilot: Pilot[Any]) -> GalleryScreen:
    await app.switch_mode("gallery")
    screen = app.screen
    assert isinstance(screen, GalleryScreen)
    await until(pilot, lambda: screen.loaded)
    return screen


def range_text(screen: GalleryScreen) -> str:
    return str(screen.query_one("#gallery-range", Static).render())


def inspector_text(screen: GalleryScreen) -> str:
    return str(screen.query_one("#inspector-meta", Static).render())


async def test_gallery_lists_artifacts_inspects_them_and_searches_prompts(
    studio: Any, home: Home
) -> None:
    make_artifacts(home, ["red fox", "blue whale"], [7])
    app = studio()
    async with app.run_test(size=(120, 36)) as pilot:
        screen = await open_gallery(app, pilot)
        table = screen.query_one(GalleryTable)
        assert table.row_count == 2
        assert "rows 1–2 of 2" in range_text(screen)
        # Newest first: the second job's artifact is on top.
        newest = screen.current
        assert newest is not None and newest.prompt == "blue whale"
        inspector = screen.query_one(Inspector)
        await until(pilot, lambda: inspector.view is not None and inspector.view.id == newest.id)
        text = inspector_text(screen)
        assert "blue whale" in text and "seed     7" in text and "demo-sd15" in text

        await pilot.press("down")
        await until(pilot, lambda: "red fox" in inspector_text(screen))

        # Filters: kind cycles all → image → video; the model select lists what is present.
        await pilot.press("k")
        assert screen.gallery_query.kind == "image"
        await pilot.press("k")
        await until(pilot, lambda: table.row_count == 0)
        # Said on a line of its own: the filters stay in view, to be changed.
        empty = screen.query_one("#gallery-empty", Static)
        await until(pilot, lambda: empty.display and "No artifact matches" in str(empty.render()))
        assert range_text(screen) == "no rows"
        assert "k video" in str(screen.query_one("#gallery-chips", Static).render())
        await pilot.press("k", "k")
        await until(pilot, lambda: table.row_count == 2)
        assert not empty.display
        select = screen.query_one("#gallery-model", Select)
        menu = select.query_one(OptionList)

        def models_listed() -> list[str]:
            """the model filter to list the models present"""
            return [str(menu.get_option_at_index(i).prompt) for i in range(menu.option_count)]

        await until(pilot, lambda: "demo-sd15" in models_listed())
        select.value = "demo-sd15"
        await until(pilot, lambda: screen.gallery_query.model == "demo-sd15")
        await until(pilot, lambda: table.row_count == 2)

        await pilot.press("slash")
        await pilot.press(*"fox", "enter")
        await until(pilot, lambda: table.row_count == 1)
        assert screen.current is not None and screen.current.prompt == "red fox"
        assert "of 1" in range_text(screen)

        # The grid shows the same page as thumbnails.
        await pilot.press("g")
        grid = screen.query_one(ThumbGrid)
        await until(pilot, lambda: len(grid.query(Thumb)) == 1)
        assert grid.has_focus


async def test_star_copy_delete_rerun_and_send_to_builder(
    studio: Any, home: Home, monkeypatch: Any
) -> None:
    make_artifacts(home, ["red fox"], [1, 2])
    app = studio()
    copied: list[str] = []
    monkeypatch.setattr(app, "copy_to_clipboard", copied.append)
    async with app.run_test(size=(120, 36)) as pilot:
        screen = await open_gallery(app, pilot)
        top = screen.current
        assert top is not None and top.seed == 2

        await pilot.press("y")
        await pilot.press("Y")
        assert copied == ["red fox", "2"]

        await pilot.press("s")

        def starred() -> bool:
            """the star to reach the store"""
            return query(home, "SELECT starred FROM artifact WHERE id=?", top.id) == [(1,)]

        await until(pilot, starred)
        await pilot.press("f")
        await until(pilot, lambda: screen.query_one(GalleryTable).row_count == 1)
        await pilot.press("f")
        await until(pilot, lambda: screen.query_one(GalleryTable).row_count == 2)

        path = Path(top.path)
        await pilot.press("d")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        await until(pilot, lambda: app.screen is screen)  # declined: nothing was started
        assert query(home, "SELECT count(*) FROM artifact WHERE id=?", top.id) == [(1,)]
        assert path.exists()

        await pilot.press("d")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await until(pilot, lambda: query(home, "SELECT count(*) FROM artifact") == [(1,)])
        # The file goes to the trash just after its row.
        trashed = home.root / "trash" / f"{top.ref}-{path.name}"
        await until(pilot, lambda: not path.exists() and trashed.exists())
        await until(pilot, lambda: screen.query_one(GalleryTable).row_count == 1)

        remaining = screen.current
        assert remaining is not None and remaining.seed == 1
        await pilot.press("i")
        builder = await until(pilot, lambda: isinstance(app.screen, BuilderScreen) and app.screen)
        images = builder.query_one("#in-images", TextArea)
        await until(pilot, lambda: images.text == remaining.path)

        # Last, as its run may make an artifact at once (a warm engine host).
        await app.switch_mode("gallery")
        runs_before = query(home, "SELECT count(*) FROM run")[0][0]
        await pilot.press("R")
        await until(pilot, lambda: query(home, "SELECT count(*) FROM run")[0][0] == runs_before + 1)
        assert query(home, "SELECT rerun_of FROM run ORDER BY id DESC LIMIT 1") == [(remaining.id,)]


def copy_artifact(home: Home, artifact_id: int, count: int) -> None:
    """Insert `count` copies of one real artifact row: the paging test's own data."""
    conn = sqlite3.connect(home.root / "medialab.db", timeout=30)
    try:
        columns = [r[1] for r in conn.execute("PRAGMA table_info(artifact)") if r[1] != "id"]
        values = [{"prompt": "'copy ' || n.i", "seed": "n.i"}.get(c, f"a.{c}") for c in columns]
        conn.execute(
            f"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
            f"INSERT INTO artifact ({', '.join(columns)}) "
            f"SELECT {', '.join(values)} FROM n, artifact a WHERE a.id = ?",
            (count, artifact_id),
        )
        conn.commit()
    finally:
        conn.close()


async def test_gallery_pages_through_thousands_and_notices_new_artifacts(
    studio: Any, home: Home
) -> None:
    make_artifacts(home, ["red fox"], [1])
    app = studio()
    async with app.run_test(size=(100, 30)) as pilot:
        # The app builds the gallery ahead, hidden, holding the one artifact; 2,500 more
        # arrive before its first show, which opens on the newest all the same.
        await until(pilot, lambda: "gallery" in app._screen_stacks)
        hidden = app._screen_stacks["gallery"][0]
        assert isinstance(hidden, GalleryScreen)
        await until(pilot, lambda: hidden.loaded and hidden.total == 1)
        copy_artifact(home, 1, 2500)
        # How fast it pages is measured in benchmarks/tui_scale.py, not asserted here.
        screen = await open_gallery(app, pilot)
        assert screen is hidden
        await until(pilot, lambda: "of 2,501" in range_text(screen))
        table = screen.query_one(GalleryTable)
        assert table.row_count == PAGE_SIZE
        assert "rows 1–100 of 2,501" in range_text(screen)
        assert screen.current is not None and screen.current.id == 2501

        await pilot.press("end")
        await until(pilot, lambda: table.cursor_row == PAGE_SIZE - 1)
        await pilot.press("pagedown")
        await until(pilot, lambda: "rows 101–200 of 2,501" in range_text(screen))
        assert table.cursor_row == 0
        assert screen.current is not None and screen.current.id == 2501 - PAGE_SIZE

        await pilot.press("up")
        await until(pilot, lambda: "rows 1–100 of 2,501" in range_text(screen))
        assert table.cursor_row == PAGE_SIZE - 1
        highlighted = screen.current
        assert highlighted is not None and highlighted.id == 2501 - PAGE_SIZE + 1

        # New artifacts push the page down; the cursor stays on the same artifact.
        copy_artifact(home, 1, 3)
        await until(pilot, lambda: "of 2,504" in range_text(screen))
        assert screen.current is not None and screen.current.id == highlighted.id
        assert "rows 101–200 of 2,504" in range_text(screen)


async def test_the_when_filter_hides_what_was_made_before_the_range(studio, home: Home) -> None:
    make_artifacts(home, ["old lighthouse", "new lighthouse"], [1])
    db = sqlite3.connect(home.root / "medialab.db")
    with db:
        db.execute(
            "UPDATE artifact SET created_at='2026-01-01 00:00:00.000000' WHERE prompt LIKE 'old%'"
        )
    db.close()
    app = studio()
    async with app.run_test(size=(120, 36)) as pilot:
        screen = await open_gallery(app, pilot)
        table = screen.query_one(GalleryTable)
        await until(pilot, lambda: table.row_count == 2)
        await pilot.press("w")  # today
        await until(pilot, lambda: table.row_count == 1)
        assert "new lighthouse" in str(table.get_row_at(0))
        assert "today" in str(screen.query_one("#gallery-chips", Static).render())
        await pilot.press("w", "w", "w")  # this week, this month, any time
        await until(pilot, lambda: table.row_count == 2)


async def test_compare_shows_an_upscale_beside_the_image_it_started_from(
    studio: Any, home: Home
) -> None:
    extra = '[[stages]]\ntype = "upscale"\nscale = 2\n'
    pipeline = home.pipeline("up", txt2img_toml(prompts=["harbour"], seeds=[3], extra=extra))
    home.cli("run", str(pipeline), "--json", check=True)
    app = studio()
    async with app.run_test(size=(120, 36)) as pilot:
        screen = await open_gallery(app, pilot)
        await until(pilot, lambda: screen.current is not None)
        assert screen.current is not None and screen.current.stage == "upscale"
        await pilot.press("c")
        compare = await until(pilot, lambda: isinstance(app.screen, CompareScreen) and app.screen)
        (before, before_image, _), (after, after_image, _) = compare.sides
        assert "· txt2img · 64×64" in before and "· upscale · 128×128" in after
        assert before_image is not None and before_image.size == (64, 64)
        assert after_image is not None and after_image.size == (128, 128)
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is screen)
        # A txt2img image started from no image: compare says so.
        await pilot.press("down", "c")
        await until(
            pilot, lambda: any("nothing to compare" in n.message for n in app._notifications)
        )
        assert app.screen is screen


async def test_b_sends_the_settings_that_made_the_image_to_the_builder(
    studio: Any, home: Home
) -> None:
    extra = '[[stages]]\ntype = "upscale"\nscale = 2\n'
    text = txt2img_toml(prompts=["harbour"], seeds=[5], per_input=2, extra=extra)
    home.cli("run", str(home.pipeline("up", text)), "--json", check=True)
    app = studio()
    async with app.run_test(size=(120, 36)) as pilot:
        screen = await open_gallery(app, pilot)
        sent: list[BuilderRequest] = []
        post = screen.post_message

        def record(message: Any) -> bool:
            if isinstance(message, BuilderRequest):
                sent.append(message)
            return post(message)

        screen.post_message = record  # type: ignore[method-assign]
        # Newest first: the upscale of the second image (seed 6) is on top.
        chosen = screen.current
        assert chosen is not None and chosen.stage == "upscale" and chosen.seed == 6
        footer = str(screen.query_one(KeysFooter).render())
        assert "b Settings to builder" in footer and "i Image to builder" in footer
        await pilot.press("b")
        await until(pilot, lambda: sent)
    (request,) = sent
    assert request.images == () and request.settings is not None
    settings = request.settings
    assert settings["inputs"]["prompts"] == ["harbour"] and settings["inputs"]["seeds"] == [6]
    assert "images" not in settings["inputs"] or not settings["inputs"]["images"]
    txt2img, upscale = settings["stages"]
    assert txt2img["type"] == "txt2img" and txt2img["per_input"] == 1
    assert upscale["type"] == "upscale" and upscale["scale"] == 2
    # The settings are a pipeline file that makes the same image again.
    again = home.pipeline("again", pipeline_toml(settings))
    proc = home.cli("run", str(again), "--json", check=True)
    *_, copy = json.loads(proc.stdout.splitlines()[-1])["artifacts"]  # the last stage's
    with Image.open(chosen.path) as a, Image.open(copy) as b:
        assert a.size == b.size == (128, 128)
        assert a.tobytes() == b.tobytes()


async def test_settings_of_a_later_stage_keep_the_outputs_that_lead_to_the_image(
    studio: Any, home: Home
) -> None:
    """An img2img stage's outputs take their seeds from the image before: the settings
    make as many as it takes to reach the chosen one."""
    extra = '[[stages]]\ntype = "img2img"\nmodel = "demo-sd15"\nsteps = 2\nper_input = 3\n'
    text = txt2img_toml(prompts=["reef"], seeds=[9], extra=extra)
    home.cli("run", str(home.pipeline("i2i", text)), "--json", check=True)
    app = studio()
    async with app.run_test(size=(120, 36)) as pilot:
        screen = await open_gallery(app, pilot)
        await until(pilot, lambda: screen.current is not None)
        await pilot.press("down")  # the second of the three img2img outputs (seed 10)
        chosen = screen.current
        assert chosen is not None and chosen.stage == "img2img" and chosen.seed == 10
        settings = await until(pilot, lambda: app.client.settings(chosen.ref))
    assert settings["inputs"]["seeds"] == [9]
    assert [stage["per_input"] for stage in settings["stages"]] == [1, 2]


def test_the_readme_lists_every_gallery_key() -> None:
    """The README's key table has every key the gallery binds (its `?` screen's)."""
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    (row,) = [line for line in readme.splitlines() if line.startswith("| 4 Gallery |")]
    listed = set(re.findall(r"`([^`]+)`", row))
    names = {"slash": "/", "left_square_bracket": "[", "right_square_bracket": "]"}
    missing = [
        f"{binding.id}: {key}"
        for binding in GalleryScreen.BINDINGS
        if isinstance(binding, Binding)
        for key in binding.key.split(",")
        if names.get(key, key) not in listed
    ]
    assert not missing, f"keys the README's gallery row lacks: {missing}"
