"""The `detail` stage and model-based `upscale` through the real CLI and worker.

One data directory serves the module: the upscale and eye-detail pipelines are
queued first, then `medialab run` hosts the engine for the two-stage detail
pipeline, so a single worker runs everything (each worker start costs seconds).
The demo models make noise, not faces, so the input faces are drawn here, in
proportions OpenCV's Haar cascades recognise.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

from conftest import Home, query, settled
from medialab_tui.engine.stages.upscale.run import tile_boxes, tile_spans, upscale_tiled

pytestmark = pytest.mark.slow

CASCADE = "haarcascade_frontalface_alt2"
ESRGAN = "demo-esrgan-x4"


# --- drawn inputs ---------------------------------------------------------------


@dataclass(frozen=True)
class Face:
    """Where a drawn face is: its oval's centre and height, its eyes' centres."""

    cx: int
    cy: int
    height: int
    eyes: tuple[tuple[int, int], tuple[int, int]]


def draw_face(canvas: Image.Image, cx: int, cy: int, height: int) -> Face:
    """A frontal cartoon face (skin oval, brows, eyes with irises, nose, mouth),
    blurred a little as a photo would be: enough for the Haar cascades."""
    d = ImageDraw.Draw(canvas)
    fw, fh = height * 0.78, float(height)
    d.ellipse([cx - fw / 2, cy - fh / 2, cx + fw / 2, cy + fh / 2], fill=(224, 180, 150))
    ey = cy - fh * 0.12
    eyes = []
    for side in (-1, 1):
        ex = cx + side * fw * 0.22
        brow_w, brow_h = fw * 0.22, fh * 0.035
        d.rectangle(
            [
                ex - brow_w / 2,
                ey - fh * 0.1 - brow_h / 2,
                ex + brow_w / 2,
                ey - fh * 0.1 + brow_h / 2,
            ],
            fill=(60, 40, 30),
        )
        eye_w, eye_h = fw * 0.22, fh * 0.12
        d.ellipse([ex - eye_w / 2, ey - eye_h / 2, ex + eye_w / 2, ey + eye_h / 2], fill=(250,) * 3)
        r = eye_h * 0.4
        d.ellipse([ex - r, ey - r, ex + r, ey + r], fill=(70, 50, 30))
        d.ellipse([ex - r / 2, ey - r / 2, ex + r / 2, ey + r / 2], fill=(10, 10, 10))
        d.arc(
            [ex - eye_w / 2, ey - eye_h / 2, ex + eye_w / 2, ey + eye_h / 2],
            180,
            360,
            fill=(40, 25, 20),
            width=max(1, height // 80),
        )
        eyes.append((round(ex), round(ey)))
    d.polygon(
        [(cx, ey + fh * 0.02), (cx - fw * 0.07, cy + fh * 0.12), (cx + fw * 0.07, cy + fh * 0.12)],
        fill=(200, 150, 120),
    )
    d.ellipse([cx - fw * 0.18, cy + fh * 0.22, cx + fw * 0.18, cy + fh * 0.3], fill=(150, 60, 60))
    return Face(cx, cy, height, (eyes[0], eyes[1]))


def faces_image(path: Path, size: tuple[int, int], faces: list[tuple[int, int, int]]) -> list[Face]:
    canvas = Image.new("RGB", size, (40, 70, 120))
    drawn = [draw_face(canvas, cx, cy, h) for cx, cy, h in faces]
    canvas.filter(ImageFilter.GaussianBlur(2)).save(path)
    return drawn


def pattern_image(path: Path, width: int, height: int) -> None:
    """Gradients and a checkerboard: edges for an upscaler to keep, no faces."""
    yy, xx = np.mgrid[0:height, 0:width]
    pixels = np.stack(
        [
            xx * 255 // max(1, width - 1),
            yy * 255 // max(1, height - 1),
            ((xx // 8 + yy // 8) % 2) * 200,
        ],
        axis=-1,
    ).astype(np.uint8)
    Image.fromarray(pixels).save(path)


# --- one data directory and one worker for the module -------------------------


def stage_toml(images: list[str], stages: str, prompt: str = "portrait of two people") -> str:
    return f"""
name = "detail-upscale"
[inputs]
prompts = [{json.dumps(prompt)}]
images = {json.dumps(images)}
seed = 7
{stages}
"""


def upscale_stage(scale: int, tile: int, overlap: int = 8) -> str:
    return f"""
[[stages]]
type = "upscale"
model = "{ESRGAN}"
scale = {scale}
tile = {tile}
tile_overlap = {overlap}
"""


def detail_stage(**keys: Any) -> str:
    body = {"model": "demo-sd15", "steps": 4, "strength": 0.5, "size": 64, **keys}
    lines = "\n".join(f"{k} = {json.dumps(v)}" for k, v in body.items())
    return f'\n[[stages]]\ntype = "detail"\n{lines}\n'


@dataclass
class Bench:
    """One data directory in which every pipeline of this module has run."""

    home: Home
    runs: dict[str, int]
    faces: dict[str, list[Face]]
    inputs: Path
    input_digest: dict[str, str]


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory, demo_models_dir: Path) -> Bench:
    root = tmp_path_factory.mktemp("detail-upscale") / "home"
    (root / "models").mkdir(parents=True)
    (root / "config.toml").write_text(f'model_roots = ["{demo_models_dir}"]\nthreads = 1\n')
    # A registered detector: one of OpenCV's own cascades, dropped into the models folder.
    import cv2

    shutil.copy(Path(cv2.data.haarcascades) / f"{CASCADE}.xml", root / "models")
    home = Home(root)
    home.cli("models", "scan", check=True)

    inputs = root.parent / "inputs"
    inputs.mkdir()
    pattern_image(inputs / "pattern.png", 64, 64)
    pattern_image(inputs / "odd.png", 40, 24)
    faces = {
        "one": faces_image(inputs / "one.png", (256, 256), [(128, 128, 200)]),
        "two": faces_image(inputs / "two.png", (448, 256), [(128, 128, 200), (352, 128, 128)]),
    }
    digest = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in inputs.iterdir()}

    sources = {
        "untiled": stage_toml(
            [str(inputs / "pattern.png"), str(inputs / "odd.png")], upscale_stage(4, tile=0)
        ),
        "tiled": stage_toml(
            [str(inputs / "pattern.png"), str(inputs / "odd.png")], upscale_stage(4, tile=32)
        ),
        "x2": stage_toml([str(inputs / "pattern.png")], upscale_stage(2, tile=0)),
        "eyes": stage_toml(
            [str(inputs / "one.png")], detail_stage(target="eyes", prompt="clear bright eyes")
        ),
    }
    runs = {}
    for name, text in sources.items():
        proc = home.cli("run", str(home.pipeline(name, text)), "--no-wait", "--json", check=True)
        runs[name] = int(json.loads(proc.stdout)["run_id"].removeprefix("r"))

    faces_run = stage_toml(
        [str(inputs / "two.png"), str(inputs / "pattern.png")],
        detail_stage(target="face", max_regions=1, prompt="a calm face")
        + detail_stage(target="face", detector=CASCADE, prompt="a smiling face", min_size=64),
    )
    proc = home.cli("run", str(home.pipeline("faces", faces_run)), "--json", timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = json.loads(proc.stdout.splitlines()[-1])
    assert summary["status"] == "succeeded", summary
    runs["faces"] = int(summary["run_id"].removeprefix("r"))
    statuses = settled(home, runs)
    assert set(statuses.values()) == {"succeeded"}, statuses
    return Bench(home, runs, faces, inputs, digest)


@dataclass
class Output:
    id: int
    path: Path
    stage_index: int
    meta: dict[str, Any]
    infotext: str
    image: np.ndarray
    parents: list[int]


def outputs(bench: Bench, run: str) -> list[Output]:
    """The run's artifacts in job order, with their PNG chunks, pixels and parents."""
    rows = query(
        bench.home,
        "SELECT a.id, a.path, j.stage_index FROM artifact a JOIN job j ON j.id = a.job_id "
        "WHERE a.run_id = ? ORDER BY j.id, a.id",
        bench.runs[run],
    )
    found = []
    for ident, path, stage_index in rows:
        with Image.open(path) as im:
            meta = json.loads(im.info["medialab"])
            infotext = im.info["parameters"]
            pixels = np.asarray(im.convert("RGB"), dtype=np.int16)
        parents = [
            p
            for (p,) in query(
                bench.home, "SELECT parent_id FROM artifactparent WHERE artifact_id = ?", ident
            )
        ]
        found.append(Output(ident, Path(path), stage_index, meta, infotext, pixels, parents))
    return found


def pixels_of(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.int16)


def model_hash(bench: Bench, name: str) -> str:
    return query(bench.home, "SELECT sha256 FROM model WHERE name = ?", name)[0][0][:10]


def covers(box: list[int], x: float, y: float) -> bool:
    bx, by, bw, bh = box
    return bx <= x < bx + bw and by <= y < by + bh


def outside_crops(shape: tuple[int, ...], regions: list[dict[str, Any]]) -> np.ndarray:
    keep = np.ones(shape[:2], dtype=bool)
    for region in regions:
        x, y, w, h = region["crop"]
        keep[y : y + h, x : x + w] = False
    return keep


# --- upscale ------------------------------------------------------------------------


def test_demo_esrgan_is_registered_as_an_upscaler(bench: Bench) -> None:
    rows = query(bench.home, "SELECT kind, arch, format FROM model WHERE name = ?", ESRGAN)
    assert rows == [("upscaler", "esrgan", "safetensors")]
    rows = query(bench.home, "SELECT kind, arch, safe FROM model WHERE name = ?", CASCADE)
    assert rows == [("detector", "opencv-cascade", 1)]


def test_esrgan_x4_makes_exactly_four_times_the_size_and_records_the_model(bench: Bench) -> None:
    untiled = outputs(bench, "untiled")
    assert [o.image.shape[:2] for o in untiled] == [(256, 256), (96, 160)]
    sha = model_hash(bench, ESRGAN)
    for out, source in zip(untiled, ["pattern.png", "odd.png"], strict=True):
        assert out.meta["model"] == ESRGAN and out.meta["model_hash"] == sha
        assert out.meta["model_scale"] == 4 and out.meta["upscaler_arch"] == "ESRGAN"
        assert out.meta["tiles"] == 1 and out.meta["scale"] == 4
        # A picture never generated keeps no generation keys; the upscale says its own.
        assert "Postprocess upscale by: 4" in out.infotext
        assert f"Postprocess upscaler: {ESRGAN}" in out.infotext and "Model: " not in out.infotext
        # The demo model carries the picture through (plus a faint texture): its
        # output is close to a Lanczos enlargement, yet not one.
        with Image.open(bench.inputs / source) as im:
            lanczos = np.asarray(
                im.resize(out.image.shape[1::-1], Image.Resampling.LANCZOS), dtype=np.int16
            )
        difference = np.abs(out.image - lanczos).mean()
        assert 0.5 < difference < 12, difference


def test_tiled_upscale_matches_untiled_without_seams(bench: Bench) -> None:
    tiled, untiled = outputs(bench, "tiled"), outputs(bench, "untiled")
    assert [o.meta["tiles"] for o in tiled] == [9, 2]
    assert [o.meta["tile"] for o in tiled] == [32, 32]
    # One progress step per tile (one job per image).
    steps = query(
        bench.home, "SELECT step FROM job WHERE run_id = ? ORDER BY id", bench.runs["tiled"]
    )
    assert steps == [(9,), (2,)]
    for a, b in zip(tiled, untiled, strict=True):
        assert a.image.shape == b.image.shape
        difference = np.abs(a.image - b.image)
        # Tiles see less context at their edges; the ramps spread that over the
        # overlap instead of leaving a line. (Abutting tiles, or equal weights in
        # the overlap, differ by about 1.4 on average and by 90+ at the seams.)
        assert difference.mean() < 0.5, difference.mean()
        assert difference.max() <= 16, difference.max()
        assert not np.array_equal(a.image, b.image), "tiling must really have happened"


def test_x4_model_serves_a_x2_stage(bench: Bench) -> None:
    (out,) = outputs(bench, "x2")
    assert out.image.shape[:2] == (128, 128)
    assert out.meta["scale"] == 2 and out.meta["model_scale"] == 4
    assert "Postprocess upscale by: 2" in out.infotext and "Hires" not in out.infotext


def test_tile_spans_overlap_and_end_flush() -> None:
    assert tile_spans(64, 32, 8) == [(0, 32), (24, 56), (32, 64)]
    assert tile_spans(64, 0, 8) == [(0, 64)]
    assert tile_spans(30, 32, 8) == [(0, 30)]
    # An overlap over half a tile is cut to half a tile.
    assert tile_spans(100, 40, 35) == [(0, 40), (20, 60), (40, 80), (60, 100)]
    covered = np.zeros((50, 70), dtype=int)
    for x0, y0, x1, y1 in tile_boxes(70, 50, 24, 6):
        assert x1 - x0 == 24 and y1 - y0 == 24
        covered[y0:y1, x0:x1] += 1
    assert covered.min() >= 1


def test_tiles_of_a_pointwise_model_blend_to_the_whole_image_result() -> None:
    rng = np.random.default_rng(3)
    pixels = rng.random((45, 70, 3), dtype=np.float32)

    def nearest_x2(piece: np.ndarray) -> np.ndarray:
        return piece.repeat(2, axis=0).repeat(2, axis=1)

    ticks = []
    whole = upscale_tiled(nearest_x2, pixels, 2, 0, 0)
    tiled = upscale_tiled(nearest_x2, pixels, 2, 24, 8, on_tile=lambda: ticks.append(1))
    assert len(ticks) == len(tile_boxes(70, 45, 24, 8)) > 1
    np.testing.assert_allclose(tiled, whole, atol=1e-6)


# --- detail ---------------------------------------------------------------------------


def test_eyes_are_found_and_detailed_inside_their_boxes(bench: Bench) -> None:
    (out,) = outputs(bench, "eyes")
    (face,) = bench.faces["one"]
    source = pixels_of(bench.inputs / "one.png")
    meta = out.meta
    assert meta["target"] == "eyes" and meta["detector"] == "opencv"
    assert meta["detail_prompt"] == "clear bright eyes"
    assert len(meta["boxes"]) == 2
    for eye in face.eyes:
        assert any(covers(box, *eye) for box in meta["boxes"]), (eye, meta["boxes"])
    keep = outside_crops(source.shape, meta["regions"])
    assert np.array_equal(out.image[keep], source[keep])
    for box in meta["boxes"]:
        x, y, w, h = box
        inner = (slice(y + h // 3, y + 2 * h // 3), slice(x + w // 3, x + 2 * w // 3))
        assert np.abs(out.image[inner] - source[inner]).mean() > 5


def test_two_detail_stages_each_inpaint_their_own_faces(bench: Bench) -> None:
    found = outputs(bench, "faces")
    assert len(found) == 4  # two images, two stages
    stage1 = [o for o in found if o.stage_index == 0]
    stage2 = [o for o in found if o.stage_index == 1]
    big, small = bench.faces["two"]
    two = pixels_of(bench.inputs / "two.png")

    # Stage 1: the largest face only (max_regions = 1), by OpenCV's built-in cascade.
    face1 = next(o for o in stage1 if o.meta["boxes"])
    assert face1.parents == [] and face1.meta["detector"] == "opencv"
    assert face1.meta["detail_prompt"] == "a calm face"
    assert face1.meta["prompt"] == "portrait of two people"
    (box,) = face1.meta["boxes"]
    assert covers(box, big.cx, big.cy) and box[3] >= big.height * 0.8
    region = face1.meta["regions"][0]
    assert region["seed"] == 7
    # The padded square is taller than the image, so the crop is cut to 256 px high
    # and inpainted at 64 px on its long side, in multiples of 8.
    assert region["crop"][1] == 0 and region["crop"][3] == 256 and region["crop"][2] > 256
    assert region["size"] == [64, 48]
    keep = outside_crops(two.shape, face1.meta["regions"])
    assert np.array_equal(face1.image[keep], two[keep])
    x, y, w, h = box
    centre = (slice(y + h // 4, y + 3 * h // 4), slice(x + w // 4, x + 3 * w // 4))
    assert np.abs(face1.image[centre] - two[centre]).mean() > 10
    # The small face lies in no blend mask: untouched, bit for bit.
    right = slice(small.cx - small.height // 2, small.cx + small.height // 2)
    assert np.array_equal(face1.image[:, right], two[:, right])
    assert "Denoising strength: 0.5" in face1.infotext
    assert face1.infotext.startswith("portrait of two people\n")

    # Stage 2: the registered cascade finds the small face the first stage left alone.
    face2 = next(o for o in stage2 if o.parents == [face1.id])
    assert face2.meta["detector"] == CASCADE
    assert face2.meta["detector_hash"] == model_hash(bench, CASCADE)
    assert face2.meta["detail_prompt"] == "a smiling face"
    assert any(covers(b, small.cx, small.cy) for b in face2.meta["boxes"])
    keep = outside_crops(two.shape, face2.meta["regions"])
    assert np.array_equal(face2.image[keep], face1.image[keep])
    inner = (slice(small.cy - 20, small.cy + 20), slice(small.cx - 20, small.cx + 20))
    assert np.abs(face2.image[inner] - face1.image[inner]).mean() > 10

    # The inputs are copied into the store and never modified.
    assert {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in bench.inputs.iterdir()
    } == bench.input_digest


def test_an_image_without_faces_comes_out_unchanged_with_no_boxes(bench: Bench) -> None:
    found = outputs(bench, "faces")
    plain = [o for o in found if not o.meta["boxes"] and o.image.shape[:2] == (64, 64)]
    assert len(plain) == 2  # one per detail stage
    first, second = sorted(plain, key=lambda o: o.stage_index)
    assert second.parents == [first.id]
    source = pixels_of(bench.inputs / "pattern.png")
    for out in plain:
        assert out.meta["boxes"] == [] and out.meta["regions"] == []
        assert np.array_equal(out.image, source)
        assert out.path.suffix == ".png" and out.path.with_suffix(".json").exists()


def test_only_opencv_cascades_among_xml_files_are_detectors(tmp_path: Path) -> None:
    import cv2

    from medialab_tui.engine.model_files import detect_arch
    from medialab_tui.engine.registry import find_model_paths

    cascades = Path(cv2.data.haarcascades)
    shutil.copy(cascades / "haarcascade_eye.xml", tmp_path / "eyes.xml")
    # The old Haar format names the classifier itself instead of <cascade>.
    shutil.copy(cascades / "haarcascade_license_plate_rus_16stages.xml", tmp_path / "plates.xml")
    (tmp_path / "calibration.xml").write_text(
        '<?xml version="1.0"?>\n<opencv_storage>\n<camera_matrix type_id="opencv-matrix">'
        "<rows>3</rows></camera_matrix>\n</opencv_storage>\n"
    )
    (tmp_path / "notes.xml").write_text("<notes><note>cascade</note></notes>")

    assert detect_arch(tmp_path / "eyes.xml") == ("detector", "opencv-cascade", "xml")
    assert detect_arch(tmp_path / "plates.xml") == ("detector", "opencv-cascade", "xml")
    assert detect_arch(tmp_path / "calibration.xml") == ("unknown", "unknown", "xml")
    assert detect_arch(tmp_path / "notes.xml") == ("unknown", "unknown", "xml")
    assert [p.name for p in find_model_paths(tmp_path)] == ["eyes.xml", "plates.xml"]


# --- what is refused before anything runs ---------------------------------------------


def refused(bench: Bench, name: str, stages: str) -> str:
    before = query(bench.home, "SELECT count(*) FROM run")[0][0]
    path = bench.home.pipeline(name, stage_toml([str(bench.inputs / "pattern.png")], stages))
    proc = bench.home.cli("run", str(path), "--json")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert query(bench.home, "SELECT count(*) FROM run")[0][0] == before
    return proc.stderr


def test_an_upscaler_given_to_txt2img_is_refused(bench: Bench) -> None:
    text = stage_toml(
        [], f'[[stages]]\ntype = "txt2img"\nmodel = "{ESRGAN}"\nwidth = 64\nheight = 64\n'
    )
    before = query(bench.home, "SELECT count(*) FROM run")[0][0]
    proc = bench.home.cli("run", str(bench.home.pipeline("bad-txt2img", text)), "--json")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "key 'model'" in proc.stderr and "upscaler" in proc.stderr
    assert query(bench.home, "SELECT count(*) FROM run")[0][0] == before


def test_a_checkpoint_given_to_upscale_is_refused(bench: Bench) -> None:
    message = refused(bench, "bad-upscale", '[[stages]]\ntype = "upscale"\nmodel = "demo-sd15"\n')
    assert "key 'model'" in message and "checkpoint" in message


def test_an_unknown_detector_is_refused(bench: Bench) -> None:
    message = refused(bench, "bad-detector", detail_stage(detector="no-such-detector"))
    assert "key 'detector'" in message and "no-such-detector" in message
