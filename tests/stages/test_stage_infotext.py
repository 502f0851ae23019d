"""Every output of a chain reads, in A1111's infotext, like the generation it came from:
its prompt, seed, steps, sampler, CFG, size, model and hash, plus its own stage's keys.
Read back with `interop.infotext.parse_infotext`, written from A1111's documented rules."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from conftest import Home, query
from medialab_tui.interop.infotext import parse_hashes, parse_infotext, parse_lora_hashes
from medialab_tui.store.videos import read_video_meta

pytestmark = pytest.mark.slow

PROMPT = 'a "quiet" harbour, at dawn: fog\n富士山の朝 — ünïcode'
NEGATIVE = "people, text: watermark"

CHAIN = f"""
name = "every stage"
[inputs]
prompts = [{json.dumps(PROMPT, ensure_ascii=False)}]
negative = {json.dumps(NEGATIVE)}
seeds = [41]

[[stages]]
type = "txt2img"
model = "demo-sd15"
steps = 3
cfg = 6.5
sampler = "dpmpp_2m_karras"
width = 64
height = 64
loras = [{{model = "demo-sd15-lora", weight = 0.8}}]

[[stages]]
type = "refine"
model = "demo-sd15"
method = "hires"
scale = 1.5
steps = 2
strength = 0.5

[[stages]]
type = "detail"
model = "demo-sd15"
steps = 4
strength = 0.5
size = 64

[[stages]]
type = "upscale"
model = "lanczos"
scale = 2

[[stages]]
type = "i2v"
model = "demo-svd"
frames = 2
steps = 2
width = 64
height = 64
"""


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory, demo_models_dir: Path) -> Home:
    root = tmp_path_factory.mktemp("infotext") / "home"
    root.mkdir()
    (root / "config.toml").write_text(f'model_roots = ["{demo_models_dir}"]\nthreads = 1\n')
    home = Home(root)
    home.cli("models", "scan", check=True)
    proc = home.cli("run", str(home.pipeline("chain", CHAIN)), "--json", timeout=600)
    assert proc.returncode == 0, proc.stderr
    return home


def _sha(home: Home, name: str) -> str:
    return next(m["sha256"] for m in home.json("models", "list") if m["name"] == name)


def _infotext(home: Home, stage: str) -> str:
    (path,) = [p for (p,) in query(home, "SELECT path FROM artifact WHERE stage = ?", stage)]
    if path.endswith(".mp4"):
        return read_video_meta(Path(path))["parameters"]
    with Image.open(path) as im:
        return im.info["parameters"]


@pytest.mark.parametrize("stage", ["txt2img", "refine", "detail", "upscale", "i2v"])
def test_every_output_names_the_generation_it_came_from(chain: Home, stage: str) -> None:
    text = _infotext(chain, stage)
    assert text.splitlines()[-1].startswith("Steps: ")
    info = parse_infotext(text)
    assert (info.prompt, info.negative) == (PROMPT, NEGATIVE)
    p = info.params
    assert (p["Steps"], p["Sampler"], p["Schedule type"], p["CFG scale"]) == (
        "3",
        "DPM++ 2M",
        "Karras",
        "6.5",
    )
    assert (p["Seed"], p["Size"], p["Model"]) == ("41", "64x64", "demo-sd15")
    assert p["Model hash"] == _sha(chain, "demo-sd15")[:10]
    lora = _sha(chain, "demo-sd15-lora")
    assert parse_lora_hashes(p["Lora hashes"]) == {"demo-sd15-lora": lora[:12]}
    assert parse_hashes(p["Hashes"]) == {
        "model": _sha(chain, "demo-sd15")[:10],
        "lora:demo-sd15-lora": lora[:10],
    }
    assert p["Version"].startswith("medialab ")


def test_each_stage_adds_its_own_keys(chain: Home) -> None:
    refine = parse_infotext(_infotext(chain, "refine")).params
    assert (refine["Hires upscale"], refine["Hires steps"], refine["Hires upscaler"]) == (
        "1.5",
        "2",
        "Lanczos",
    )
    assert refine["Denoising strength"] == "0.5"
    detail = parse_infotext(_infotext(chain, "detail")).params
    assert detail["ADetailer denoising strength"] == "0.5" and detail["ADetailer model"]
    upscale = parse_infotext(_infotext(chain, "upscale")).params
    assert (upscale["Postprocess upscale by"], upscale["Postprocess upscaler"]) == (
        "2.0",
        "Lanczos",
    )
    assert "Denoising strength" not in upscale
    video = parse_infotext(_infotext(chain, "i2v")).params
    assert (video["Video model"], video["Frames"]) == ("demo-svd", "2")
