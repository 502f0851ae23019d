"""Small modal questions: confirm a delete or dropping edits, decide what happens on quit."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from medialab_tui.text import visible_lines

DIALOG_CSS = """
{name} {{ align: center middle; }}
{name} > Vertical {{ width: 64; height: auto; border: round $accent; background: $surface;
                    padding: 1 2; }}
{name} Horizontal {{ height: auto; margin-top: 1; }}
{name} Button {{ margin-right: 1; }}
"""


class ConfirmScreen(ModalScreen[bool]):
    """Yes/no; `y` or enter confirms, `n` or escape declines (keeps things as they are)."""

    DEFAULT_CSS = DIALOG_CSS.format(name="ConfirmScreen")
    BINDINGS = [
        Binding(
            "y,enter",
            "answer(True)",
            "Yes",
            id="confirm.yes",
            tooltip="Do what the question asks",
        ),
        Binding(
            "n,escape",
            "answer(False)",
            "No",
            id="confirm.no",
            tooltip="Leave things as they are",
        ),
    ]

    def __init__(self, question: str, yes: str = "Yes", no: str = "No") -> None:
        super().__init__()
        self.question = question
        self.yes = yes
        self.no = no

    def compose(self) -> ComposeResult:
        with Vertical():
            # Questions quote prompts and paths: their control characters are shown.
            yield Static(visible_lines(self.question), markup=False)
            with Horizontal():
                yield Button(f"{self.yes} (y)", variant="error", id="yes")
                yield Button(f"{self.no} (n)", id="no")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, value: bool) -> None:
        self.dismiss(value)
