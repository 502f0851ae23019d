"""Pieces every screen shares: the status header, the screen frame, their messages.

Screens reach the app through `studio_app`, typed as the `Studio` protocol (what
screens may use of the app), and never import `medialab_tui.app`: the app imports the
screens, not the other way round.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.content import Content
from textual.dom import DOMNode
from textual.markup import escape
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Input, Static, TextArea

from medialab_tui.text import visible

if TYPE_CHECKING:
    from medialab_tui.client import StudioClient
    from medialab_tui.config import Config, DataDir


class Studio(Protocol):
    """What screens may use of the app (`MedialabApp` is one)."""

    data: DataDir
    config: Config
    client: StudioClient
    pipeline_path: Path | None

    def poll_state(self) -> None: ...

    def status_line(self, level: int = 0) -> str: ...


def studio_app(node: DOMNode) -> Studio:
    """The app `node` runs in, typed: every screen here runs inside `MedialabApp`."""
    return cast("Studio", node.app)


class BuilderRequest(Message):
    """Input images, a model, or a whole pipeline's settings, sent to the builder
    from another screen.

    The sending screen posts it and it bubbles up to the app, which shows the
    builder and posts it on to the builder screen (built or not yet). `settings` is
    a pipeline document, shaped like a parsed pipeline TOML file (`name`, `inputs`,
    `stages`): the builder replaces its pipeline with it, asking first when the one
    on screen has unsaved edits.
    """

    def __init__(
        self,
        *,
        images: tuple[str, ...] = (),
        model: str = "",
        settings: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.images = images
        self.model = model
        self.settings = settings


def plain_cells(*cells: object) -> tuple[object, ...]:
    """Table cells as rich Text: a plain string is parsed as markup by the DataTable,
    which costs most of a page's layout and would style a prompt that holds `[red]`.
    Control characters in a string are shown (`^[`), never sent to the terminal."""
    return tuple(Text(visible(cell)) if isinstance(cell, str) else cell for cell in cells)


SCREEN_KEYS = (("1", "Builder"), ("2", "Queue"), ("3", "Models"), ("4", "Gallery"))


@lru_cache(maxsize=256)  # the header measures the same lines twice a second
def cells(markup: str) -> int:
    """How many cells a line of Textual markup takes on screen."""
    return Content.from_markup(markup).cell_length


class StudioHeader(Static):
    """One line: which screen, host or attached, device, queue state and counts.

    When the line is too long for the terminal, the least important parts go first:
    the help hint, the device, the words around the queue state and counts, then the
    other screens' names.
    The host line is never cut.
    """

    DEFAULT_CSS = """
    StudioHeader { dock: top; height: 1; background: $panel; color: $text; padding: 0 1;
                   text-wrap: nowrap; }
    """

    def __init__(self, title: str) -> None:
        super().__init__()
        self.title = title
        self.shown = ""

    def on_mount(self) -> None:
        self.refresh_state()
        # Reads only what the app's state poll already fetched: no I/O here.
        self.set_interval(0.5, self.refresh_state)

    def on_resize(self) -> None:
        self.refresh_state()

    def line(self, width: int) -> str:
        """The header's markup for `width` cells."""
        current = next((key for key, name in SCREEN_KEYS if name == self.title), "")
        full = "  ".join(
            f"[b reverse] {key} {name} [/]" if key == current else f"[dim]{key}[/] {name}"
            for key, name in SCREEN_KEYS
        )
        short = " ".join(
            f"[b reverse] {key} {name} [/]" if key == current else f"[dim]{key}[/]"
            for key, name in SCREEN_KEYS
        )
        alone = f"[b reverse] {current} {self.title} [/]" if current else ""
        app = studio_app(self)
        # (screen tabs, how much of the status, help hint), most detailed first.
        forms = (
            (full, 0, "  [dim]? help[/]"),
            (full, 0, ""),
            (full, 1, ""),
            (full, 2, ""),
            (short, 1, ""),
            (short, 2, ""),
            (short, 3, ""),
            (alone, 3, ""),
            ("", 3, ""),
        )
        line = ""
        for tabs, level, hint in forms:
            # The status names the host (user, machine) from the lock file: shown, not markup.
            status = escape(visible(app.status_line(level)))
            sep = "   [dim]│[/] " if tabs == full else " [dim]│[/] "
            line = f"{tabs}{sep}{status}{hint}" if tabs else f"{status}{hint}"
            if cells(line) <= width:
                break
        return line

    def refresh_state(self) -> None:
        line = self.line(self.content_region.width or self.app.size.width - 2)
        if line != self.shown:  # twice a second: only a change is drawn again
            self.shown = line
            self.update(line)


class KeysFooter(Static):
    """One line of the keys that work here, rebuilt when the screen's bindings change.

    Textual's own Footer mounts a widget per key and restyles each of them on every
    screen switch and focus change (≈ 0.25 s with this app's stylesheet); a line of
    text shows the same keys for the cost of one update. When they do not all fit, the
    screen's last keys go first (a screen lists its keys most important first); the
    app's own keys (Quit) and the palette, where every key can be found, stay.
    """

    DEFAULT_CSS = """
    KeysFooter { dock: bottom; height: 1; background: $footer-background;
                 color: $footer-description-foreground; text-wrap: nowrap; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.screen_keys: list[str] = []
        self.app_keys: list[str] = []
        self.palette = ""

    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, self.bindings_changed)
        self.bindings_changed(self.screen)

    def on_unmount(self) -> None:
        self.screen.bindings_updated_signal.unsubscribe(self)

    def on_resize(self) -> None:
        self.show_keys()

    def bindings_changed(self, screen: Screen[object]) -> None:
        if not screen.is_current:
            return
        app = self.app
        seen: set[str] = set()
        self.screen_keys, self.app_keys, self.palette = [], [], ""
        for active in screen.active_bindings.values():
            binding = active.binding
            if (
                binding.action == "app.command_palette"
                or binding.key == app.COMMAND_PALETTE_BINDING
            ):
                self.palette = f"[b]{app.get_key_display(binding)}[/b] palette"
                continue
            if not binding.show or binding.action in seen:
                continue
            seen.add(binding.action)
            style = "b $footer-key-foreground" if active.enabled else "dim"
            key = f"[{style}]{escape(app.get_key_display(binding))}[/] {binding.description}"
            (self.app_keys if active.node is app else self.screen_keys).append(key)
        self.show_keys()

    def line(self, width: int) -> str:
        """The footer's markup for `width` cells: as many of the screen's keys as fit."""
        tail = f"   [dim]│[/] {self.palette}" if self.palette else ""
        keys = list(self.screen_keys)
        while True:
            line = " " + "  ".join([*keys, *self.app_keys]) + tail
            if cells(line) <= width or not keys:
                return line
            keys.pop()

    def show_keys(self) -> None:
        self.update(self.line(self.size.width or self.app.size.width))


class StudioScreen(Screen[None]):
    """A top-level screen: header, the screen's body, footer of its keys."""

    TITLE_TEXT = ""
    # Start on a list, not a text field, so the screen keys work at once; a screen
    # marks the widget it wants first with the class `auto-focus`.
    AUTO_FOCUS = ".auto-focus, DataTable, ListView"
    BINDINGS = [
        # Digits type into a focused text field; escape leaves it so 1–4 switch screens.
        Binding(
            "escape",
            "leave_field",
            "Leave field",
            id="screen.leave_field",
            show=False,
            tooltip="Take the focus out of a text field, so 1–4 switch screens again",
        ),
    ]

    def __init__(self) -> None:
        super().__init__()
        # A screen Textual builds for a mode starts behind the app's CSS count, and the
        # first build re-parses the whole stylesheet and re-applies it to every screen
        # (≈ 0.1 s of the UI thread per screen). A studio screen has no CSS of its own
        # beyond its widgets' DEFAULT_CSS, which is added and applied as each widget
        # mounts, so it starts current. A theme changed after this still counts.
        try:
            app = self.app
        except RuntimeError:  # built outside a running app (Textual's NoActiveAppError)
            return
        count = getattr(app, "_css_update_count", None)  # Textual's own, not public
        if isinstance(count, int):
            self._css_update_count = count

    def on_mount(self) -> None:
        # Textual closes a screen still being built when the app shuts down (one built
        # ahead, a quick quit) and then mounts it anyway, without its widgets.
        if self.app.is_running:
            self.set_up()

    def set_up(self) -> None:
        """Start what the screen shows, once its widgets are mounted."""

    def action_leave_field(self) -> None:
        if isinstance(self.focused, (Input, TextArea)):
            self.set_focus(None)

    def from_worker(self, show: Callable[..., object], *args: object) -> None:
        """Call `show(*args)` on the app's thread, from a thread worker. A load that
        comes back after the screen closed (the app shutting down, a screen built
        ahead and closed unshown) is dropped: its widgets are gone."""

        def on_app_thread() -> None:
            if self.children and self.app.is_running:
                show(*args)

        self.app.call_from_thread(on_app_thread)

    @property
    def studio(self) -> Studio:
        """The app, typed (its config, data dir, client and state)."""
        return studio_app(self)

    @property
    def client(self) -> StudioClient:
        return self.studio.client

    def compose(self) -> ComposeResult:
        yield StudioHeader(self.TITLE_TEXT)
        yield from self.compose_body()
        yield KeysFooter()

    def compose_body(self) -> ComposeResult:
        yield from ()
