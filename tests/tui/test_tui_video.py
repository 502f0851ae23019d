"""Videos in the TUI: the gallery's marker and inspector, playback in the terminal,
and the compare screen for an interpolated video beside its source.

The videos are real H.264 files written by `store.videos.write_video`, with the
thumbnail, sidecar and metadata a video job leaves, indexed in a real store the way
the scheduler indexes a job's outputs.
"""

from __future__ import annotations

import re
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from test_tui_builder import builder, error_under, estimate, field, type_into
from test_tui_gallery import inspector_text, open_gallery
from textual.geometry import Region
from textual.widgets import Static, TextArea

from conftest import Home, until
from medialab_tui.screens.common import KeysFooter
from medialab_tui.screens.compare import VideoCompareScreen
from medialab_tui.screens.gallery import GalleryScreen
from medialab_tui.screens.gallery_widgets import GalleryTable, Inspector, Thumb, ThumbGrid
from medialab_tui.screens.help import HelpScreen
from medialab_tui.screens.playback import frame_at
from medialab_tui.screens.player import PlayerScreen, VideoPane
from medialab_tui.screens.queue import QueueScreen
from medialab_tui.screens.thumbs import HalfcellFrameImage
from medialab_tui.store.tables import Job, Run
from medialab_tui.store.videos import write_video
from videoclips import Videos

SIZE = (48, 32)  # width, height


def moving_square(count: int, *, shift: int = 0) -> list[np.ndarray]:
    """Frames of a bright square crossing a dark field: each frame differs."""
    width, height = SIZE
    frames = []
    for i in range(count):
        frame = np.full((height, width, 3), 20, np.uint8)
        x = (i * 2 + shift) % (width - 8)
        frame[8:16, x : x + 8] = (240, 200, 40)
        frames.append(frame)
    return frames


@pytest.fixture
def videos(home: Home) -> Videos:
    return Videos(home.root)


def table_text(table: GalleryTable, row: int) -> str:
    return " ".join(str(cell) for cell in table.get_row_at(row))


async def test_gallery_shows_a_video_with_its_marker_first_frame_and_facts(
    studio: Any, videos: Videos
) -> None:
    made = videos.video("i2v", moving_square(12), Fraction(24))
    app = studio()
    async with app.run_test(size=(140, 40)) as pilot:
        screen = await open_gallery(app, pilot)
        table = screen.query_one(GalleryTable)
        assert table.row_count == 1
        assert "▶ 0.5s 24fps" in table_text(table, 0)

        inspector = screen.query_one(Inspector)
        await until(pilot, lambda: inspector.details is not None)
        text = inspector_text(screen)
        assert "fps      24" in text
        assert "frames   12" in text
        assert "duration 0.50 s" in text
        assert "codec    h264" in text
        assert re.search(r"file     [\d.]+ (B|KB)\n", text)
        picture = inspector.query_one("#inspector-picture")
        assert getattr(picture, "image", None) is not None  # the first frame
        assert inspector.border_subtitle == "▶ p plays"
        assert "Play" in str(screen.query_one("KeysFooter").render())

        # The kind filter keeps videos.
        await pilot.press("k")
        await until(pilot, lambda: screen.gallery_query.kind == "image" and table.row_count == 0)
        await pilot.press("k")
        await until(pilot, lambda: screen.gallery_query.kind == "video" and table.row_count == 1)

        # The grid shows its first frame with the marker in the caption.
        await pilot.press("g")
        grid = screen.query_one(ThumbGrid)
        await until(pilot, lambda: len(grid.query(Thumb)) == 1)
        thumb = grid.query_one(Thumb)
        assert thumb.image is not None
        assert f"▶ 0.5s 24fps {made.ref}" in str(thumb.query_one(".thumb-caption", Static).render())


async def test_inspector_shows_an_ntsc_rate_as_its_exact_fraction(
    studio: Any, videos: Videos
) -> None:
    videos.video("i2v", moving_square(6), Fraction(30000, 1001))
    app = studio()
    async with app.run_test(size=(140, 40)) as pilot:
        screen = await open_gallery(app, pilot)
        assert "▶ 0.2s 29.97fps" in table_text(screen.query_one(GalleryTable), 0)
        await until(pilot, lambda: "codec    h264" in inspector_text(screen))
        assert "fps      29.97 (30000/1001)" in inspector_text(screen)


def pane_index(app: Any) -> int:
    """The frame index on show; -1 before the pane is mounted or shows a frame."""
    panes = app.screen.query(VideoPane)
    return panes.first().index if panes else -1


def pane_serial(app: Any) -> int:
    """The frame on show, counted on across laps (-1 before the first)."""
    panes = app.screen.query(VideoPane)
    shown = panes.first().shown if panes else None
    return shown.serial if shown is not None else -1


async def test_player_plays_pauses_and_steps_frame_by_frame(studio: Any, videos: Videos) -> None:
    videos.video("i2v", moving_square(48), Fraction(24))
    app = studio()
    async with app.run_test(size=(120, 36)) as pilot:
        await open_gallery(app, pilot)
        await pilot.press("p")
        await until(pilot, lambda: isinstance(app.screen, PlayerScreen))
        player = app.screen
        assert isinstance(player, PlayerScreen)
        # Playing: the frame on show moves on by itself.
        await until(pilot, lambda: pane_index(app) >= 0)
        # Counted across laps: a slow start can show the first lap's last frame first
        # (a late decoder still shows that one), and no index comes after it.
        start = pane_serial(app)
        await until(pilot, lambda: pane_serial(app) > start)
        status = player.query_one("#player-status", Static)
        assert "/48 · 24 fps" in str(status.render())

        await pilot.press("space")
        assert not player.clock.playing
        pane = player.query_one(VideoPane)
        # Paused on the frame of the moment (once decoded, if it was not yet).
        serial, held = frame_at(pane.clip, *player.clock.at())
        await until(pilot, lambda: pane_index(app) == held and "paused" in str(status.render()))
        # Paused: the frame stays while the decoder and the clock would have moved on.
        for _ in range(6):
            await pilot.pause(0.05)
            assert pane_index(app) == held

        await pilot.press("right")
        await until(pilot, lambda: pane_index(app) == (held + 1) % 48)
        assert f"frame {(held + 1) % 48 + 1}/48" in str(status.render())
        await pilot.press("left", "left")
        # One frame before the held one: the last of the lap before, when that held the
        # first frame of a later lap; the first frame stays when there is no lap before.
        back = (serial - 1) % 48 if serial else 0
        await until(pilot, lambda: pane_index(app) == back)

        await pilot.press("space")
        await until(pilot, lambda: pane_index(app) != back)

        # The player's keys, with what they do, on ? (the footer shows them too).
        assert "space Play/pause" in str(player.query_one(KeysFooter).render())
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen))
        help_screen = app.screen
        assert isinstance(help_screen, HelpScreen) and help_screen.target is player
        keys = " ".join(str(what) for _, what in help_screen.rows(player.BINDINGS))
        assert "Previous frame" in keys and "Pause and show the next frame" in keys
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is player)

        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, GalleryScreen))


async def test_player_shows_the_frames_the_file_holds_in_half_cells(
    studio: Any, home: Home, videos: Videos
) -> None:
    """The pane draws the decoded frame of that index: the square is in the cells where
    it was drawn (H.264 is lossy, so the test looks for the square, not exact bytes)."""
    with (home.root / "config.toml").open("a") as config:
        config.write('graphics = "halfcell"\n')
    videos.video("i2v", moving_square(20), Fraction(10))
    app = studio()
    async with app.run_test(size=(120, 36)) as pilot:
        await open_gallery(app, pilot)
        await pilot.press("enter")
        # The screen is pushed, then its pane mounted: wait for both.
        await until(
            pilot, lambda: isinstance(app.screen, PlayerScreen) and app.screen.query(VideoPane)
        )
        await pilot.press("space", "home")
        pane = app.screen.query_one(VideoPane)
        picture = pane.query_one(".pane-picture")
        assert isinstance(picture, HalfcellFrameImage)
        for index in (0, 1, 2):
            await until(pilot, lambda index=index: pane_index(app) == index)
            await until(pilot, lambda: picture.size.width > 0)
            lines = picture.render_lines(Region(0, 0, picture.size.width, picture.size.height))
            scale = picture.size.width / SIZE[0]
            # The square spans rows 8–15 of 32: the cells of rows 4–7 hold it.
            row = lines[int(6 * picture.size.height / 16)]
            colours = [seg.style.color.triplet for seg in row if seg.text == "▀" and seg.style]
            bright = [x for x, rgb in enumerate(colours) if rgb is not None and rgb.red > 150]
            assert bright, f"no square drawn in frame {index}"
            assert abs(bright[0] / scale - index * 2) <= 1.5
            await pilot.press("right")


async def test_compare_plays_an_interpolated_video_beside_its_source(
    studio: Any, videos: Videos
) -> None:
    source = videos.video("i2v", moving_square(12), Fraction(12))
    doubled = videos.video("interpolate", moving_square(24), Fraction(24), parent=source)
    app = studio()
    async with app.run_test(size=(140, 40)) as pilot:
        screen = await open_gallery(app, pilot)
        assert screen.current is not None and screen.current.id == doubled.id
        await pilot.press("c")
        await until(
            pilot,
            lambda: (
                isinstance(app.screen, VideoCompareScreen) and len(app.screen.query(VideoPane)) == 2
            ),
        )
        compare = app.screen
        before, after = compare.query(VideoPane)
        assert before.label == "source" and after.label == "interpolated"
        assert before.clip.frames == 12 and after.clip.frames == 24
        await until(pilot, lambda: after.index > 2)

        # In step: paused, a step moves the interpolated video one frame and the source
        # shows the frame of the same instant (every second step a new one).
        await pilot.press("space", "home")
        await until(pilot, lambda: before.index == 0 and after.index == 0)
        seen = []
        for n in range(1, 5):
            await pilot.press("right")
            await until(pilot, lambda n=n: after.index == n and before.index == n // 2)
            seen.append((before.index, after.index))
        assert seen == [(0, 1), (1, 2), (1, 3), (2, 4)]
        status = str(compare.query_one("#player-status", Static).render())
        assert "source frame 3/12 · 12 fps" in status
        assert "interpolated frame 5/24 · 24 fps" in status

        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, GalleryScreen))


async def test_compare_plays_a_video_beside_the_input_clip_it_was_made_from(
    studio: Any, videos: Videos, tmp_path: Path
) -> None:
    clip = tmp_path / "clip.mp4"
    write_video(clip, moving_square(10), Fraction(25))
    videos.video("interpolate", moving_square(30), Fraction(75), clip=clip)
    app = studio()
    async with app.run_test(size=(140, 40)) as pilot:
        await open_gallery(app, pilot)
        await pilot.press("c")
        await until(
            pilot,
            lambda: (
                isinstance(app.screen, VideoCompareScreen) and len(app.screen.query(VideoPane)) == 2
            ),
        )
        before, after = app.screen.query(VideoPane)
        assert "input clip.mp4" in before.clip.caption
        assert (before.clip.fps, before.clip.frames) == (Fraction(25), 10)
        assert (after.clip.fps, after.clip.frames) == (Fraction(75), 30)
        await until(pilot, lambda: before.index >= 0 and after.index >= 0)


async def test_play_says_so_when_the_video_file_is_gone(studio: Any, videos: Videos) -> None:
    made = videos.video("i2v", moving_square(6), Fraction(12))
    Path(made.path).unlink()
    app = studio()
    async with app.run_test(size=(120, 36)) as pilot:
        await open_gallery(app, pilot)
        await pilot.press("p")
        await until(
            pilot,
            lambda: any("is missing" in str(n.message) for n in app._notifications),
        )
        assert not isinstance(app.screen, PlayerScreen)


async def test_queue_shows_a_video_job_denoising_then_decoding(studio: Any, videos: Videos) -> None:
    """The worker counts an i2v job's 20 steps and then its 4 decode chunks in one total
    of 24: the running job reads `step 12/20`, then `decoding 2/4`."""
    stage = {"type": "i2v", "model": "demo-svd", "frames": 14, "steps": 20, "per_input": 1}
    run = videos.add(
        Run(name="clip", pipeline={"stages": [stage]}, stage_count=1, status="running")
    )
    job = videos.add(
        Job(
            run_id=run.id,
            stage_index=0,
            stage="i2v",
            item={"prompt": "waves", "seed": 1, "images": []},
            params=stage,
            status="running",
            step=12,
            total_steps=24,
            progress=0.5,
        )
    )
    app = studio()
    async with app.run_test(size=(140, 40)) as pilot:
        await app.switch_mode("queue")
        screen = app.screen
        assert isinstance(screen, QueueScreen)

        def running() -> str:
            """the running job's info, once the screen has mounted it"""
            found = screen.query("#running-info")
            return str(found.first(Static).render()) if found else ""

        await until(pilot, lambda: "step 12/20" in running())
        with videos.store.write() as s:
            row = s.get(Job, job.id)
            assert row is not None
            row.step, row.progress = 22, 22 / 24
            s.add(row)
        await until(pilot, lambda: "decoding 2/4" in running())
        assert "step" not in running().split("\n")[1]


async def test_builder_checks_video_stages_against_the_family_and_the_source_as_you_type(
    studio: Any, home: Home, tmp_path: Path
) -> None:
    """The builder's forms for i2v and interpolate come from their parameter models;
    what only the model's family or the source clip can tell (Wan's 4k+1 frames, a
    target rate that is no multiple of 60 fps) shows under the field as it is typed."""
    clip = tmp_path / "sixty.mp4"
    write_video(clip, moving_square(6), Fraction(60))
    picture = tmp_path / "still.png"
    Image.fromarray(moving_square(1)[0]).save(picture)
    pipeline = tmp_path / "video.toml"
    pipeline.write_text(
        f"""name = "clips"
[inputs]
prompts = ["waves"]
images = ["{picture}"]

[[stages]]
type = "i2v"
model = "demo-wan-i2v"
frames = 17
steps = 2
"""
    )
    app = studio(pipeline=pipeline)
    async with app.run_test(size=(140, 40)) as pilot:
        screen = await builder(pilot)
        await until(pilot, lambda: "Total" in estimate(screen))
        assert {"frames", "fps", "steps", "motion", "prompt"} <= set(screen.form.fields)
        await type_into(pilot, field(screen, "frames"), "15")
        await until(pilot, lambda: "4k+1" in error_under(screen, "frames"))
        assert "13, 17" in error_under(screen, "frames")
        await type_into(pilot, field(screen, "frames"), "17")
        await until(pilot, lambda: "Total" in estimate(screen))
        assert error_under(screen, "frames") == ""

    pipeline.write_text(
        f"""name = "smooth"
[inputs]
videos = ["{clip}"]

[[stages]]
type = "interpolate"
fps = 120
"""
    )
    app = studio(pipeline=pipeline)
    async with app.run_test(size=(140, 40)) as pilot:
        screen = await builder(pilot)
        await until(pilot, lambda: "Total" in estimate(screen))
        assert {"multiplier", "fps", "method"} <= set(screen.form.fields)
        # The clip from [inputs] videos is in the inputs panel, one path a line.
        assert screen.document["inputs"]["videos"] == [str(clip)]
        assert screen.query_one("#in-videos", TextArea).text == str(clip)
        second = clip.with_name("other.mp4")
        screen.query_one("#in-videos", TextArea).text = f"{clip}\n  {second}  \n"
        await until(pilot, lambda: screen.document["inputs"]["videos"] == [str(clip), str(second)])
        screen.query_one("#in-videos", TextArea).text = str(clip)
        await until(pilot, lambda: screen.document["inputs"]["videos"] == [str(clip)])
        await type_into(pilot, field(screen, "fps"), "95")
        await until(pilot, lambda: "95" in error_under(screen, "fps"))
        sentence = error_under(screen, "fps")
        assert "60" in sentence and "120" in sentence
        await type_into(pilot, field(screen, "fps"), "120")
        await until(pilot, lambda: "Total" in estimate(screen))
        assert error_under(screen, "fps") == ""
