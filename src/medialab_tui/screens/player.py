"""Video playback in the terminal (SPEC §9): a clip's frames through textual-image at
its own rate.

`PlayerScreen` plays one or more clips on one clock (the compare screen plays a
source video and its interpolated version side by side, in step: the same wall
time in both). Each `VideoPane` shows the frame due now from its `FrameFeed`, which
decodes a few frames ahead on a thread; a frame that is late is skipped. space
pauses and resumes, ←/→ step one frame, l turns looping on and off, escape closes.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Container, Horizontal, Vertical
from textual.markup import escape
from textual.screen import ModalScreen
from textual.timer import Timer
from textual.widgets import Static
from textual_image.widget import get_cell_size

from medialab_tui.screens.common import KeysFooter
from medialab_tui.screens.playback import Clip, Frame, FrameFeed, PlayClock, frame_at
from medialab_tui.screens.thumbs import ImageWidget, frame_widget
from medialab_tui.store.videos import fps_text
from medialab_tui.text import visible

MAX_TICK_HZ = 60  # frames shown per second at most, whatever the clips' rate
FALLBACK_BOX = (640, 360)  # pixels to decode at before the pane has been laid out


def seconds_text(seconds: Fraction | float) -> str:
    return f"{float(seconds):.2f}"


class VideoPane(Vertical):
    """One clip: the frame due now, with a caption naming the clip."""

    DEFAULT_CSS = """
    VideoPane { width: 1fr; height: 1fr; padding: 0 1; }
    VideoPane > .pane-caption { height: 1; color: $text-muted; text-wrap: nowrap;
                                text-overflow: ellipsis; }
    VideoPane > .pane-frame { height: 1fr; align: center middle; }
    VideoPane .pane-picture { width: auto; height: auto; }
    VideoPane > .pane-error { height: auto; color: $error; }
    """

    def __init__(self, clip: Clip, graphics: str, label: str = "") -> None:
        super().__init__()
        self.clip = clip
        self.graphics = graphics
        self.label = label
        self.feed: FrameFeed | None = None
        self.shown: Frame | None = None

    @property
    def index(self) -> int:
        """The index (0-based, in the file) of the frame on show; -1 before the first."""
        return self.shown.index if self.shown is not None else -1

    def compose(self) -> ComposeResult:
        label = f"[b]{escape(self.label)}[/b] " if self.label else ""
        # Captions name files and artifacts: shown as text, never markup or sequences.
        yield Static(f"{label}{escape(visible(self.clip.caption))}", classes="pane-caption")
        with Container(classes="pane-frame"):
            yield frame_widget(self.graphics, classes="pane-picture")
        yield Static("", classes="pane-error")

    def _box(self) -> tuple[int, int]:
        """The pixels a frame is shown at: the frame area in cells × the cell's pixels."""
        size = self.query_one(".pane-frame").size
        if not size.width or not size.height:
            return FALLBACK_BOX
        if self.graphics == "halfcell":
            return size.width, size.height * 2  # one pixel per half cell
        cell = get_cell_size()
        return size.width * cell.width, size.height * cell.height

    def on_resize(self) -> None:
        if self.feed is not None:
            self.feed.box = self._box()

    def show(self, lap: int, seconds: Fraction) -> None:
        """Show the frame due `seconds` into lap `lap` (it stays as it is until decoded)."""
        if self.feed is None:
            self.feed = FrameFeed(self.clip, self._box())
        serial, _ = frame_at(self.clip, lap, seconds)
        frame = self.feed.frame(serial)
        if frame is not None and frame is not self.shown:
            self.shown = frame
            self.query_one(".pane-picture", ImageWidget).image = frame.image
        if self.feed.error:
            self.query_one(".pane-error", Static).update(visible(self.feed.error))

    def status(self) -> str:
        """`frame 12/48 · 24 fps`: where this clip is."""
        return f"frame {self.index + 1}/{self.clip.frames} · {fps_text(self.clip.fps)} fps"

    def on_unmount(self) -> None:
        if self.feed is not None:
            self.feed.close()


class PlayerScreen(ModalScreen[None]):
    """Clips playing on one clock, with the keys to pause, step and loop them."""

    DEFAULT_CSS = """
    PlayerScreen { align: center middle; }
    PlayerScreen > #player-box { width: 95%; height: 90%; border: round $accent;
                                 background: $surface; }
    PlayerScreen #player-title { height: 1; padding: 0 1; text-wrap: nowrap;
                                 text-overflow: ellipsis; }
    PlayerScreen #player-panes { height: 1fr; }
    PlayerScreen #player-status { height: 1; padding: 0 1; text-wrap: nowrap;
                                  text-overflow: ellipsis; }
    PlayerScreen KeysFooter { dock: none; }
    """
    BINDINGS = [
        Binding(
            "space",
            "play_pause",
            "Play/pause",
            id="player.toggle",
            tooltip="Pause the video, or play it on from the frame on show",
        ),
        Binding(
            "right",
            "step(1)",
            "Next frame",
            id="player.next_frame",
            tooltip="Pause and show the next frame",
        ),
        Binding(
            "left",
            "step(-1)",
            "Previous frame",
            id="player.previous_frame",
            tooltip="Pause and show the previous frame",
        ),
        Binding(
            "l",
            "toggle_loop",
            "Loop",
            id="player.loop",
            tooltip="Start again after the last frame, or stop on it",
        ),
        Binding(
            "home",
            "rewind",
            "First frame",
            id="player.rewind",
            show=False,
            tooltip="Go back to the first frame",
        ),
        Binding("escape", "close", "Close", id="player.close", tooltip="Close the player"),
        # A modal screen hides the app's keys: its own help key shows these.
        Binding("question_mark,f1", "app.help", "Help", id="player.help", show=False),
    ]

    def __init__(
        self,
        clips: Sequence[Clip],
        title: str,
        graphics: str,
        labels: Sequence[str] = (),
    ) -> None:
        """`clips` play side by side, each under its label; `title` names them;
        `graphics` is the configured image protocol."""
        super().__init__()
        self.clips = list(clips)
        self.labels = list(labels) or [""] * len(self.clips)
        self.title_text = title
        self.graphics = graphics
        self.clock = PlayClock(
            max(clip.duration for clip in self.clips), max(clip.fps for clip in self.clips)
        )
        self._timer: Timer | None = None

    @property
    def panes(self) -> list[VideoPane]:
        return list(self.query(VideoPane))

    def compose(self) -> ComposeResult:
        with Vertical(id="player-box"):
            yield Static(f"[b]▶[/b] {escape(visible(self.title_text))}", id="player-title")
            with Horizontal(id="player-panes"):
                for clip, label in zip(self.clips, self.labels, strict=True):
                    yield VideoPane(clip, self.graphics, label)
            yield Static("", id="player-status")
            yield KeysFooter()

    def on_mount(self) -> None:
        self.clock.play()
        rate = min(float(self.clock.rate), MAX_TICK_HZ)
        self._timer = self.set_interval(1 / rate, self.tick)
        self.call_after_refresh(self.tick)

    def tick(self) -> None:
        """Show the frames due now in every pane, and where playback is."""
        lap, seconds = self.clock.at()
        panes = self.panes
        for pane in panes:
            pane.show(lap, seconds)
        state = "▶" if self.clock.playing else "⏸ paused"
        where = [f"{state}  {seconds_text(seconds)} / {seconds_text(self.clock.duration)} s"]
        if len(panes) == 1:
            where.append(panes[0].status())
        else:
            where += [f"{pane.label} {pane.status()}" for pane in panes]
        if self.clock.loop:
            where.append("loop")
        dropped = sum(pane.feed.dropped for pane in panes if pane.feed is not None)
        if dropped:
            where.append(f"{dropped} frames skipped")
        self.query_one("#player-status", Static).update(" · ".join(where))

    def action_play_pause(self) -> None:
        self.clock.toggle()
        self.tick()

    def action_step(self, frames: int) -> None:
        self.clock.step(frames)
        self.tick()

    def action_rewind(self) -> None:
        self.clock.rewind()
        self.tick()

    def action_toggle_loop(self) -> None:
        self.clock.loop = not self.clock.loop
        self.notify("Looping" if self.clock.loop else "Stopping at the last frame")
        self.tick()

    def action_close(self) -> None:
        if self._timer is not None:
            self._timer.stop()
        self.dismiss()
