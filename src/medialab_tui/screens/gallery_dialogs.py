"""The gallery's small question: a path to import from or export to."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static

from medialab_tui.screens.dialogs import DIALOG_CSS
from medialab_tui.text import visible_lines


class PathScreen(ModalScreen[str | None]):
    """Asks for one path; enter answers it (`~` allowed), escape answers None."""

    DEFAULT_CSS = (
        DIALOG_CSS.format(name="PathScreen")
        + """
    PathScreen Input { margin-top: 1; }
    PathScreen .hint { margin-top: 1; }
    """
    )
    BINDINGS = [
        Binding(
            "escape",
            "cancel",
            "Cancel",
            id="path.cancel",
            tooltip="Close without doing anything",
        ),
    ]

    def __init__(self, question: str, placeholder: str, hint: str, value: str = "") -> None:
        super().__init__()
        self.question = question
        self.placeholder = placeholder
        self.hint = hint
        self.value = value

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(visible_lines(self.question), markup=False)
            yield Input(self.value, placeholder=self.placeholder, id="path-input")
            yield Static(self.hint, classes="hint", markup=False)

    @on(Input.Submitted, "#path-input")
    def _submitted(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        if text:
            self.dismiss(text)

    def action_cancel(self) -> None:
        self.dismiss(None)
