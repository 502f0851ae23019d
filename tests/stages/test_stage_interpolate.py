"""The `interpolate` stage through the real CLI, engine host and worker.

One data directory serves the module: tiny clips (64×48, 8–10 frames) at 29.97, 60,
25 fps with audio, and a variable-rate one, plus `examples/interpolate-clip.toml`
(real footage), are queued, then one `medialab serve` runs them all. The videos
are read back with PyAV: codec, the exact rational rate, frame count, duration,
audio; and the gallery, show and rerun see them as videos.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import EXAMPLES, Home, query, run_status, stop_engine_host, wait_for
from medialab_tui.store.videos import probe_video, read_frames
from videoclips import audio_only, clip, variable_rate

pytestmark = pytest.mark.slow

VFR_TIMES = [0, 33, 66, 140, 173, 250, 283, 316, 400, 433]


def pipeline(video: Path, **keys: object) -> str:
    lines = "\n".join(f"{k} = {json.dumps(v)}" for k, v in keys.items())
    return f'[inputs]\nvideos = ["{video}"]\n[[stages]]\ntype = "interpolate"\n{lines}\n'


@dataclass
class Bench:
    home: Home
    clips: dict[str, Path]
    runs: dict[str, int]
    host: subprocess.Popen[str]

    def artifact(self, name: str) -> dict[str, Any]:
        """The one output of run `name`, as `show --json` prints it."""
        rows = query(self.home, "SELECT id FROM artifact WHERE run_id=?", self.runs[name])
        assert len(rows) == 1, rows
        shown = self.home.json("show", f"a{rows[0][0]}")
        assert isinstance(shown, dict)
        return shown


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Any:
    folder = tmp_path_factory.mktemp("interpolate")
    root = folder / "home"
    root.mkdir(mode=0o700)
    (root / "config.toml").write_text("threads = 1\n")
    home = Home(root)
    tone = audio_only(folder / "tone.m4a")
    clips = {
        "ntsc": clip(folder / "c2997.mp4", 10, Fraction(30000, 1001)),
        "fps120": clip(folder / "c60.mp4", 10, Fraction(60)),
        "audio": clip(folder / "c25a.mp4", 8, Fraction(25), audio_from=tone),
        "vfr": variable_rate(folder / "vfr.mp4", VFR_TIMES),
    }
    sources = {
        "ntsc": pipeline(clips["ntsc"], multiplier=2),
        "fps120": pipeline(clips["fps120"], fps=120),
        "audio": pipeline(clips["audio"], fps=50),
        "vfr": pipeline(clips["vfr"], multiplier=2),
    }
    runs = {}
    for name, text in sources.items():
        path = folder / f"{name}.toml"
        path.write_text(text)
        proc = home.cli("run", str(path), "--no-wait", "--no-start", "--json", check=True)
        runs[name] = int(json.loads(proc.stdout)["run_id"].removeprefix("r"))
    proc = home.cli(
        "run", str(EXAMPLES / "interpolate-clip.toml"), "--no-wait", "--no-start", "--json"
    )
    assert proc.returncode == 0, proc.stderr
    runs["example"] = int(json.loads(proc.stdout)["run_id"].removeprefix("r"))
    host = home.spawn("serve")
    try:
        for name, run_id in runs.items():

            def ended(r: int = run_id) -> bool:
                """every interpolate run to end"""
                return run_status(home, r) in ("succeeded", "failed", "cancelled")

            wait_for(ended, timeout=240)
            error = query(home, "SELECT error FROM run WHERE id=?", run_id)[0][0]
            assert run_status(home, run_id) == "succeeded", (name, error)
        yield Bench(home, clips, runs, host)
    finally:
        stop_engine_host(root)
        if host.poll() is None:
            host.kill()


def test_29_97_doubled_is_exactly_60000_over_1001(bench: Bench) -> None:
    shown = bench.artifact("ntsc")
    info = probe_video(Path(shown["path"]))
    assert info.codec == "h264"
    assert info.fps == Fraction(60000, 1001)
    assert info.frames == 20
    assert not info.variable_rate
    # The duration is kept exactly: 10 frames at 29.97 fps, 20 at 59.94.
    assert Fraction(info.frames) / info.fps == Fraction(10) / Fraction(30000, 1001)
    assert shown["fps_exact"] == "60000/1001" and shown["frames"] == 20
    assert info.meta()["source_fps_exact"] == "30000/1001"
    import av

    with av.open(shown["path"]) as container:
        assert container.streams.video[0].codec_context.pix_fmt == "yuv420p"


def test_60_to_120_by_fps_keeps_the_source_frames_and_holds_the_last(bench: Bench) -> None:
    shown = bench.artifact("fps120")
    path = Path(shown["path"])
    info = probe_video(path)
    assert info.fps == Fraction(120) and info.frames == 20
    out = [frame.astype(np.int16) for _, frame in read_frames(path)]
    source = [frame.astype(np.int16) for _, frame in read_frames(bench.clips["fps120"])]

    def differs(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.mean(np.abs(a - b)))

    # Source frame k is output frame 2k; the frame between moves the bar half way.
    for k in range(len(source)):
        assert differs(out[2 * k], source[k]) < 3.0, k
    assert differs(out[1], source[0]) > 1.0 and differs(out[1], source[1]) > 1.0
    # The last source frame has nothing after it: it is held for its two frames.
    assert differs(out[-1], out[-2]) < 1.0
    assert info.meta()["last_frame"] == "held"


def test_progress_counts_frame_pairs(bench: Bench) -> None:
    rows = query(
        bench.home, "SELECT step, total_steps FROM job WHERE run_id=?", bench.runs["fps120"]
    )
    assert rows == [(9, 9)]  # 10 frames: 9 pairs


def test_variable_rate_input_is_resampled_to_a_constant_rate(bench: Bench) -> None:
    source = probe_video(bench.clips["vfr"])
    assert source.variable_rate
    info = probe_video(Path(bench.artifact("vfr")["path"]))
    # Its average rate (about 24.08 fps) is read as 24 fps: 0.433 s → 11 frames.
    assert info.fps == Fraction(48)
    assert info.frames == 2 * (round(Fraction(433, 1000) * 24) + 1)
    assert not info.variable_rate
    assert info.meta()["resampled"] is True


def test_audio_track_is_copied_and_the_input_is_untouched(bench: Bench) -> None:
    original = bench.clips["audio"].read_bytes()
    shown = bench.artifact("audio")
    info = probe_video(Path(shown["path"]))
    assert info.has_audio
    assert info.fps == Fraction(50) and info.frames == 16
    assert bench.clips["audio"].read_bytes() == original
    stored = Path(info.meta()["source_video"])
    assert stored.parent == bench.home.root / "inputs"
    assert stored.read_bytes() == original


def test_gallery_lists_videos_with_their_rate_frames_and_size(bench: Bench) -> None:
    videos = bench.home.json("gallery", "--kind", "video")
    assert isinstance(videos, list) and len(videos) == len(bench.runs)
    for entry in videos:
        assert entry["kind"] == "video" and entry["stage"] == "interpolate"
        assert {"fps", "fps_exact", "frames", "width", "height"} <= set(entry)
        assert isinstance(entry["fps"], float) and isinstance(entry["frames"], int)
    ntsc = [v for v in videos if v["fps_exact"] == "60000/1001"]
    assert len(ntsc) == 1 and ntsc[0]["width"] == 64 and ntsc[0]["height"] == 48
    assert abs(ntsc[0]["fps"] - 59.94) < 0.001
    assert bench.home.json("gallery", "--kind", "image") == []
    shown = bench.home.cli("show", ntsc[0]["id"], check=True).stdout
    assert "60000/1001" in shown and "frames" in shown


def test_rerun_of_a_video_makes_the_same_video_again(bench: Bench) -> None:
    """The same frames, decoded: on real footage (x264 does not encode the tiny test
    clips' frames the same way every time)."""
    first = bench.artifact("example")
    proc = bench.home.cli("rerun", first["id"], "--json", timeout=240, check=True)
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["status"] == "succeeded", summary
    [again] = summary["artifacts"]
    a, b = probe_video(Path(first["path"])), probe_video(Path(again))
    assert (b.fps, b.frames, b.width, b.height) == (a.fps, a.frames, a.width, a.height)
    assert b.meta()["params"] == a.meta()["params"]
    assert b.meta()["source_video"] == a.meta()["source_video"]
    frames_a = [f for _, f in read_frames(Path(first["path"]))]
    frames_b = [f for _, f in read_frames(Path(again))]
    diffs = [int(np.abs(x.astype(int) - y).max()) for x, y in zip(frames_a, frames_b, strict=True)]
    assert diffs == [0] * len(diffs), (diffs, first["path"], again)


def test_the_interpolate_clip_example_doubles_real_footage(bench: Bench) -> None:
    source = probe_video(EXAMPLES / "media" / "bunny-320x180-25fps-1s.mp4")
    shown = bench.artifact("example")
    info = probe_video(Path(shown["path"]))
    assert info.codec == "h264"
    assert info.fps == 2 * source.fps == Fraction(50)
    assert info.frames == 2 * source.frames == 50
    assert (info.width, info.height) == (320, 180)
    assert info.has_audio == source.has_audio is True
    assert shown["duration"] == pytest.approx(1.0)


def test_cancel_stops_between_two_frame_pairs(bench: Bench, tmp_path: Path) -> None:
    """A long clip (400 frames: about 16 s of flow on one thread) is cancelled after its
    first pair; the job stops at the next pair and leaves no file behind."""
    from medialab_tui.store.videos import write_video
    from videoclips import moving_bar

    long_clip = tmp_path / "long.mp4"
    write_video(long_clip, moving_bar(400, 320, 240), Fraction(30))
    path = tmp_path / "long.toml"
    path.write_text(pipeline(long_clip, multiplier=2))
    proc = bench.home.cli("run", str(path), "--no-wait", "--json", check=True)
    run_id = int(json.loads(proc.stdout)["run_id"].removeprefix("r"))

    def started() -> bool:
        """the long job to report its first frame pair"""
        rows = query(bench.home, "SELECT step FROM job WHERE run_id=?", run_id)
        return bool(rows) and rows[0][0] >= 1

    wait_for(started, timeout=120)
    bench.home.cli("cancel", f"r{run_id}", check=True)

    def stopped() -> bool:
        """the cancelled job to stop"""
        rows = query(bench.home, "SELECT status FROM job WHERE run_id=?", run_id)
        return rows[0][0] == "cancelled"

    wait_for(stopped, timeout=60)
    [(step, total, job_id)] = query(
        bench.home, "SELECT step, total_steps, id FROM job WHERE run_id=?", run_id
    )
    assert total == 399 and step < total / 2
    assert query(bench.home, "SELECT count(*) FROM artifact WHERE run_id=?", run_id) == [(0,)]
    folder = bench.home.root / "artifacts" / f"r{run_id}" / f"j{job_id}"
    assert not folder.exists() or not any(folder.iterdir())


def test_a_registered_learned_interpolator_runs_as_the_method(home: Home, tmp_path: Path) -> None:
    """`method = "demo-rife"` (the random demo RIFE network) goes through the worker's
    model cache; an image checkpoint as the method is refused at submit."""
    kinds = {m["name"]: m["kind"] for m in home.json("models", "list")}
    assert kinds.get("demo-rife") == "interpolator"
    source = clip(tmp_path / "c24.mp4", 6, Fraction(24))
    path = tmp_path / "learned.toml"
    path.write_text(pipeline(source, multiplier=3, method="demo-rife"))
    proc = home.cli("run", str(path), "--json", timeout=240)
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["status"] == "succeeded", (summary, proc.stderr)
    info = probe_video(Path(summary["artifacts"][0]))
    assert info.fps == Fraction(72) and info.frames == 18
    meta = info.meta()
    assert meta["method"] == "demo-rife" and meta["model"] == "demo-rife"
    assert meta["model_sha256"]

    path.write_text(pipeline(source, multiplier=2, method="demo-sd15"))
    proc = home.cli("run", str(path), "--no-wait", "--no-start")
    assert proc.returncode == 2
    assert "stage 1 (interpolate)" in proc.stderr and "'method'" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_an_interpolated_clip_reads_back_its_own_keys_as_a1111_reads_them(bench: Bench) -> None:
    """A video made from a user's clip (never generated) names only its own stage's keys."""
    from medialab_tui.interop.infotext import parse_infotext
    from medialab_tui.store.videos import read_video_meta

    text = read_video_meta(Path(bench.artifact("ntsc")["path"]))["parameters"]
    info = parse_infotext(text)
    assert (info.prompt, info.negative) == ("", "")
    assert (info.params["Frames"], info.params["FPS"]) == ("20", "60000/1001")
    assert info.params["Version"].startswith("medialab ")
    assert "Steps" not in info.params and "Model" not in info.params
