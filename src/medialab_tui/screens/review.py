"""The review view: pick which outputs of a run's stage go on to its next stage.

A run whose stage has `review = true` stops in status `review`; this screen
shows that stage's outputs as thumbnails (or, for enhanced prompts, their text),
lets the prompt each passes on be edited, and approves all of them, or the ones
selected, with `StudioClient.approve`.

A card has one line for its prompt; variants of one prompt often differ only at
the end, so when the cards' lines would read alike, the start they all share is
left out ("…") and each card shows where its prompt differs.
"""

from __future__ import annotations

import os

from PIL import Image as PILImage
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Vertical, VerticalScroll
from textual.widgets import Static

from medialab_tui.client import ArtifactView
from medialab_tui.errors import MedialabError
from medialab_tui.screens.builder_form import TextPrompt
from medialab_tui.screens.common import StudioScreen
from medialab_tui.screens.thumbs import image_widget, load_image
from medialab_tui.text import visible, visible_lines

CARD_WIDTH = 26  # cells, border included; the grid fits as many columns as the width allows
THUMB_SIDE = 192  # pixels kept in memory per thumbnail
PROMPT_WIDTH = CARD_WIDTH - 4  # cells of a card's prompt line (border and padding off)


def distinct_parts(prompts: list[str], width: int = PROMPT_WIDTH) -> list[str]:
    """The prompts as lines of `width` cells that tell them apart: a prompt whose first
    `width` characters are another's too loses the words it shares with that one ("…"),
    but the last of them.

    Prompts that are the same stay whole: the seed tells those cards apart.
    """
    different = set(prompts)

    def part(prompt: str) -> str:
        alike = [
            other for other in different if other != prompt and other[:width] == prompt[:width]
        ]
        if not alike:
            return prompt
        shared = max((os.path.commonprefix([prompt, other]) for other in alike), key=len)
        # Cut at the start of a word, keeping the last shared word to read the rest by.
        last = shared.rfind(" ")
        cut = shared.rfind(" ", 0, last) + 1 if last > 0 else 0
        rest = prompt[(cut or last + 1 or len(shared)) :].strip()
        return "…" + rest if rest else prompt

    return [part(prompt) for prompt in prompts]


class OutputCard(Vertical):
    """One output: its thumbnail, id and seed, and prompt; marked when under the cursor
    (`-cursor`) or selected (`-selected`)."""

    DEFAULT_CSS = f"""
    OutputCard {{ width: {CARD_WIDTH}; height: 12; border: round $panel-lighten-2;
                  padding: 0 1; }}
    OutputCard.-cursor {{ border: heavy $accent; }}
    OutputCard.-selected {{ background: $accent 25%; }}
    OutputCard .thumb {{ width: auto; height: 8; }}
    OutputCard .no-image {{ height: 8; color: $text-muted; content-align: center middle; }}
    OutputCard .text-body {{ height: 8; }}
    OutputCard .caption {{ height: 1; text-wrap: nowrap; text-overflow: ellipsis; }}
    OutputCard .prompt {{ height: 1; color: $text-muted; text-wrap: nowrap;
                          text-overflow: ellipsis; }}
    """

    def __init__(
        self,
        artifact: ArtifactView,
        image: PILImage.Image | None,
        graphics: str,
        shown_prompt: str | None = None,
    ) -> None:
        super().__init__()
        self.artifact = artifact
        self.image = image
        self.graphics = graphics
        self.edited: str | None = None  # the prompt typed in review, if any
        # The part of the prompt the card's line shows (see `distinct_parts`).
        self.shown_prompt = artifact.prompt if shown_prompt is None else shown_prompt

    @property
    def prompt(self) -> str:
        return self.edited if self.edited is not None else self.artifact.prompt

    def compose(self) -> ComposeResult:
        if self.artifact.kind == "text":
            yield Static(visible_lines(self.artifact.prompt), classes="text-body", markup=False)
        elif self.image is None:
            yield Static("no image", classes="no-image")
        else:
            yield image_widget(self.graphics, self.image, classes="thumb")
        yield Static("", classes="caption")
        yield Static(visible(self.shown_prompt) or " ", classes="prompt", markup=False)

    def on_mount(self) -> None:
        self.show_caption()

    @property
    def selected(self) -> bool:
        return self.has_class("-selected")

    def toggle(self) -> None:
        self.toggle_class("-selected")
        self.show_caption()

    def show_caption(self) -> None:
        a = self.artifact
        mark = "[b]✓[/b] " if self.selected else ""
        seed = f" · seed {a.seed}" if a.seed is not None else ""
        edited = " · [i]edited[/i]" if self.edited is not None else ""
        self.query_one(".caption", Static).update(f"{mark}[b]{a.ref}[/b]{seed}{edited}")

    def edit(self, prompt: str) -> None:
        """Pass `prompt` on instead of the output's own."""
        self.edited = None if prompt == self.artifact.prompt else prompt
        self.show_prompt(prompt)
        if self.artifact.kind == "text":
            self.query_one(".text-body", Static).update(visible_lines(self.prompt))
        self.show_caption()

    def show_prompt(self, shown: str) -> None:
        """Show `shown`, the part of the prompt that tells this card from the others."""
        self.shown_prompt = shown
        self.query_one(".prompt", Static).update(visible(shown) or " ")


class ReviewScreen(StudioScreen):
    """The outputs of a run waiting in review; approve all of them or a selection."""

    TITLE_TEXT = "Review"
    # Fixed-width columns keep the cards packed to the left instead of spread out.
    DEFAULT_CSS = f"""
    ReviewScreen #review-scroll {{ height: 1fr; }}
    ReviewScreen #review-grid {{ height: auto; grid-size: 3; grid-columns: {CARD_WIDTH};
                                 grid-rows: 12; grid-gutter: 0 1; padding: 0 1; }}
    """
    BINDINGS = [
        Binding(
            "left",
            "move(-1, 0)",
            "Left",
            id="review.left",
            show=False,
            tooltip="Move to the output on the left",
        ),
        Binding(
            "right",
            "move(1, 0)",
            "Right",
            id="review.right",
            show=False,
            tooltip="Move to the output on the right",
        ),
        Binding(
            "up",
            "move(0, -1)",
            "Up",
            id="review.up",
            show=False,
            tooltip="Move to the output above",
        ),
        Binding(
            "down",
            "move(0, 1)",
            "Down",
            id="review.down",
            show=False,
            tooltip="Move to the output below",
        ),
        Binding(
            "space",
            "pick",
            "Select",
            id="review.select",
            tooltip="Select or unselect the highlighted output",
        ),
        Binding(
            "e",
            "edit",
            "Edit prompt",
            id="review.edit",
            tooltip="Edit the prompt the highlighted output passes on to the next stage",
        ),
        Binding(
            "a",
            "approve",
            "Approve",
            id="review.approve",
            tooltip="Continue the run with the selected outputs, or all when none is selected",
        ),
        Binding(
            "escape",
            "back",
            "Back",
            id="review.back",
            tooltip="Back to the queue without approving; the run keeps waiting",
        ),
    ]

    def __init__(self, run_id: int, name: str = "") -> None:
        super().__init__()
        self.run_id = run_id
        self.run_name = name
        self.cursor = 0

    def compose_body(self) -> ComposeResult:
        yield Static(
            visible(f"Review r{self.run_id} {self.run_name}"), classes="panel-title", markup=False
        )
        yield Static("Loading the outputs…", id="review-hint", classes="hint")
        with VerticalScroll(id="review-scroll", can_focus=False):
            yield Grid(id="review-grid")

    def set_up(self) -> None:
        self.load()

    @property
    def cards(self) -> list[OutputCard]:
        return list(self.query(OutputCard))

    @work(thread=True, exclusive=True, group="review-load")
    def load(self) -> None:
        outputs = self.client.review_outputs(self.run_id)
        images = [load_image(a.path, THUMB_SIDE) for a in outputs]
        self.from_worker(self.show, outputs, images)

    def show(self, outputs: list[ArtifactView], images: list[PILImage.Image | None]) -> None:
        grid = self.query_one("#review-grid", Grid)
        graphics = self.studio.config.graphics
        shown = distinct_parts([a.prompt for a in outputs])
        grid.mount_all(
            OutputCard(a, im, graphics, part)
            for a, im, part in zip(outputs, images, shown, strict=True)
        )
        self.fit_columns()
        # The cards are laid out on the next refresh; only then can the cursor scroll to one.
        self.call_after_refresh(self.move_cursor, 0)
        self.call_after_refresh(self.show_hint)

    def on_resize(self) -> None:
        self.fit_columns()

    def columns(self) -> int:
        width = self.query_one("#review-scroll").content_size.width
        return max(1, width // (CARD_WIDTH + 1))

    def fit_columns(self) -> None:
        self.query_one("#review-grid", Grid).styles.grid_size_columns = self.columns()

    def show_hint(self) -> None:
        cards = self.cards
        picked = sum(card.selected for card in cards)
        hint = self.query_one("#review-hint", Static)
        if not cards:
            hint.update("This run's current stage has no outputs to review.")
        elif picked:
            hint.update(f"{picked} of {len(cards)} selected: [b]a[/b] continues with them.")
        else:
            hint.update(
                f"{len(cards)} outputs · [b]space[/b] selects · [b]a[/b] continues with the "
                "selection (all when none is selected)"
            )

    def move_cursor(self, index: int) -> None:
        cards = self.cards
        if not cards:
            return
        self.cursor = min(max(index, 0), len(cards) - 1)
        for i, card in enumerate(cards):
            card.set_class(i == self.cursor, "-cursor")
        cards[self.cursor].scroll_visible(animate=False)

    def action_move(self, dx: int, dy: int) -> None:
        self.move_cursor(self.cursor + dx + dy * self.columns())

    def action_pick(self) -> None:
        cards = self.cards
        if cards:
            cards[self.cursor].toggle()
            self.show_hint()

    def action_edit(self) -> None:
        cards = self.cards
        if not cards:
            return
        card = cards[self.cursor]

        def edited(text: str | None) -> None:
            if text:
                card.edit(text)
                self.show_prompts()

        question = f"The prompt {card.artifact.ref} passes on to the next stage:"
        self.app.push_screen(TextPrompt(question, card.prompt, placeholder="a prompt"), edited)

    def show_prompts(self) -> None:
        """Each card's prompt line, told apart from the others' again (after an edit)."""
        cards = self.cards
        for card, shown in zip(cards, distinct_parts([c.prompt for c in cards]), strict=True):
            card.show_prompt(shown)

    def action_approve(self) -> None:
        cards = self.cards
        refs = [card.artifact.ref for card in cards if card.selected]
        going = [card for card in cards if card.selected] or cards
        edits = {card.artifact.ref: card.edited for card in going if card.edited is not None}
        self.approve(refs or None, edits)

    @work(thread=True, exclusive=True, group="review-approve")
    def approve(self, refs: list[str] | None, edits: dict[str, str] | None = None) -> None:
        try:
            sentence = self.client.approve(f"r{self.run_id}", refs, edits)
        except MedialabError as exc:
            self.app.call_from_thread(self.notify, str(exc), severity="error")
            return
        self.app.call_from_thread(self.notify, sentence)
        self.app.call_from_thread(self.dismiss)

    def action_back(self) -> None:
        self.dismiss()
