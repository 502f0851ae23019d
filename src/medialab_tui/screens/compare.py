"""Before/after: an artifact beside the image its stage started from, or a video
beside the video it was made from, both playing in step (SPEC §9)."""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image as PILImage
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.markup import escape
from textual.screen import ModalScreen
from textual.widgets import Static

from medialab_tui.screens.playback import Clip
from medialab_tui.screens.player import PlayerScreen
from medialab_tui.screens.thumbs import image_widget
from medialab_tui.text import visible


class CompareScreen(ModalScreen[None]):
    """Two images side by side at the same size, each with what made it."""

    DEFAULT_CSS = """
    CompareScreen { align: center middle; }
    CompareScreen > Vertical { width: 95%; height: 90%; border: round $accent;
                               background: $surface; padding: 0 1; }
    CompareScreen #compare-sides { height: 1fr; }
    CompareScreen .side { width: 1fr; height: 1fr; padding: 0 1; }
    CompareScreen .side-image { width: 1fr; height: 1fr; }
    CompareScreen .side-caption { height: 2; color: $text-muted; }
    """
    BINDINGS = [Binding("escape,c", "close", "Close", id="compare.close")]

    def __init__(
        self,
        before: tuple[str, PILImage.Image | None],
        after: tuple[str, PILImage.Image | None],
        title: str,
        graphics: str,
    ) -> None:
        """`before` and `after` are (caption, image); `title` names the pair; `graphics`
        is the configured image protocol."""
        super().__init__()
        self.sides = ((*before, "before"), (*after, "after"))
        self.title_text = title
        self.graphics = graphics

    def compose(self) -> ComposeResult:
        with Vertical():
            # Captions name files and artifacts: shown as text, never markup or sequences.
            title = escape(visible(self.title_text))
            yield Static(f"[b]Compare[/b] {title}   [dim]escape or c closes[/]")
            with Horizontal(id="compare-sides"):
                for caption, image, label in self.sides:
                    with Vertical(classes="side"):
                        yield Static(
                            f"[b]{label}[/b] {escape(visible(caption))}", classes="side-caption"
                        )
                        if image is None:
                            yield Static("the image file is missing", classes="side-image")
                        else:
                            yield image_widget(self.graphics, image, classes="side-image")

    def action_close(self) -> None:
        self.dismiss()


class VideoCompareScreen(PlayerScreen):
    """A video beside the one it was made from (an interpolated video and its source),
    on one clock: at any moment both show the frame of the same instant, so the
    source's frame holds while the interpolated one moves through the frames between."""

    BINDINGS = [Binding("c", "close", "Close", id="compare.close", show=False)]

    def __init__(
        self,
        clips: Sequence[Clip],
        title: str,
        graphics: str,
        labels: Sequence[str] = ("before", "after"),
    ) -> None:
        """`clips` are (before, after)."""
        super().__init__(clips, f"Compare {title}", graphics, labels)
