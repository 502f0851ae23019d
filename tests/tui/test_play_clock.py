"""The player's clock: stepping frame by frame, across the loop seam and at the start."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

from medialab_tui.screens.playback import Clip, PlayClock, frame_at

CLIP = Clip(path=Path("clip.mp4"), fps=Fraction(24), frames=48)


class Wall:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def shown(clock: PlayClock) -> tuple[int, int]:
    return frame_at(CLIP, *clock.at())


def test_a_step_back_from_a_later_laps_first_frame_shows_the_lap_befores_last() -> None:
    wall = Wall()
    clock = PlayClock(CLIP.duration, CLIP.fps, now=wall)
    clock.play()
    wall.t = 2.0 + 1 / 48  # two seconds: the first frame of the second lap
    clock.pause()
    assert shown(clock) == (48, 0)
    clock.step(-1)
    assert shown(clock) == (47, 47)
    clock.step(1)
    assert shown(clock) == (48, 0)


def test_a_step_back_from_the_very_first_frame_stays_there() -> None:
    clock = PlayClock(CLIP.duration, CLIP.fps, now=Wall())
    assert shown(clock) == (0, 0)
    clock.step(-1)
    assert shown(clock) == (0, 0) and not clock.playing


def test_without_loop_a_step_past_the_end_stays_on_the_last_frame() -> None:
    clock = PlayClock(CLIP.duration, CLIP.fps, loop=False, now=Wall())
    for _ in range(50):
        clock.step(1)
    assert shown(clock) == (47, 47)
