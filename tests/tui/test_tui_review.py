"""The review view on a run stopped for review by the real engine, driven by keys."""

from __future__ import annotations

import json
from typing import Any

from textual.pilot import Pilot
from textual.widgets import Input, Static

from conftest import Home, run_status, txt2img_toml, until
from medialab_tui.screens.builder_form import TextPrompt
from medialab_tui.screens.review import OutputCard, ReviewScreen, distinct_parts

SIZE = (100, 30)
# The stage the reviewed outputs go on to.
NEXT_STAGE = '\n[[stages]]\ntype = "upscale"\nmodel = "lanczos"\n'
LONG_START = "a lighthouse on a cliff at dusk, oil painting, dramatic light, style "


def run_in_review(home: Home, prompts: list[str]) -> int:
    """A run whose first stage made one output per prompt and now waits in review."""
    text = txt2img_toml(
        prompts=prompts, seeds=[7], mode="checkpoint", review=True, extra=NEXT_STAGE
    )
    proc = home.cli("run", str(home.pipeline("review", text)), "--json", check=True)
    run_id = int(json.loads(proc.stdout.splitlines()[-1])["run_id"].removeprefix("r"))
    assert run_status(home, run_id) == "review"
    return run_id


async def open_review(pilot: Pilot[Any], run_id: int, count: int) -> ReviewScreen:
    """The review view of `run_id` once its `count` cards are laid out."""
    app = pilot.app
    await app.push_screen(ReviewScreen(run_id, "review"))
    review = await until(pilot, lambda: isinstance(app.screen, ReviewScreen) and app.screen)
    await until(pilot, lambda: len(review.cards) == count and review.cards[0].size.width > 0)
    await pilot.pause()
    return review


def prompt_line(card: OutputCard) -> str:
    """The card's prompt line as the terminal shows it."""
    return card.query_one(".prompt", Static).render_line(0).text.strip()


async def test_five_variants_of_one_prompt_show_five_different_cards(
    home: Home, studio: Any
) -> None:
    variants = ["one", "two", "three", "four", "five"]
    run_id = run_in_review(home, [LONG_START + v for v in variants])
    app = studio()
    async with app.run_test(size=SIZE) as pilot:
        review = await open_review(pilot, run_id, len(variants))
        await until(pilot, lambda: all(prompt_line(card) for card in review.cards))
        lines = {card.artifact.prompt: prompt_line(card) for card in review.cards}
        assert sorted(lines.values()) == sorted(f"…style {v}" for v in variants)

        # An edit that shares none of the start shows whole, and the others stay apart.
        card = review.cards[0]
        await pilot.press("e")
        asked = await until(pilot, lambda: isinstance(app.screen, TextPrompt) and app.screen)
        asked.query_one(Input).value = "a fox"
        await pilot.press("enter")
        await until(pilot, lambda: prompt_line(card) == "a fox")
        others = {prompt_line(c) for c in review.cards[1:]}
        assert len(others) == len(variants) - 1


def test_prompts_that_already_differ_on_a_card_stay_whole() -> None:
    assert distinct_parts(["a red fox", "a blue fox"]) == ["a red fox", "a blue fox"]
    same = LONG_START + "one"
    assert distinct_parts([same, same]) == [same, same]
    # Only the prompts that read alike on a card lose their shared start.
    shown = distinct_parts(["a fox", LONG_START + "x1", LONG_START + "x2"])
    assert shown == ["a fox", "…style x1", "…style x2"]
    assert distinct_parts([LONG_START, LONG_START + "x1"]) == ["…style", "…style x1"]


async def test_the_edit_field_opens_with_the_cursor_after_the_prompt(
    home: Home, studio: Any
) -> None:
    run_id = run_in_review(home, ["a red fox"])
    app = studio()
    async with app.run_test(size=SIZE) as pilot:
        review = await open_review(pilot, run_id, 1)
        await pilot.press("e")
        asked = await until(pilot, lambda: isinstance(app.screen, TextPrompt) and app.screen)
        field = asked.query_one(Input)
        await until(pilot, lambda: app.focused is field)
        assert field.selection.is_empty
        assert field.cursor_position == len("a red fox")
        await pilot.press(*", at dawn")
        assert field.value == "a red fox, at dawn"
        await pilot.press("enter")
        await until(pilot, lambda: app.screen is review)
        assert review.cards[0].edited == "a red fox, at dawn"
