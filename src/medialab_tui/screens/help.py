"""`?` / F1: every key of the current screen and of the app, with what it does."""

from __future__ import annotations

from typing import Any

from rich.markup import escape
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
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll { width: 80; max-height: 80%; border: round $accent;
                                  background: $surface; padding: 1 2; }
    """
    BINDINGS = [Binding("escape,q,question_mark,f1", "dismiss", "Close")]

    def __init__(self, screen: Screen[Any]) -> None:
        super().__init__()
        self.target = screen

    def compose(self) -> ComposeResult:
        rows = [f"[b]{getattr(self.target, 'TITLE_TEXT', '') or 'medialab'}[/b]", INTRO, ""]
        for title, bindings in (
            ("This screen", getattr(self.target, "BINDINGS", [])),
            ("Everywhere", self.app.BINDINGS),
        ):
            rows.append(f"[b]{title}[/b]")
            for b in bindings:
                if isinstance(b, Binding) and b.description:
                    keys = ", ".join(
                        self.app.get_key_display(Binding(k, "")) for k in b.key.split(",")
                    )
                    help_text = f" [dim]{escape(b.tooltip)}[/]" if b.tooltip else ""
                    rows.append(
                        f"  [b]{escape(f'{keys:<14}')}[/b] {escape(b.description)}{help_text}"
                    )
            rows.append("")
        with VerticalScroll():
            yield Static("\n".join(rows))
