"""`?` / F1: every key of the current screen and of the app, with what it does."""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Static

INTRO = (
    "medialab: build a pipeline (1), watch the queue (2), pick models (3), browse what "
    "you made (4). ctrl+p opens the command palette with every action of the screen."
)


class HelpScreen(ModalScreen[None]):
    """The keys of `screen` and the app's, each with its description and tooltip.

    Built from Rich text, not markup: key names such as `[` and `]` are shown as
    they are, and a long tooltip wraps in its own column.
    """

    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll { width: 90%; max-width: 100; height: auto; max-height: 90%;
                                  border: round $accent; background: $surface; padding: 0 1; }
    """
    BINDINGS = [Binding("escape,q,question_mark,f1", "dismiss", "Close")]

    def __init__(self, screen: Screen[Any]) -> None:
        super().__init__()
        self.target = screen

    def rows(self, bindings: list[Any]) -> list[tuple[str, Text]]:
        """One row per described binding: its keys, then its name and what it does."""
        rows = []
        for b in bindings:
            if isinstance(b, Binding) and b.description:
                keys = ", ".join(self.app.get_key_display(Binding(k, "")) for k in b.key.split(","))
                what = Text(b.description, style="bold")
                if b.tooltip:
                    what.append(f"  {b.tooltip}", style="dim")
                rows.append((keys, what))
        return rows

    def compose(self) -> ComposeResult:
        title = getattr(self.target, "TITLE_TEXT", "") or "medialab"
        sections = [
            ("This screen", self.rows(getattr(self.target, "BINDINGS", []))),
            ("Everywhere", self.rows(self.app.BINDINGS)),
        ]
        # One width for the keys of both sections, so all descriptions line up.
        width = max((len(keys) for _, rows in sections for keys, _ in rows), default=1)
        parts: list[RenderableType] = [Text(title, style="bold"), Text(INTRO)]
        for heading, rows in sections:
            table = Table.grid(padding=(0, 2))
            table.add_column(no_wrap=True, style="bold", min_width=width)
            table.add_column(ratio=1)
            for keys, what in rows:
                table.add_row(keys, what)
            parts += [Text(), Text(heading, style="bold underline"), table]
        with VerticalScroll():
            yield Static(Group(*parts), id="help-keys")
