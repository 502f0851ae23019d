"""The Models screen: the registry grouped by family, tags and notes typed in and kept
in the store, the tag filter, the root each model came from, new models by themselves."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from textual.widgets import DataTable, Input, OptionList, Static

from conftest import Home, until
from medialab_tui.config import DataDir, load_config
from medialab_tui.engine.families import family_of
from medialab_tui.engine.registry import scan
from medialab_tui.screens.builder_form import PickScreen
from medialab_tui.screens.models import COLUMNS, LabelPrompt, ModelsScreen
from medialab_tui.screens.models_groups import grouped
from medialab_tui.store.db import Store
from medialab_tui.store.queries import list_models
from medialab_tui.store.tables import Model
from medialab_tui.store.views import ModelView

SIZE = (120, 36)


async def models_screen(app: Any, pilot: Any) -> ModelsScreen:
    await app.switch_mode("models")
    screen = app.screen
    assert isinstance(screen, ModelsScreen)
    await until(pilot, lambda: len(screen.models) >= 3 and screen.rows)
    return screen


def labels(home: Home) -> dict[str, tuple[tuple[str, ...], str]]:
    """Every labelled model's (tags, note), read from the data directory's database."""
    store = Store(DataDir(home.root).db_path)
    try:
        return {m.name: (m.tags, m.note) for m in list_models(store) if m.tags or m.note}
    finally:
        store.dispose()


def highlight(screen: ModelsScreen, name: str) -> None:
    table = screen.query_one(DataTable)
    table.move_cursor(row=next(i for i, m in enumerate(screen.rows) if m and m.name == name))


def details(screen: ModelsScreen) -> str:
    panel = screen.query_one("#model-details", Static)
    return "\n".join(panel.render_line(y).text for y in range(panel.size.height))


def facts(screen: ModelsScreen) -> dict[str, str]:
    """The details panel's labelled values, each joined again where it wrapped."""
    found: dict[str, str] = {}
    label = ""
    for line in details(screen).splitlines()[1:]:
        head, _, value = line.strip().partition(" ")
        if line.startswith(" ") or not line.strip():  # a value's next line, or a gap
            found[label] = found.get(label, "") + line.strip() if label else ""
        else:
            label = head
            found[label] = value.strip()
    return found


async def answer(pilot: Any, key: str, value: str) -> LabelPrompt:
    """Press `key` (t tags, n note), put `value` in the prompt it opens (as a paste
    would), press enter; the prompt is returned (still open when it refused)."""
    app = pilot.app
    await pilot.press(key)
    prompt = await until(pilot, lambda: isinstance(app.screen, LabelPrompt) and app.screen)
    prompt.query_one(Input).value = value
    await pilot.press("enter")
    return prompt


async def test_models_are_grouped_by_family_under_headings_the_cursor_passes_over(
    studio: Any,
) -> None:
    app = studio()
    async with app.run_test(size=SIZE) as pilot:
        screen = await models_screen(app, pilot)
        titles = [g.title for g in screen.groups]
        # Image families oldest first, then video families, then the kinds that have none.
        assert (
            titles.index("SD 1.5") < titles.index("SDXL") < titles.index("Stable Video Diffusion")
        )
        if "Flux" in titles:
            assert titles.index("SDXL") < titles.index("SD3") < titles.index("Flux")
        assert titles.index("SDXL") < titles.index("Wan") < titles.index("Upscalers")
        assert titles.index("Upscalers") < titles.index("Interpolators")
        by_title = {g.title: [m.name for m in g.models] for g in screen.groups}
        # A family's LoRAs and ControlNets sit under it, after its checkpoints.
        assert by_title["SD 1.5"][-2:] == ["demo-sd15-lora", "demo-sd15-controlnet"]
        assert by_title["Upscalers"] == ["demo-esrgan-x4"]
        assert by_title["Interpolators"] == ["demo-rife"]
        for group in screen.groups:
            family = family_of(group.models[0].arch)
            if family is not None:  # Flux and SD3 too, once their demo models exist
                assert group.title == family.title
                assert all(family_of(m.arch) == family for m in group.models)
        table = screen.query_one(DataTable)
        # Each heading is a row of its own, named as its group, with its count.
        headings = [i for i, m in enumerate(screen.rows) if m is None]
        assert len(headings) == len(screen.groups)
        assert [str(table.get_row_at(i)[0]) for i in headings] == titles
        assert str(table.get_row_at(headings[0])[1]) == f"{len(screen.groups[0].models)} models"
        # Down from a group's last model lands on the next group's first, and back.
        second = headings[1]
        table.move_cursor(row=second - 1)
        await pilot.press("down")
        await until(pilot, lambda: table.cursor_row == second + 1)
        await pilot.press("up")
        await until(pilot, lambda: table.cursor_row == second - 1)
        await pilot.press("ctrl+home")  # the top row is a heading: the cursor goes under it
        await until(pilot, lambda: table.cursor_row == 1)
        assert screen._current() is screen.rows[1]


def test_models_no_family_claims_are_grouped_by_kind_after_the_families() -> None:
    def model(name: str, kind: str, arch: str) -> ModelView:
        return ModelView(name, kind, arch, "safetensors", f"/m/{name}", 1, "", True, False)

    groups = grouped(
        [
            model("odd", "unknown", "unknown"),
            model("cracked", "broken", "sdxl"),
            model("x4", "upscaler", "esrgan"),
            model("style", "lora", "unknown"),
            model("b-lora", "lora", "sdxl"),
            model("a-base", "checkpoint", "sdxl"),
            model("face", "detector", "yolo"),
        ]
    )
    assert [(g.title, [m.name for m in g.models]) for g in groups] == [
        ("SDXL", ["a-base", "b-lora"]),
        ("Upscalers", ["x4"]),
        ("Detectors", ["face"]),
        ("LoRAs, family unknown", ["style"]),
        ("Not recognised", ["odd"]),
        ("Damaged files", ["cracked"]),
    ]


async def test_tags_and_a_note_typed_on_the_models_screen_are_stored_and_filter_it(
    home: Home, studio: Any
) -> None:
    app = studio()
    async with app.run_test(size=SIZE) as pilot:
        screen = await models_screen(app, pilot)
        highlight(screen, "demo-sdxl")
        # Typed or pasted: control characters never reach the store.
        await answer(pilot, "t", "Portrait, FAST\x1b]0;x\x07")
        await until(pilot, lambda: "demo-sdxl" in labels(home))
        assert labels(home)["demo-sdxl"] == (("portrait", "fast ]0;x"), "")
        await until(pilot, lambda: "portrait" in details(screen))
        tags = COLUMNS.index("tags")
        row = screen.query_one(DataTable).get_row("demo-sdxl")
        assert str(row[tags]) == "portrait, fast ]0;x"

        await pilot.press("n")
        prompt = await until(pilot, lambda: isinstance(app.screen, LabelPrompt) and app.screen)
        assert prompt.query_one(Input).value == ""
        await pilot.press(*"big faces")
        await pilot.press("enter")
        await until(pilot, lambda: labels(home)["demo-sdxl"][1] == "big faces")
        await until(pilot, lambda: "big faces" in details(screen))

        await pilot.press("f")
        picker = await until(pilot, lambda: isinstance(app.screen, PickScreen) and app.screen)
        options = picker.query_one(OptionList)
        ids = [options.get_option_at_index(i).id for i in range(options.option_count)]
        assert ids == ["", "fast ]0;x", "portrait"]
        options.highlighted = ids.index("portrait")
        await pilot.press("enter")
        await until(pilot, lambda: [m.name for m in screen.models] == ["demo-sdxl"])
        assert "tag portrait" in str(screen.query_one("#models-filter", Static).render())
        assert screen.query_one(DataTable).row_count == 2  # the SDXL heading and the model

        await pilot.press("f")
        picker = await until(pilot, lambda: isinstance(app.screen, PickScreen) and app.screen)
        await pilot.press("enter")  # "every model", the first option
        await until(pilot, lambda: len(screen.models) >= 3)
        # An empty line clears the tags; the note stays.
        highlight(screen, "demo-sdxl")
        await answer(pilot, "t", "")
        await until(pilot, lambda: labels(home)["demo-sdxl"] == ((), "big faces"))


async def test_a_refused_tag_is_said_in_the_prompt_and_nothing_is_stored(
    home: Home, studio: Any
) -> None:
    app = studio()
    async with app.run_test(size=SIZE) as pilot:
        screen = await models_screen(app, pilot)
        highlight(screen, "demo-sd15")
        prompt = await answer(pilot, "t", "ok, " + "x" * 40)
        error = prompt.query_one("#label-error", Static)
        await until(pilot, lambda: "longer than 32 characters" in str(error.render()))
        assert app.screen is prompt
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is screen)
        assert labels(home) == {}


async def test_each_model_shows_the_root_it_came_from(
    home: Home, studio: Any, demo_models_dir: Path
) -> None:
    # An A1111 install whose LoRA folder holds a demo LoRA under a name that says nothing.
    install = home.root.parent / "webui"
    (install / "models" / "Lora").mkdir(parents=True)
    shutil.copyfile(
        demo_models_dir / "demo-sd15-lora.safetensors",
        install / "models" / "Lora" / "portrait-helper.safetensors",
    )
    config = home.root / "config.toml"
    config.write_text(config.read_text() + f'a1111_roots = ["{install}"]\n')
    data = DataDir(home.root)
    store = Store(data.db_path)
    scan(store, data, load_config(data))
    store.dispose()
    app = studio()
    async with app.run_test(size=(160, 45)) as pilot:
        screen = await models_screen(app, pilot)
        await until(pilot, lambda: any(m.name == "portrait-helper" for m in screen.models))
        table = screen.query_one(DataTable)
        root = COLUMNS.index("root")
        assert str(table.get_row("portrait-helper")[root]) == "Lora"
        assert str(table.get_row("demo-sd15")[root]) == demo_models_dir.name
        # The keys, not the folder, put it with SD 1.5.
        assert "portrait-helper" in [
            m.name for g in screen.groups if g.title == "SD 1.5" for m in g.models
        ]
        highlight(screen, "portrait-helper")
        await until(pilot, lambda: "portrait-helper" in details(screen))
        shown = facts(screen)
        assert shown["root"] == str(install / "models" / "Lora")
        # Wrapped lines are joined without their break, which may fall at the space.
        assert shown["from"].replace(" ", "") == f"{install}:models/Lora".replace(" ", "")
        highlight(screen, "demo-sd15")
        await until(pilot, lambda: facts(screen).get("root") == str(demo_models_dir))
        assert "from" not in facts(screen)  # a model_roots folder needs no more words


async def test_a_model_registered_while_the_screen_is_open_shows_up_by_itself(
    home: Home, studio: Any
) -> None:
    app = studio()
    async with app.run_test(size=SIZE) as pilot:
        screen = await models_screen(app, pilot)
        store = Store(DataDir(home.root).db_path)
        with store.write() as s:
            s.add(
                Model(
                    name="late-upscaler",
                    kind="upscaler",
                    arch="esrgan",
                    format="safetensors",
                    path=str(home.root / "late.safetensors"),
                )
            )
        store.dispose()
        await until(pilot, lambda: any(m.name == "late-upscaler" for m in screen.models), 10)
        upscalers = next(g for g in screen.groups if g.title == "Upscalers")
        assert [m.name for m in upscalers.models] == ["demo-esrgan-x4", "late-upscaler"]
