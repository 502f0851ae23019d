"""`[inputs] videos` and the `interpolate` stage's keys at submit: every bad input is
refused with exit 2 and one sentence naming the file, the stage or key, and the
value, and nothing is stored (no run, no copied input)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import pytest
from PIL import Image

from conftest import Home
from videoclips import audio_only, clip, truncated, variable_rate


@dataclass
class Clips:
    folder: Path


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Clips:
    folder = tmp_path_factory.mktemp("clips")
    clip(folder / "c60.mp4", 10, Fraction(60))
    clip(folder / "c2997.mp4", 10, Fraction(30000, 1001))
    truncated(folder / "c60.mp4", folder / "cut.mp4")
    audio_only(folder / "tone.m4a")
    variable_rate(folder / "vfr.mp4", [0, 33, 66, 140, 173, 250, 283, 316, 400, 433])
    (folder / "notes.mp4").write_text("not a video at all\n")
    Image.new("RGB", (64, 48), "red").save(folder / "still.png")
    return Clips(folder)


@pytest.fixture
def bare(tmp_path: Path) -> Home:
    """A data directory with no models: interpolate by flow needs none."""
    root = tmp_path / "home"
    root.mkdir(mode=0o700)
    (root / "config.toml").write_text("max_video_frames = 12\n")
    return Home(root)


def interpolate(video: str = "c60.mp4", **keys: object) -> str:
    lines = "\n".join(f"{k} = {json.dumps(v)}" for k, v in keys.items())
    return f'[inputs]\nvideos = ["{video}"]\n[[stages]]\ntype = "interpolate"\n{lines}\n'


def refused(home: Home, clips: Clips, text: str, *words: str) -> str:
    """Submit `text` as a pipeline beside the clips; it must be refused, store nothing."""
    path = clips.folder / "pipeline.toml"
    path.write_text(text)
    proc = home.cli("run", str(path), "--no-wait", "--no-start")
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert home.json("runs") == []
    inputs = home.root / "inputs"
    assert not inputs.exists() or not any(inputs.iterdir())
    return lines[0]


BAD = [
    pytest.param(
        interpolate("notes.mp4", multiplier=2),
        ("inputs.videos", "notes.mp4", "not a video"),
        id="not-a-video",
    ),
    pytest.param(
        interpolate("cut.mp4", multiplier=2),
        ("inputs.videos", "cut.mp4", "truncated"),
        id="truncated",
    ),
    pytest.param(
        interpolate("tone.m4a", multiplier=2),
        ("inputs.videos", "tone.m4a", "no video stream"),
        id="audio-only",
    ),
    pytest.param(
        interpolate("gone.mp4", multiplier=2),
        ("inputs.videos", "gone.mp4", "does not exist"),
        id="missing",
    ),
    pytest.param(
        interpolate(multiplier=0),
        ("stage 1 (interpolate)", "'multiplier'", "at least 2", "0"),
        id="multiplier-0",
    ),
    pytest.param(interpolate(multiplier=1), ("'multiplier'", "at least 2", "1"), id="multiplier-1"),
    pytest.param(
        interpolate(multiplier=-2), ("'multiplier'", "at least 2", "-2"), id="multiplier-negative"
    ),
    pytest.param(
        interpolate(multiplier=2.5), ("'multiplier'", "an integer", "2.5"), id="multiplier-fraction"
    ),
    pytest.param(
        interpolate(multiplier=2, fps=120),
        ("stage 1 (interpolate)", "'multiplier' or 'fps', not both"),
        id="both",
    ),
    pytest.param(
        interpolate(), ("stage 1 (interpolate)", "one of 'multiplier'", "'fps'"), id="neither"
    ),
    pytest.param(interpolate(fps="fast"), ("'fps'", "frame rate", "fast"), id="fps-text"),
    pytest.param(interpolate(fps=0), ("'fps'", "above 0"), id="fps-zero"),
    pytest.param(
        interpolate(fps=95),
        (
            "stage 1 (interpolate)",
            "'fps'",
            "95 fps is not an integer multiple",
            "c60.mp4's 60 fps",
            "120 or 180 would be",
        ),
        id="fps-60-to-95",
    ),
    pytest.param(
        interpolate(fps=60), ("'fps'", "60 fps is not above", "120 or 180"), id="fps-same-rate"
    ),
    pytest.param(interpolate(fps=30), ("'fps'", "30 fps is not above", "60 fps"), id="fps-lower"),
    pytest.param(
        interpolate("c2997.mp4", fps=60),
        ("'fps'", "60 fps is not an integer multiple", "29.97 fps", "59.94 or 89.91 would be"),
        id="fps-29.97-to-60",
    ),
    pytest.param(
        interpolate(method="rife-nowhere", multiplier=2),
        ("stage 1 (interpolate)", "'method'", "rife-nowhere"),
        id="unknown-method",
    ),
    pytest.param(
        '[inputs]\nimages = ["still.png"]\n[[stages]]\ntype = "interpolate"\nmultiplier = 2\n',
        ("'inputs.images'", "stage 1 (interpolate) takes videos, not images"),
        id="interpolate-fed-images",
    ),
    pytest.param(
        '[inputs]\nvideos = ["c60.mp4"]\n[[stages]]\ntype = "i2v"\nmodel = "demo-svd"\n',
        ("'inputs.videos'", "stage 1 (i2v) takes images, not videos"),
        id="i2v-fed-videos",
    ),
    pytest.param(
        interpolate(multiplier=2) + '[[stages]]\ntype = "txt2img"\nmodel = "demo-sd15"\n',
        ("stage 2 (txt2img)", "takes prompts but stage 1 (interpolate) gives videos"),
        id="txt2img-after-video",
    ),
    pytest.param(
        '[inputs]\nprompts = ["fox"]\n[[stages]]\ntype = "txt2img"\nmodel = "demo-sd15"\n'
        '[[stages]]\ntype = "interpolate"\nmultiplier = 2\n',
        ("stage 2 (interpolate)", "takes videos but stage 1 (txt2img) gives images"),
        id="interpolate-after-images",
    ),
    pytest.param(
        '[inputs]\nprompts = ["fox"]\nvideos = ["c60.mp4"]\n'
        '[[stages]]\ntype = "txt2img"\nmodel = "x"\n',
        ("'inputs.videos'", "stage 1 (txt2img) takes prompts, not videos"),
        id="txt2img-fed-videos",
    ),
    pytest.param(
        interpolate("c60.mp4", multiplier=2)
        .replace('["c60.mp4"]', '["c60.mp4", "c2997.mp4"]')
        .replace("multiplier = 2", "fps = 120"),
        ("'fps'", "c2997.mp4's 29.97 fps"),
        id="fps-fits-one-clip-of-two",
    ),
]


@pytest.mark.parametrize(("text", "words"), BAD)
def test_bad_video_input_is_refused_and_nothing_is_stored(
    bare: Home, clips: Clips, text: str, words: tuple[str, ...]
) -> None:
    refused(bare, clips, text, *words)


def test_a_clip_longer_than_max_video_frames_is_refused(bare: Home, clips: Clips) -> None:
    clip(clips.folder / "long.mp4", 13, Fraction(25))
    refused(
        bare,
        clips,
        interpolate("long.mp4", multiplier=2),
        "inputs.videos",
        "long.mp4",
        "more than 12 frames",
        "max_video_frames",
    )


def test_good_clips_pass_a_dry_run_with_exact_rates(bare: Home, clips: Clips) -> None:
    """60 → 120 via fps, 29.97 → 59.94 as a decimal and as a fraction, a variable-rate
    clip (read at 24 fps), all accepted; the dry run counts the videos."""
    for text in (
        interpolate(fps=120),
        interpolate("c2997.mp4", fps=59.94),
        interpolate("c2997.mp4", fps="60000/1001"),
        interpolate("vfr.mp4", fps=48),
    ):
        path = clips.folder / "ok.toml"
        path.write_text(text)
        proc = bare.cli("run", str(path), "--dry-run")
        assert proc.returncode == 0, proc.stderr
        assert "1 video → 1 interpolated" in proc.stdout


def test_the_rate_an_i2v_stage_makes_is_checked_before_anything_runs(
    home: Home, clips: Clips
) -> None:
    """An `interpolate` after `i2v` is held against the i2v stage's `fps`."""
    Image.new("RGB", (64, 64), "blue").save(clips.folder / "start.png")
    head = (
        '[inputs]\nimages = ["start.png"]\n[[stages]]\ntype = "i2v"\nmodel = "demo-svd"\n'
        'frames = 3\nsteps = 2\nfps = 8\n[[stages]]\ntype = "interpolate"\n'
    )
    refused(
        home,
        clips,
        head + "fps = 20\n",
        "stage 2 (interpolate)",
        "'fps'",
        "20 fps is not an integer multiple of stage 1 (i2v)'s 8 fps",
        "16 or 24",
    )
    path = clips.folder / "chain.toml"
    path.write_text(head + "fps = 24\n")
    proc = home.cli("run", str(path), "--dry-run")
    assert proc.returncode == 0, proc.stderr
