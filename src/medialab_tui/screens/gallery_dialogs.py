"""The gallery's small questions: a path to import from, and where (and how) to export."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Checkbox, Input, Static

from medialab_tui.screens.dialogs import DIALOG_CSS
from medialab_tui.text import visible_lines

Answer = TypeVar("Answer")


class PathQuestion(ModalScreen[Answer | None]):
    """Asks for one path; enter answers it (`~` allowed), escape answers None."""

    DEFAULT_CSS = (
        DIALOG_CSS.format(name="PathQuestion")
        + """
    PathQuestion Input { margin-top: 1; }
    PathQuestion .hint { margin-top: 1; }
    PathQuestion Checkbox { margin-top: 1; width: 1fr; }
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
            yield from self.compose_options()
            yield Static(visible_lines(self.hint), classes="hint", markup=False)

    def compose_options(self) -> ComposeResult:
        """Widgets between the path and the hint (none unless a question has options)."""
        yield from ()

    @on(Input.Submitted, "#path-input")
    def _submitted(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        if text:
            self.dismiss(self.answer(text))

    def answer(self, path: str) -> Answer:
        raise NotImplementedError

    def action_cancel(self) -> None:
        self.dismiss(None)


class PathScreen(PathQuestion[str]):
    """A path to import from: the answer is the text typed."""

    def answer(self, path: str) -> str:
        return path


@dataclass(frozen=True)
class ExportChoice:
    """Where to export to, and whether the copies go without their metadata."""

    path: str
    strip: bool = False


class ExportScreen(PathQuestion[ExportChoice]):
    """Where to export, and a toggle (ctrl+t, or tab to it and space) that strips the
    metadata from the copies, as `medialab export --strip` does; enter exports."""

    BINDINGS = [
        Binding(
            "ctrl+t",
            "toggle_strip",
            "Strip metadata",
            id="export.strip",
            priority=True,
            tooltip="Export copies without their metadata (prompt, seed, settings) or sidecars",
        ),
    ]

    def compose_options(self) -> ComposeResult:
        yield Checkbox("Strip metadata: no prompt or settings (ctrl+t)", id="export-strip")

    @on(Checkbox.Changed, "#export-strip")
    def _strip_changed(self) -> None:
        # Back to the path once toggled, so that enter exports (on the box it toggles).
        self.query_one("#path-input", Input).focus()

    def action_toggle_strip(self) -> None:
        self.query_one("#export-strip", Checkbox).toggle()

    def answer(self, path: str) -> ExportChoice:
        return ExportChoice(path, self.query_one("#export-strip", Checkbox).value)
