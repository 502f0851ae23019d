"""The Builder screen on the real app and the real store, driven by keys."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from textual.errors import NoWidget
from textual.pilot import Pilot
from textual.widget import Widget
from textual.widgets import Checkbox, Input, OptionList, Static, TextArea

from conftest import EXAMPLES, Home, query, until
from medialab_tui.engine.pipeline import load_pipeline_file
from medialab_tui.errors import InputError
from medialab_tui.presets import Presets
from medialab_tui.screens.builder import BuilderScreen
from medialab_tui.screens.builder_form import PickScreen, TextPrompt, parse_seeds
from medialab_tui.screens.common import BuilderRequest
from medialab_tui.screens.dialogs import ConfirmScreen

SIZE = (120, 36)


async def builder(pilot: Pilot[Any]) -> BuilderScreen:
    """The screen of the builder mode, once the app has started on it."""
    app = pilot.app
    await until(
        pilot, lambda: app.current_mode == "builder" and isinstance(app.screen, BuilderScreen)
    )
    assert isinstance(app.screen, BuilderScreen)
    return app.screen


def estimate(screen: BuilderScreen) -> str:
    return str(screen.query_one("#estimate", Static).content)


def field(screen: BuilderScreen, name: str) -> Input:
    """An input of the selected stage's form."""
    assert screen.form is not None
    return screen.form.query_one(f"#field-{name}", Input)


def error_under(screen: BuilderScreen, name: str) -> str:
    assert screen.form is not None
    return str(screen.form.query_one(f"#error-{name}", Static).content)


def stage_prompts(screen: BuilderScreen) -> list[str]:
    stages = screen.query_one("#stages", OptionList)
    return [str(stages.get_option_at_index(i).prompt) for i in range(stages.option_count)]


async def type_into(pilot: Pilot[Any], widget: Input, text: str) -> None:
    """Clear a field and type `text` into it key by key."""
    widget.focus()
    widget.value = ""
    await pilot.press(*text)


def on_screen(widget: Widget, *, rows_only: bool = False) -> bool:
    """All of `widget` is drawn: inside the terminal, not scrolled out of its container
    (`rows_only`: all its rows, however wide it is)."""
    try:
        geometry = widget.screen.find_widget(widget)
    except NoWidget:
        return False
    region, shown = geometry.region, geometry.visible_region
    if rows_only:
        return bool(region.height) and (shown.y, shown.height) == (region.y, region.height)
    return bool(region.area) and widget.screen.region.contains_region(region) and shown == region


INPUTS = ("#in-prompts", "#in-negative", "#in-seeds", "#in-images")


async def add_stage(pilot: Pilot[Any], stage_type: str) -> None:
    """Add a stage of `stage_type` after the selected one, from the stage list."""
    app = pilot.app
    app.screen.query_one("#stages", OptionList).focus()
    await pilot.press("a")
    picker = await until(pilot, lambda: isinstance(app.screen, PickScreen) and app.screen)
    offered = [o.id for o in picker.query_one(OptionList).options]
    await pilot.press(*["down"] * offered.index(stage_type), "enter")
    await until(pilot, lambda: not isinstance(app.screen, PickScreen))


async def answer(pilot: Pilot[Any], key: str) -> str:
    """Answer the confirm question that is up with `key`; its question is returned."""
    app = pilot.app
    asked = await until(pilot, lambda: isinstance(app.screen, ConfirmScreen) and app.screen)
    question = asked.question
    await pilot.press(key)
    await until(pilot, lambda: app.screen is not asked)
    return question


def runs(home: Home) -> int:
    return int(query(home, "SELECT COUNT(*) FROM run")[0][0])


def blocked(app: Any, message: str) -> bool:
    """A "Run blocked" notification with `message` is up: the run was refused at once."""
    return any(n.title == "Run blocked" and message in n.message for n in app._notifications)


async def test_demo_pipeline_shows_its_stages_and_estimate(studio: Any) -> None:
    app = studio(pipeline=EXAMPLES / "demo.toml")
    async with app.run_test(size=SIZE) as pilot:
        screen = await builder(pilot)
        text = await until(pilot, lambda: "Total" in estimate(screen) and estimate(screen))
        assert [p.split()[:2] for p in stage_prompts(screen)] == [
            ["1", "txt2img"],
            ["2", "upscale"],
        ]
        assert text.count("4 jobs → 4 outputs") == 2
        assert "Total 8 jobs" in text.replace("[b]", "").replace("[/b]", "")
        assert screen.query_one("#pipe-name", Input).value == "demo"
        prompts = screen.query_one("#in-prompts", TextArea).text.splitlines()
        assert prompts == ["woman in red dress", "knight in silver armour"]
        assert screen.query_one("#in-seeds", Input).value == "1, 2"
        assert field(screen, "steps").value == "8"


async def test_invalid_fields_show_their_message_and_block_the_run(studio: Any, home: Home) -> None:
    app = studio()
    async with app.run_test(size=SIZE) as pilot:
        screen = await builder(pilot)
        await until(pilot, lambda: "Total" in estimate(screen))
        await type_into(pilot, field(screen, "steps"), "0")
        # The message comes from the form's change event, a message hop or two later.
        await until(pilot, lambda: error_under(screen, "steps") == "must be at least 1 (got 0)")
        assert "key 'steps' must be at least 1" in estimate(screen)
        await pilot.press("ctrl+r")
        await until(pilot, lambda: blocked(app, "must be at least 1"))
        assert runs(home) == 0
        assert app.current_mode == "builder"

        await type_into(pilot, field(screen, "steps"), "8")
        await until(pilot, lambda: error_under(screen, "steps") == "")
        await type_into(pilot, field(screen, "width"), "65")
        await until(
            pilot, lambda: error_under(screen, "width") == "must be a multiple of 8 (got 65)"
        )
        await pilot.press("ctrl+r")
        await until(pilot, lambda: blocked(app, "must be a multiple of 8"))
        assert runs(home) == 0
        await type_into(pilot, screen.query_one("#in-seeds", Input), "1, two")
        assert "write seeds as" in str(screen.query_one("#in-seeds-error", Static).content)
        # Only the first message of the pipeline is shown: fix the others first.
        await type_into(pilot, field(screen, "width"), "64")
        await type_into(pilot, screen.query_one("#in-seeds", Input), "1")
        await type_into(pilot, screen.query_one("#pipe-name", Input), "")
        name_error = screen.query_one("#pipe-name-error", Static)
        await until(pilot, lambda: "must not be empty" in str(name_error.content))
        assert runs(home) == 0


async def test_tab_walks_from_the_stage_list_through_the_form(studio: Any) -> None:
    app = studio(pipeline=EXAMPLES / "demo.toml")
    async with app.run_test(size=SIZE) as pilot:
        screen = await builder(pilot)
        await until(pilot, lambda: "Total" in estimate(screen))
        # The form's fields are mounted (tab walks what is there when it is pressed).
        await until(pilot, lambda: screen.form is not None and screen.form.query("#field-cfg"))
        assert app.focused is screen.query_one("#stages")
        seen = []
        for _ in range(24):
            before = app.focused
            await pilot.press("tab")
            await until(pilot, lambda before=before: app.focused is not before)
            seen.append(app.focused.id if app.focused else None)
        assert seen[:3] == ["field-model", "field-steps", "field-cfg"]
        assert seen.index("in-prompts") < seen.index("in-seeds") < seen.index("in-images")


async def test_run_queues_the_pipeline_with_its_jobs(studio: Any, home: Home) -> None:
    app = studio(pipeline=EXAMPLES / "demo.toml")
    async with app.run_test(size=SIZE) as pilot:
        screen = await builder(pilot)
        await until(pilot, lambda: "Total" in estimate(screen))
        await pilot.press("ctrl+r")
        await until(pilot, lambda: runs(home) == 1)
        await until(pilot, lambda: app.current_mode == "queue")
        ((run_id, name, stages),) = query(home, "SELECT id, name, stage_count FROM run")
        assert (name, stages) == ("demo", 2)
        jobs = query(home, "SELECT stage, status FROM job WHERE run_id=?", run_id)
        assert jobs == [("txt2img", "queued")] * 4


async def test_seed_syntax_drives_the_job_count(studio: Any) -> None:
    app = studio()
    async with app.run_test(size=SIZE) as pilot:
        screen = await builder(pilot)
        await until(pilot, lambda: "Total" in estimate(screen))
        await type_into(pilot, screen.query_one("#in-seeds", Input), "seed 7 count 3")
        await until(pilot, lambda: "3 jobs → 3 outputs" in estimate(screen))
        await type_into(pilot, screen.query_one("#in-seeds", Input), "1, 2, 3, 4, 5")
        await until(pilot, lambda: "5 jobs → 5 outputs" in estimate(screen))


def test_seed_syntax() -> None:
    assert parse_seeds("1, 2, 3") == {"seeds": [1, 2, 3]}
    assert parse_seeds("seed 7 count 4") == {"seed": 7, "count": 4}
    assert parse_seeds("count 2") == {"count": 2}
    assert parse_seeds("  ") == {}
    for bad in ("seed", "seed seven", "seed 1 seed 2", "colour 3"):
        with pytest.raises(InputError):
            parse_seeds(bad)


async def test_stages_are_added_moved_and_removed(studio: Any) -> None:
    app = studio()
    async with app.run_test(size=SIZE) as pilot:
        screen = await builder(pilot)
        await until(pilot, lambda: "Total" in estimate(screen))
        screen.query_one("#stages", OptionList).focus()
        await pilot.press("a")
        picker = await until(pilot, lambda: isinstance(app.screen, PickScreen) and app.screen)
        offered = [o.id for o in picker.query_one(OptionList).options]
        # After txt2img (images), the stages that take images come first.
        assert offered[:5] == ["img2img", "refine", "detail", "upscale", "blend"]
        await pilot.press(*["down"] * offered.index("upscale"), "enter")
        await until(pilot, lambda: len(screen.document["stages"]) == 2)
        assert [s["type"] for s in screen.document["stages"]] == ["txt2img", "upscale"]
        assert screen.selected == 1
        assert field(screen, "scale").placeholder == "default 2.0"
        await until(pilot, lambda: "2 upscale" in estimate(screen))

        await pilot.press("left_square_bracket")
        assert [s["type"] for s in screen.document["stages"]] == ["upscale", "txt2img"]
        assert screen.selected == 0
        assert "must list at least one image for stage 1 (upscale)" in estimate(screen)
        assert "✗" in stage_prompts(screen)[0]

        await pilot.press("right_square_bracket")
        assert [s["type"] for s in screen.document["stages"]] == ["txt2img", "upscale"]
        await pilot.press("x")
        assert [s["type"] for s in screen.document["stages"]] == ["txt2img"]
        await pilot.press("x")  # the last stage stays
        assert len(screen.document["stages"]) == 1


async def test_saving_a_preset_twice_makes_two_versions(studio: Any, home: Home) -> None:
    app = studio(pipeline=EXAMPLES / "demo.toml")
    async with app.run_test(size=SIZE) as pilot:
        screen = await builder(pilot)
        await until(pilot, lambda: "Total" in estimate(screen))
        screen.query_one("#stages", OptionList).focus()
        folder = home.root / "presets" / "demo"
        await pilot.press("P")
        await until(pilot, lambda: (folder / "v1.toml").exists())
        await pilot.press("P")
        await until(pilot, lambda: (folder / "v2.toml").exists())
        assert sorted(p.name for p in folder.iterdir()) == ["v1.toml", "v2.toml"]

        await type_into(pilot, screen.query_one("#pipe-name", Input), "changed")
        screen.query_one("#stages", OptionList).focus()
        await pilot.press("L")
        picker = await until(pilot, lambda: isinstance(app.screen, PickScreen) and app.screen)
        labels = [str(o.prompt) for o in picker.query_one(OptionList).options]
        assert labels == ["demo  v2", "demo  v1"]
        await pilot.press("enter")
        # The name was edited after the last save: loading asks before dropping that.
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await until(pilot, lambda: screen.query_one("#pipe-name", Input).value == "demo")


def test_presets_keep_every_version_newest_first(tmp_path: Path) -> None:
    document = load_pipeline_file(EXAMPLES / "demo.toml").to_dict()
    presets = Presets(tmp_path)
    first = presets.save("my demo", document)
    second = presets.save("my demo", document)
    presets.save("another", document)
    assert (first.path, second.path) == (tmp_path / "my-demo/v1.toml", tmp_path / "my-demo/v2.toml")
    assert [v.label for v in presets.versions()] == ["another  v1", "my-demo  v2", "my-demo  v1"]
    assert [v.number for v in presets.versions("my demo")] == [2, 1]
    assert load_pipeline_file(first.path).to_dict() == document
    assert not list(tmp_path.rglob("*.tmp"))


def test_two_builders_saving_one_preset_at_once_lose_no_version(tmp_path: Path) -> None:
    document = load_pipeline_file(EXAMPLES / "demo.toml").to_dict()
    saved: list[int] = []

    def builder_saves() -> None:
        presets = Presets(tmp_path)
        saved.extend(presets.save("demo", document).number for _ in range(10))

    builders = [threading.Thread(target=builder_saves) for _ in range(2)]
    for thread in builders:
        thread.start()
    for thread in builders:
        thread.join()
    assert sorted(saved) == list(range(1, 21))
    assert len(Presets(tmp_path).versions("demo")) == 20


async def test_save_writes_toml_and_asks_before_overwriting(studio: Any, tmp_path: Path) -> None:
    target = tmp_path / "saved.toml"
    app = studio()
    async with app.run_test(size=SIZE) as pilot:
        screen = await builder(pilot)
        await until(pilot, lambda: "Total" in estimate(screen))
        for answer in (None, "n", "y"):
            await pilot.press("ctrl+s")
            prompt = await until(pilot, lambda: isinstance(app.screen, TextPrompt) and app.screen)
            prompt.query_one(Input).value = str(target)
            await pilot.press("enter")
            if answer is None:
                await until(pilot, target.exists)
                target.write_text("# edited elsewhere\n")
                continue
            await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            await pilot.press(answer)
            if answer == "n":
                await until(pilot, lambda: app.screen is screen)  # declined: nothing written
                assert target.read_text() == "# edited elsewhere\n"
        await until(pilot, lambda: target.read_text().startswith('name = "untitled"'))
        assert 'type = "txt2img"' in target.read_text()
        assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


async def test_requests_from_other_screens_land_in_the_builder(studio: Any) -> None:
    app = studio()
    async with app.run_test(size=SIZE) as pilot:
        screen = await builder(pilot)
        await until(pilot, lambda: "Total" in estimate(screen))
        await app.switch_mode("models")
        app.screen.post_message(BuilderRequest(model="demo-sdxl", images=("a.png",)))
        await until(pilot, lambda: screen.document["stages"][0]["model"] == "demo-sdxl")
        assert app.screen is screen
        assert field(screen, "model").value == "demo-sdxl"
        assert screen.query_one("#in-images", TextArea).text == "a.png"
        await until(pilot, lambda: "takes prompts, not images" in estimate(screen))


async def test_a_request_sent_as_the_app_starts_waits_for_the_builder(studio: Any) -> None:
    """The builder loads its first pipeline in a worker; a request that comes before
    that is taken once the pipeline is shown, not lost under it."""
    app = studio()
    async with app.run_test(size=SIZE) as pilot:
        app.post_message(BuilderRequest(images=("early.png",)))
        screen = await builder(pilot)
        images = screen.query_one("#in-images", TextArea)
        await until(pilot, lambda: screen.ready and images.text == "early.png")
        # Taken, not only shown: the pipeline holds the image and says what is wrong
        # with it; and the app is quiet before it closes.
        await until(pilot, lambda: "takes prompts, not images" in estimate(screen))
        assert screen.document["inputs"]["images"] == ["early.png"]
        await until(pilot, lambda: settled(app))


def settled(app: Any) -> bool:
    """Every screen is built and mounted and no worker is on its way: closing the app
    now races nothing."""
    for mode in app.MODES:
        try:
            stack = app.get_screen_stack(mode)
        except KeyError:
            return False
        if not stack or not stack[0].is_mounted:
            return False
    return all(worker.is_finished for worker in app.workers)


async def test_a_pipeline_loaded_as_the_app_closes_is_not_shown(studio: Any) -> None:
    """The first pipeline comes back from a worker; if that is while the app closes,
    it is dropped, not mounted into a screen whose widgets are being taken down."""
    app = studio()
    list_models = app.client.models

    def models_once_the_app_closes() -> Any:
        deadline = time.monotonic() + 30
        while app.is_running and time.monotonic() < deadline:
            time.sleep(0.01)
        return list_models()

    app.client.models = models_once_the_app_closes
    shown: list[Any] = []
    async with app.run_test(size=SIZE) as pilot:
        screen = await builder(pilot)
        (loading,) = [w for w in app.workers if w.group == "builder-load"]
        set_document = screen.set_document

        def showing(*args: Any) -> None:
            shown.append(args)
            set_document(*args)

        screen.set_document = showing  # type: ignore[method-assign]
    deadline = time.monotonic() + 30
    while not loading.is_finished and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert loading.is_finished
    assert shown == []
    assert not screen.ready


async def test_lora_and_controlnet_fields_edit_and_check_like_the_file(
    studio: Any, home: Home
) -> None:
    """The img2img example in the builder: LoRA and ControlNet show as text, a bad
    weight or an unknown LoRA is refused under its field, and the run goes in."""
    app = studio(pipeline=EXAMPLES / "controlnet-lora.toml")
    async with app.run_test(size=SIZE) as pilot:
        screen = await builder(pilot)
        await until(pilot, lambda: "1 jobs → 2 outputs" in estimate(screen))
        assert field(screen, "loras").value == "demo-sd15-lora:0.8"
        assert field(screen, "control").value.startswith('{model = "demo-sd15-controlnet"')
        await type_into(pilot, field(screen, "loras"), "demo-sd15-lora:9")
        await until(pilot, lambda: "weight must be at most 4" in error_under(screen, "loras"))
        await type_into(pilot, field(screen, "loras"), "no-such-lora")
        await until(pilot, lambda: "no-such-lora" in error_under(screen, "loras"))
        await type_into(pilot, field(screen, "loras"), "demo-sd15-lora:0.5")
        await until(pilot, lambda: error_under(screen, "loras") == "")
        await pilot.press("ctrl+r")
        await until(pilot, lambda: runs(home) == 1)
    stages = json.loads(query(home, "SELECT pipeline FROM run")[0][0])["stages"]
    assert stages[0]["loras"] == [{"model": "demo-sd15-lora", "weight": 0.5}]
    # The run keeps its own copy of the control image.
    assert stages[0]["control"]["image"].startswith(str(home.root / "inputs"))


async def test_i_opens_the_gallery_to_pick_input_images(studio: Any) -> None:
    app = studio()
    async with app.run_test(size=SIZE) as pilot:
        screen = await builder(pilot)
        screen.query_one("#stages", OptionList).focus()
        await pilot.press("i")
        await until(pilot, lambda: app.current_mode == "gallery")
        assert any("Press b on an image" in n.message for n in app._notifications)


@pytest.mark.parametrize("size", [(80, 24), (100, 30), (160, 45)])
async def test_the_inputs_stay_on_screen_beside_a_long_stage_form(
    studio: Any, size: tuple[int, int]
) -> None:
    """txt2img's form is longer than the screen; prompts, negative, seeds and images
    are on screen all the same, and stay there while the form scrolls."""
    app = studio(pipeline=EXAMPLES / "demo.toml")
    async with app.run_test(size=size) as pilot:
        screen = await builder(pilot)
        await until(pilot, lambda: "Total" in estimate(screen))
        widgets = [screen.query_one(selector) for selector in INPUTS]
        await until(pilot, lambda: all(on_screen(w) for w in widgets))
        assert screen.form is not None
        last = screen.form.query_one("#field-review", Checkbox)
        last.focus()
        await until(pilot, lambda: on_screen(last, rows_only=True))
        assert all(on_screen(w) for w in widgets)
        # `p` goes from the stage list to the prompts.
        screen.query_one("#stages", OptionList).focus()
        await pilot.press("p")
        prompts = screen.query_one("#in-prompts", TextArea)
        assert app.focused is prompts
        assert prompts.cursor_location == prompts.document.end
        # The key's last stop (the app's bindings) lands before the app is closed:
        # under load it could arrive once the screens were gone.
        await pilot.pause()


async def test_an_added_stage_shows_its_form_from_its_title(studio: Any) -> None:
    app = studio()
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await builder(pilot)
        await until(pilot, lambda: "Total" in estimate(screen))
        assert screen.form is not None
        last = screen.form.query_one("#field-review", Checkbox)
        last.focus()
        title = screen.query_one("#stage-title")
        await until(pilot, lambda: on_screen(last, rows_only=True) and not on_screen(title))
        await add_stage(pilot, "img2img")
        await until(pilot, lambda: screen.form is not None and screen.form.stage_type == "img2img")
        await until(pilot, lambda: on_screen(title))
        assert "Stage 2 · img2img" in str(title.render())


async def test_opening_a_file_over_unsaved_edits_asks_first(studio: Any, tmp_path: Path) -> None:
    app = studio()
    demo = str(EXAMPLES / "demo.toml")

    async def open_file(path: str) -> None:
        await pilot.press("ctrl+o")
        asked = await until(pilot, lambda: isinstance(app.screen, TextPrompt) and app.screen)
        asked.query_one(Input).value = path
        await pilot.press("enter")

    async with app.run_test(size=SIZE) as pilot:
        screen = await builder(pilot)
        name = screen.query_one("#pipe-name", Input)
        await until(pilot, lambda: "Total" in estimate(screen))
        assert not screen.unsaved  # a fresh builder holds nothing to lose
        await open_file(demo)
        await until(pilot, lambda: name.value == "demo")
        assert not isinstance(app.screen, ConfirmScreen)
        assert not screen.unsaved

        await type_into(pilot, name, "mine")
        await until(pilot, lambda: screen.unsaved)
        screen.set_focus(None)
        await open_file(demo)
        question = await answer(pilot, "n")
        assert "'mine' has unsaved edits" in question
        assert name.value == "mine"
        await open_file(demo)
        await answer(pilot, "enter")
        await until(pilot, lambda: name.value == "demo")
        assert not screen.unsaved

        # A save keeps the edits: opening another file afterwards does not ask.
        await type_into(pilot, name, "saved")
        screen.set_focus(None)
        await pilot.press("ctrl+s")
        asked = await until(pilot, lambda: isinstance(app.screen, TextPrompt) and app.screen)
        asked.query_one(Input).value = str(tmp_path / "saved.toml")
        await pilot.press("enter")
        await until(pilot, lambda: not screen.unsaved)
        await open_file(demo)
        await until(pilot, lambda: name.value == "demo")
        assert not isinstance(app.screen, ConfirmScreen)


async def test_settings_from_another_screen_replace_the_pipeline(studio: Any) -> None:
    """A request with a pipeline's settings loads them like a file: at once into a
    fresh builder, after asking over unsaved edits; its images land on top."""
    settings = load_pipeline_file(EXAMPLES / "demo.toml").to_dict()
    app = studio()
    async with app.run_test(size=SIZE) as pilot:
        screen = await builder(pilot)
        await until(pilot, lambda: "Total" in estimate(screen))
        await app.switch_mode("gallery")
        app.screen.post_message(BuilderRequest(settings=settings))
        await until(pilot, lambda: screen.document["name"] == "demo")
        assert app.screen is screen
        assert [s["type"] for s in screen.document["stages"]] == ["txt2img", "upscale"]
        assert screen.query_one("#in-seeds", Input).value == "1, 2"
        assert not screen.unsaved

        await type_into(pilot, screen.query_one("#in-negative", Input), "grainy")
        await until(pilot, lambda: screen.unsaved)
        other = {**settings, "name": "other"}
        await app.switch_mode("gallery")
        app.screen.post_message(BuilderRequest(settings=other, images=("x.png",)))
        await answer(pilot, "escape")
        assert screen.document["name"] == "demo"
        assert screen.document["inputs"]["negative"] == "grainy"
        assert "images" not in screen.document["inputs"]

        app.screen.post_message(BuilderRequest(settings=other, images=("x.png",)))
        await answer(pilot, "y")
        await until(pilot, lambda: screen.document["name"] == "other")
        assert screen.document["inputs"]["negative"] == "blurry"
        assert screen.document["inputs"]["images"] == ["x.png"]


async def test_removing_a_stage_asks_only_when_its_values_were_edited(studio: Any) -> None:
    app = studio()
    async with app.run_test(size=SIZE) as pilot:
        screen = await builder(pilot)
        await until(pilot, lambda: "Total" in estimate(screen))
        await add_stage(pilot, "upscale")
        await until(pilot, lambda: "2 upscale" in estimate(screen))
        await pilot.press("x")  # untouched since added: gone without a question
        assert [s["type"] for s in screen.document["stages"]] == ["txt2img"]
        assert not isinstance(app.screen, ConfirmScreen)

        await add_stage(pilot, "upscale")
        await type_into(pilot, field(screen, "scale"), "4")
        await until(pilot, lambda: screen.document["stages"][1].get("scale") == 4.0)
        screen.query_one("#stages", OptionList).focus()
        await pilot.press("x")
        question = await answer(pilot, "n")
        assert question == "Stage 2 (upscale) has edited values. Remove it?"
        assert [s["type"] for s in screen.document["stages"]] == ["txt2img", "upscale"]
        await pilot.press("x")
        await answer(pilot, "y")
        assert [s["type"] for s in screen.document["stages"]] == ["txt2img"]
