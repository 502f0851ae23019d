"""Playing a video in the terminal: frames decoded ahead on a thread, and a clock.

A `FrameFeed` decodes one video on a thread of its own into a small queue (a
look-ahead of a few frames, each shrunk to the size it is shown at), so playing a
long video holds a handful of frames in memory, never the whole clip, and the event
loop never decodes. A `PlayClock` says where playback is in wall time; the player
asks each feed for the frame due at that time, and a frame whose time has passed
before it was shown is dropped: a slow terminal skips frames rather than fall behind.

Frames are numbered on from the first (`serial`): when a feed loops, the second pass
starts at serial N (the video's frame count), so the queue only ever moves forward;
asking for an earlier serial than the queue holds (a step back, a restart) decodes
again from the start of the file. Nothing here imports Textual.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from PIL import Image as PILImage

from medialab_tui.errors import MedialabError

LOOKAHEAD = 6  # frames decoded ahead of the one on show
HISTORY = 8  # frames shown lately, kept for stepping back without decoding again
PUT_WAIT_S = 0.1  # how often a decoder waiting on a full queue looks for a stop


@dataclass(frozen=True)
class Clip:
    """A video to play: its file, its exact frame rate and its frame count."""

    path: Path
    fps: Fraction
    frames: int
    caption: str = ""

    @property
    def duration(self) -> Fraction:
        """Seconds: frames at the frame rate."""
        return Fraction(self.frames) / self.fps


@dataclass(frozen=True)
class Frame:
    """One decoded frame, ready to show."""

    serial: int  # lap × frames + index: counts on across loops
    index: int  # 0-based, in the file
    image: PILImage.Image


class _Decoding:
    """One pass of a decoder thread, from `start` on, into its own queue."""

    def __init__(self, start: int) -> None:
        self.start = start
        self.frames: queue.Queue[Frame] = queue.Queue(maxsize=LOOKAHEAD)
        self.stop = threading.Event()
        self.error = ""


class FrameFeed:
    """The frames of one clip, decoded ahead on a thread; `frame(serial)` never blocks.

    `box` is the largest (width, height) in pixels a frame is shown at: frames are
    shrunk to fit it on the decoder's thread. After the last frame the decoder starts
    the file again (the next lap), so a looping player never waits at the seam.
    """

    def __init__(self, clip: Clip, box: tuple[int, int]) -> None:
        self.clip = clip
        self.box = box
        self.dropped = 0  # frames whose time passed before they could be shown
        self._history: deque[Frame] = deque(maxlen=HISTORY)
        self._head: Frame | None = None  # taken from the queue, not yet due
        self._wanted = 0  # the serial asked for last: the decoder skips work below it
        self._shown = -1  # the serial handed out last
        self._pass = self._start(0)

    @property
    def error(self) -> str:
        """Why decoding stopped, when it failed (a file truncated or gone meanwhile)."""
        return self._pass.error

    def frame(self, serial: int) -> Frame | None:
        """The frame `serial` (lap × frames + index); when that one is not decoded yet,
        the newest decoded frame before it that was not shown yet (a decoder slower than
        the clip's rate still shows a frame now and then); None when there is neither."""
        serial = max(0, serial)
        self._wanted = serial
        found = next((f for f in reversed(self._history) if f.serial == serial), None)
        late: Frame | None = None
        while found is None:
            head = self._head if self._head is not None else self._take()
            if head is None:
                break
            if head.serial > serial:
                if late is None:
                    # Behind the decoder (a step back, a restart): decode again from there.
                    self._restart(serial)
                break  # a frame not due yet: it stays for a later call
            self._head = None
            self._history.append(head)
            if head.serial == serial:
                found = head
            elif head.serial > self._shown:
                late = head
        found = found or late
        if found is not None and found.serial > self._shown + 1 and self._shown >= 0:
            self.dropped += found.serial - self._shown - 1
        if found is not None:
            self._shown = found.serial
        return found

    def _take(self) -> Frame | None:
        try:
            self._head = self._pass.frames.get_nowait()
        except queue.Empty:
            return None
        return self._head

    def _restart(self, serial: int) -> None:
        self._pass.stop.set()
        self._head = None
        self._pass = self._start(serial)

    def _start(self, serial: int) -> _Decoding:
        run = _Decoding(serial)
        thread = threading.Thread(
            target=self._decode, args=(run,), name=f"frames-{self.clip.path.name}", daemon=True
        )
        thread.start()
        return run

    def close(self) -> None:
        """Stop decoding; the thread ends within a fraction of a second."""
        self._pass.stop.set()

    # -- the decoder's thread ----------------------------------------------------------

    def _decode(self, run: _Decoding) -> None:
        import av

        from medialab_tui.store.videos import read_frames

        total = self.clip.frames
        lap, first = divmod(run.start, total)
        try:
            while not run.stop.is_set():
                index, array = -1, None
                for index, (_, array) in enumerate(read_frames(self.clip.path)):
                    if run.stop.is_set() or index >= total:
                        break
                    serial = lap * total + index
                    if index < first or (serial < self._wanted and index < total - 1):
                        continue  # before the start, or already late: not worth shrinking
                    frame = Frame(serial, index, self._shrink(PILImage.fromarray(array)))
                    if not self._put(run, frame):
                        return
                if array is None:
                    run.error = f"{self.clip.path.name} holds no frames"
                    return
                # A file shorter than it said: its last frame stands in for the rest.
                missing = range(max(index + 1, first), total)
                if missing:
                    last = self._shrink(PILImage.fromarray(array))
                    for n in missing:
                        if not self._put(run, Frame(lap * total + n, n, last)):
                            return
                lap, first = lap + 1, 0
        except (MedialabError, av.error.FFmpegError, OSError, IndexError) as exc:
            # Gone, truncated or changed under us since the gallery listed it.
            run.error = f"{self.clip.path.name} could not be decoded ({exc})"

    def _shrink(self, image: PILImage.Image) -> PILImage.Image:
        width, height = self.box
        if image.width > width or image.height > height:
            image.thumbnail((max(1, width), max(1, height)), PILImage.Resampling.BILINEAR)
        return image

    def _put(self, run: _Decoding, frame: Frame) -> bool:
        """Queue `frame`, waiting while the queue is full; False once stopped."""
        while not run.stop.is_set():
            try:
                run.frames.put(frame, timeout=PUT_WAIT_S)
                return True
            except queue.Full:
                continue
        return False


class PlayClock:
    """Where playback is: seconds into the clips, running with wall time while playing.

    `duration` is the longest clip's; `rate` the highest frame rate, the one a step
    moves by. With `loop`, time starts again at 0 after `duration` (`lap` counts the
    passes); without it, playback pauses on the last frame.
    """

    def __init__(
        self,
        duration: Fraction,
        rate: Fraction,
        *,
        loop: bool = True,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self.duration = duration
        self.rate = rate
        self._loop = loop
        self._now = now
        self._base = Fraction(0)  # seconds from the very start, laps included
        self._since: float | None = None  # monotonic time playback last resumed

    @property
    def playing(self) -> bool:
        return self._since is not None

    @property
    def loop(self) -> bool:
        return self._loop

    @loop.setter
    def loop(self, loop: bool) -> None:
        """Loop or not from here on: the pass under way becomes the first."""
        _, seconds = self.at()
        playing = self.playing
        self._base, self._since = seconds, None
        self._loop = loop
        if playing:
            self._since = self._now()

    @property
    def last_tick(self) -> int:
        """The last frame at `rate` (ticks of the lead clip) within `duration`."""
        return max(0, math.ceil(self.duration * self.rate) - 1)

    def elapsed(self) -> Fraction:
        """Seconds from the start, laps included; clamped to the last frame without loop."""
        elapsed = self._base
        if self._since is not None:
            elapsed += Fraction(self._now() - self._since)
        if not self._loop and elapsed * self.rate > self.last_tick:
            elapsed = Fraction(self.last_tick) / self.rate
            self._base, self._since = elapsed, None  # the end: pause on the last frame
        return elapsed

    def at(self) -> tuple[int, Fraction]:
        """(lap, seconds into the clips)."""
        elapsed = self.elapsed()
        if not self.duration:
            return 0, Fraction(0)
        lap = math.floor(elapsed / self.duration)
        return lap, elapsed - lap * self.duration

    def play(self) -> None:
        if self._since is None:
            if not self._loop and self._base * self.rate >= self.last_tick:
                self._base = Fraction(0)  # at the end: play again from the start
            self._since = self._now()

    def pause(self) -> None:
        """Stop at the frame on show (at `rate`), so a step moves from there."""
        tick = math.floor(self.elapsed() * self.rate)
        self._base, self._since = Fraction(tick) / self.rate, None

    def toggle(self) -> None:
        if self.playing:
            self.pause()
        else:
            self.play()

    def step(self, frames: int) -> None:
        """Pause and move `frames` frames (at `rate`) on or back; never before the start."""
        self.pause()
        tick = max(0, math.floor(self._base * self.rate) + frames)
        if not self._loop:
            tick = min(tick, self.last_tick)
        self._base = Fraction(tick) / self.rate

    def rewind(self) -> None:
        """Back to the first frame, playing or not as before."""
        playing = self.playing
        self._base, self._since = Fraction(0), None
        if playing:
            self.play()


def frame_at(clip: Clip, lap: int, seconds: Fraction) -> tuple[int, int]:
    """(serial, index) of `clip`'s frame on show `seconds` into lap `lap`."""
    index = min(clip.frames - 1, math.floor(seconds * clip.fps))
    return lap * clip.frames + index, index
