"""The `i2v` stage on the three video demo models through the real CLI and worker.

One data directory serves the module: one run per family and a txt2img → i2v chain
are queued, then `medialab run` hosts the engine for the last one, so a single
worker makes every video. The videos are read back with PyAV. The demo models are
random, so the pictures are noise; what is checked is the container (codec, exact
frame rate, frame count, size), the progress over steps and decode chunks, the
seeds, the lineage and the family limits at submit.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from conftest import EXAMPLES, Home, job_row, query, run_status, settled, wait_for
from medialab_tui.cli import main
from medialab_tui.engine.model_files import detect_arch
from medialab_tui.store.videos import probe_video, read_frames

pytestmark = pytest.mark.slow

SVD, WAN, LTX = "demo-svd", "demo-wan-i2v", "demo-ltx-i2v"


def i2v_toml(
    images: list[str], prompt: str | None = "a slow pan", seed: int = 3, **keys: Any
) -> str:
    body = {"type": "i2v", "steps": 2, **keys}
    lines = "\n".join(f"{k} = {json.dumps(v)}" for k, v in body.items())
    prompts = f"prompts = {json.dumps([prompt])}\n" if prompt else ""
    return f"[inputs]\nimages = {json.dumps(images)}\n{prompts}seed = {seed}\n[[stages]]\n{lines}\n"


CHAIN = """
[inputs]
prompts = ["a lighthouse at dusk"]
seeds = [5]
[[stages]]
type = "txt2img"
model = "demo-sd15"
steps = 2
width = 64
height = 64
[[stages]]
type = "i2v"
model = "demo-svd"
frames = 3
steps = 2
fps = 12
"""


@dataclass
class Bench:
    home: Home
    runs: dict[str, int]
    image: Path


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory, demo_models_dir: Path) -> Bench:
    root = tmp_path_factory.mktemp("i2v") / "home"
    root.mkdir(parents=True)
    (root / "config.toml").write_text(f'model_roots = ["{demo_models_dir}"]\nthreads = 1\n')
    home = Home(root)
    home.cli("models", "scan", check=True)
    # 100×72: not a multiple of any family's, so the default size is rounded down.
    yy, xx = np.mgrid[0:72, 0:100]
    pixels = np.stack([xx * 2, yy * 3, (xx * yy) % 256], axis=-1).astype(np.uint8)
    image = root.parent / "input.png"
    Image.fromarray(pixels).save(image)

    sources = {
        "svd": i2v_toml(
            [str(image)],
            prompt=None,
            model=SVD,
            frames=4,
            width=64,
            height=48,
            decode_chunk_size=3,
            motion=40,
            per_input=2,
        ),
        "wan": i2v_toml([str(image)], model=WAN, frames=9),
        "ltx": i2v_toml([str(image)], model=LTX, frames=9, fps=25),
    }
    runs = {}
    for name, text in sources.items():
        proc = home.cli("run", str(home.pipeline(name, text)), "--no-wait", "--json", check=True)
        runs[name] = int(json.loads(proc.stdout)["run_id"].removeprefix("r"))
    proc = home.cli("run", str(home.pipeline("chain", CHAIN)), "--json", timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    runs["chain"] = int(json.loads(proc.stdout.splitlines()[-1])["run_id"].removeprefix("r"))
    statuses = settled(home, runs)
    assert set(statuses.values()) == {"succeeded"}, statuses
    return Bench(home, runs, image)


def videos(bench: Bench, run: str) -> list[dict[str, Any]]:
    rows = query(
        bench.home,
        "SELECT a.id, a.path, a.kind, a.params FROM artifact a JOIN job j ON j.id = a.job_id "
        "WHERE a.run_id = ? AND j.stage = 'i2v' ORDER BY a.id",
        bench.runs[run],
    )
    return [{"id": i, "path": Path(p), "kind": k, "meta": json.loads(m)} for i, p, k, m in rows]


def job_steps(bench: Bench, run: str) -> tuple[int, int]:
    rows = query(
        bench.home,
        "SELECT step, total_steps FROM job WHERE run_id = ? AND stage = 'i2v'",
        bench.runs[run],
    )
    return rows[0]


# --- the families end to end ----------------------------------------------------------


def test_video_demos_are_registered_as_video_models(bench: Bench) -> None:
    rows = query(
        bench.home,
        "SELECT name, kind, arch, format FROM model WHERE name IN (?, ?, ?) ORDER BY name",
        SVD,
        WAN,
        LTX,
    )
    assert rows == [
        (LTX, "video", "ltx", "diffusers"),
        (SVD, "video", "svd", "diffusers"),
        (WAN, "video", "wan", "diffusers"),
    ]
    listed = {m["name"]: m for m in bench.home.json("models", "list")}
    assert {listed[n]["kind"] for n in (SVD, WAN, LTX)} == {"video"}


@pytest.mark.parametrize(
    ("pipeline_class", "arch"),
    [
        ("StableVideoDiffusionPipeline", "svd"),
        ("WanImageToVideoPipeline", "wan"),
        ("LTXImageToVideoPipeline", "ltx"),
        ("LTXConditionPipeline", "ltx"),
        ("LTXPipeline", "ltx"),
    ],
)
def test_video_folders_are_told_apart_by_their_model_index(
    tmp_path: Path, pipeline_class: str, arch: str
) -> None:
    folder = tmp_path / "named-like-an-sd15-checkpoint"
    folder.mkdir()
    (folder / "model_index.json").write_text(json.dumps({"_class_name": pipeline_class}))
    assert detect_arch(folder) == ("video", arch, "diffusers")


@pytest.mark.parametrize(
    ("run", "fps", "frames", "size", "chunks"),
    [
        # SVD: 4 frames decoded 3 at a time; the stage's own size.
        ("svd", Fraction(7), 4, (64, 48), 2),
        # Wan: one decode per latent frame (1 + 8/4); 100×72 rounded down to 16s.
        ("wan", Fraction(16), 9, (96, 64), 3),
        # LTX: 9 frames are three latent frames, one chunk; 100×72 rounded down to 32s.
        ("ltx", Fraction(25), 9, (96, 64), 1),
    ],
)
def test_each_family_makes_h264_videos_at_an_exact_rate(
    bench: Bench, run: str, fps: Fraction, frames: int, size: tuple[int, int], chunks: int
) -> None:
    made = videos(bench, run)
    assert made and all(v["kind"] == "video" for v in made)
    for video in made:
        info = probe_video(video["path"])
        assert info.codec == "h264"
        assert info.fps == fps and isinstance(info.fps, Fraction)
        assert info.frames == frames
        assert (info.width, info.height) == size
        assert not info.variable_rate
        meta = video["meta"]
        assert (meta["fps_exact"], meta["frames"]) == (f"{fps.numerator}/1", frames)
        assert (meta["width"], meta["height"]) == size
        assert meta["decode_chunks"] == chunks
        assert json.loads(info.comment)["model"] == meta["model"]
        assert video["path"].with_suffix(".thumb.png").is_file()
    # Progress ran over every denoising step and then every decode chunk, of every video.
    step, total = job_steps(bench, run)
    assert step == total == len(made) * (2 + chunks)


def test_per_input_videos_follow_the_item_seed(bench: Bench) -> None:
    first, second = videos(bench, "svd")
    assert [first["meta"]["seed"], second["meta"]["seed"]] == [3, 4]
    assert [first["path"].name, second["path"].name] == ["00-s3.mp4", "01-s4.mp4"]
    assert first["meta"]["motion"] == 40 and first["meta"]["noise_aug"] == 0.02
    a = [frame for _, frame in read_frames(first["path"])]
    b = [frame for _, frame in read_frames(second["path"])]
    assert len(a) == len(b) == 4
    assert not np.array_equal(np.stack(a), np.stack(b)), "two seeds must give two videos"


def test_prompted_families_record_their_motion_prompt(bench: Bench) -> None:
    for run, family in (("wan", "Wan"), ("ltx", "LTX-Video")):
        (video,) = videos(bench, run)
        assert video["meta"]["prompt"] == "a slow pan"
        assert video["meta"]["family"] == family
        assert "motion" not in video["meta"]


def test_i2v_after_txt2img_keeps_lineage_seed_and_the_image_size(bench: Bench) -> None:
    (video,) = videos(bench, "chain")
    (image_id,) = query(
        bench.home,
        "SELECT a.id FROM artifact a JOIN job j ON j.id = a.job_id "
        "WHERE a.run_id = ? AND j.stage = 'txt2img'",
        bench.runs["chain"],
    )[0]
    parents = query(
        bench.home, "SELECT parent_id FROM artifactparent WHERE artifact_id = ?", video["id"]
    )
    assert parents == [(image_id,)]
    assert video["meta"]["seed"] == 5
    info = probe_video(video["path"])
    assert (info.width, info.height, info.frames, info.fps) == (64, 64, 3, Fraction(12))


# --- refused at submit ----------------------------------------------------------------


def bad_cases(image: str, clip: Path) -> list[tuple[str, str, str]]:
    """(id, pipeline text, words the one sentence must hold)."""
    txt2img_svd = (
        '[inputs]\nprompts = ["x"]\n[[stages]]\ntype = "txt2img"\nmodel = "demo-svd"\n'
        "width = 64\nheight = 64\n"
    )
    return [
        (
            "wan-frames",
            i2v_toml([image], model=WAN, frames=15),
            "Wan needs 4k+1 frames (…, 13, 17, …), not 15",
        ),
        (
            "ltx-frames",
            i2v_toml([image], model=LTX, frames=13),
            "LTX-Video needs 8k+1 frames (…, 9, 17, …), not 13",
        ),
        ("svd-too-many", i2v_toml([image], model=SVD, frames=65), "at most 64 frames, not 65"),
        ("wan-too-many", i2v_toml([image], model=WAN, frames=125), "Wan makes at most 121 frames"),
        ("frames-zero", i2v_toml([image], model=SVD, frames=0), "'frames' must be at least 1"),
        ("wan-width", i2v_toml([image], model=WAN, width=40), "multiples of 16, not 40"),
        ("ltx-height", i2v_toml([image], model=LTX, height=48), "multiples of 32, not 48"),
        ("svd-fps", i2v_toml([image], model=SVD, fps=30), "6–24 fps, not 30"),
        (
            "svd-prompt",
            i2v_toml([image], prompt=None, model=SVD) + 'prompt = "x"\n',
            "takes no prompt",
        ),
        (
            "wan-motion",
            i2v_toml([image], model=WAN, motion=50),
            "motion is a Stable Video Diffusion key",
        ),
        (
            "image-model",
            i2v_toml([image], model="demo-sd15"),
            "'demo-sd15' is a checkpoint, not a video",
        ),
        ("video-model-txt2img", txt2img_svd, "'demo-svd' is a video, not a checkpoint"),
        (
            "i2v-fed-clips",
            f"[inputs]\nvideos = [{json.dumps(str(clip))}]\n"
            '[[stages]]\ntype = "i2v"\nmodel = "demo-svd"\n',
            "key 'inputs.videos': stage 1 (i2v) takes images, not videos",
        ),
        (
            "i2v-fed-videos",
            i2v_toml([image], model=SVD) + '[[stages]]\ntype = "i2v"\nmodel = "demo-svd"\n',
            "stage 2 (i2v) takes images but stage 1 (i2v) gives videos",
        ),
    ]


def test_bad_i2v_input_exits_2_with_one_sentence_and_stores_nothing(bench: Bench) -> None:
    runs_before = query(bench.home, "SELECT count(*) FROM run")
    clip = videos(bench, "wan")[0]["path"]
    for ident, text, words in bad_cases(str(bench.image), clip):
        path = bench.home.pipeline(f"bad-{ident}", text)
        proc = bench.home.cli("run", str(path), "--no-wait", "--no-start")
        assert proc.returncode == 2, (ident, proc.stdout, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and words in lines[0] and str(path) in lines[0], (ident, lines)
        assert "Traceback" not in proc.stderr
    assert query(bench.home, "SELECT count(*) FROM run") == runs_before


# --- cancel -----------------------------------------------------------------------------


def cancel_steps(home: Home, job_id: int) -> tuple[int, int]:
    events = dict(
        query(
            home,
            "SELECT action, details FROM event WHERE object_id=? AND action IN "
            "('job.cancel_sent', 'job.stopped')",
            job_id,
        )
    )
    return json.loads(events["job.cancel_sent"])["step"], json.loads(events["job.stopped"])["step"]


def test_cancel_during_i2v_stops_within_one_step(bench: Bench) -> None:
    home = bench.home
    text = i2v_toml(
        [str(bench.image)], prompt=None, model=SVD, frames=8, steps=400, width=64, height=64
    )
    proc = home.cli("run", str(home.pipeline("long", text)), "--no-wait", "--json", check=True)
    run_id = int(json.loads(proc.stdout)["run_id"].removeprefix("r"))
    job_id = query(home, "SELECT id FROM job WHERE run_id=?", run_id)[0][0]
    wait_for(lambda: job_row(home, job_id)["step"] >= 3)
    home.cli("cancel", f"j{job_id}", check=True)
    wait_for(lambda: job_row(home, job_id)["status"] == "cancelled", timeout=20)
    sent, stopped = cancel_steps(home, job_id)
    # The worker finishes the step it is in, and no more.
    assert stopped - sent <= 1, (sent, stopped)
    assert stopped < 400
    assert query(home, "SELECT count(*) FROM artifact WHERE run_id=?", run_id) == [(0,)]
    assert not list((home.root / "artifacts" / f"r{run_id}").rglob("*.mp4"))


def test_cancel_during_decode_stops_within_one_chunk(bench: Bench) -> None:
    home = bench.home
    # One step, then 64 decode chunks of one frame each, a tenth of a second apiece.
    text = i2v_toml(
        [str(bench.image)],
        prompt=None,
        model=SVD,
        frames=64,
        steps=1,
        width=96,
        height=96,
        decode_chunk_size=1,
    )
    proc = home.cli("run", str(home.pipeline("decode", text)), "--no-wait", "--json", check=True)
    run_id = int(json.loads(proc.stdout)["run_id"].removeprefix("r"))
    job_id = query(home, "SELECT id FROM job WHERE run_id=?", run_id)[0][0]
    wait_for(lambda: job_row(home, job_id)["step"] >= 3)  # the step and two chunks
    # The command line in this process: a `medialab` process starting on a loaded
    # machine can take longer than the decode has left.
    assert main(["--data-dir", str(home.root), "cancel", f"j{job_id}"]) == 0
    wait_for(lambda: job_row(home, job_id)["status"] == "cancelled", timeout=20)
    sent, stopped = cancel_steps(home, job_id)
    assert stopped - sent <= 1, (sent, stopped)
    assert query(home, "SELECT total_steps FROM job WHERE id=?", job_id) == [(65,)]
    assert stopped < 65
    assert query(home, "SELECT count(*) FROM artifact WHERE run_id=?", run_id) == [(0,)]


def test_dry_run_says_the_seconds_of_video_and_what_one_costs(bench: Bench) -> None:
    home = bench.home
    config = home.root / "config.toml"
    config.write_text(config.read_text() + "price_per_gpu_hour = 2.5\n")
    text = i2v_toml([str(bench.image)], model=WAN, frames=17, per_input=3)
    proc = home.cli("run", str(home.pipeline("cost", text)), "--dry-run", "--json", check=True)
    (stage,) = json.loads(proc.stdout)["stages"]
    # Three videos of 17 frames at Wan's 16 fps.
    assert stage["video_seconds"] == pytest.approx(3 * 17 / 16, abs=1e-3)
    expected = stage["seconds"] / 3600 * 2.5 / stage["video_seconds"]
    assert stage["cost_per_video_second"] == pytest.approx(expected, rel=1e-2)
    proc = home.cli("run", str(home.pipeline("cost", text)), "--dry-run", check=True)
    assert "stage 1 (i2v): 3.188 s of video, about " in proc.stdout
    assert "per video second" in proc.stdout


# --- the example ------------------------------------------------------------------------


def test_image_to_video_example_reviews_the_stills_then_animates_and_interpolates(
    bench: Bench,
) -> None:
    home = bench.home
    proc = home.cli("run", str(EXAMPLES / "image-to-video.toml"), "--no-wait", "--json", check=True)
    run_id = int(json.loads(proc.stdout)["run_id"].removeprefix("r"))
    wait_for(lambda: run_status(home, run_id) == "review", timeout=120)
    stills = [
        i for (i,) in query(home, "SELECT id FROM artifact WHERE run_id=? ORDER BY id", run_id)
    ]
    assert len(stills) == 4  # two prompts × two seeds
    picked = stills[1:3]
    home.cli("approve", f"r{run_id}", "--select", *[f"a{i}" for i in picked], check=True)
    wait_for(lambda: run_status(home, run_id) == "succeeded", timeout=240)

    made = query(
        home,
        "SELECT a.id, j.stage, a.path FROM artifact a JOIN job j ON j.id = a.job_id "
        "WHERE a.run_id=? AND a.kind='video' ORDER BY a.id",
        run_id,
    )
    clips = {
        stage: [(i, Path(p)) for i, s, p in made if s == stage] for stage in ("i2v", "interpolate")
    }
    assert len(clips["i2v"]) == len(clips["interpolate"]) == 2
    for (clip_id, clip), (_, smooth) in zip(clips["i2v"], clips["interpolate"], strict=True):
        (parent,) = query(home, "SELECT parent_id FROM artifactparent WHERE artifact_id=?", clip_id)
        assert parent[0] in picked
        source, doubled = probe_video(clip), probe_video(smooth)
        assert (source.fps, source.frames, source.width) == (Fraction(7), 14, 64)
        assert (doubled.fps, doubled.frames) == (Fraction(14), 28)
        assert doubled.duration == source.duration
