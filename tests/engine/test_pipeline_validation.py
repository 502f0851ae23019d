"""Bad pipeline files: exit 2, one sentence naming file/stage/key, nothing stored."""

from __future__ import annotations

import sqlite3
import tomllib
from pathlib import Path

import pytest
from PIL import Image

from medialab_tui.cli import main
from medialab_tui.engine import queue
from medialab_tui.engine.pipeline import parse_pipeline
from medialab_tui.errors import ErrorLoc, InputError
from medialab_tui.store.db import Store

GOOD = """
name = "ok"
[inputs]
prompts = ["a red fox"]
seeds = [1]
[[stages]]
type = "txt2img"
model = "demo-sd15"
steps = 4
width = 64
height = 64
"""

IMG2IMG = """
name = "i2i"
[inputs]
images = ["ref1.png"]
prompts = ["a red fox"]
[[stages]]
type = "img2img"
model = "demo-sd15"
strength = 0.5
"""

BLEND = """
name = "mix"
[inputs]
images = ["ref1.png", "ref2.png"]
[[stages]]
type = "blend"
model = "demo-sd15"
"""

# (case id, file text, words the one-line error must contain)
BAD = [
    ("toml-syntax", 'name = "x\n[[stages]]\ntype = "txt2img"', ["TOML syntax error", "line 1"]),
    ("unknown-top-key", 'colour = "red"\n' + GOOD, ["unknown top-level key 'colour'"]),
    (
        "unknown-stage-type",
        GOOD.replace('type = "txt2img"', 'type = "paint"'),
        ["stage 1", "unknown stage type 'paint'"],
    ),
    ("unknown-stage-key", GOOD + "brightness = 3\n", ["stage 1 (txt2img)", "'brightness'"]),
    ("wrong-type", GOOD.replace("steps = 4", 'steps = "four"'), ["'steps'", "integer"]),
    ("steps-zero", GOOD.replace("steps = 4", "steps = 0"), ["'steps'", "at least 1"]),
    ("steps-too-many", GOOD.replace("steps = 4", "steps = 501"), ["'steps'", "at most 500"]),
    (
        "width-not-multiple-of-8",
        GOOD.replace("width = 64", "width = 100"),
        ["'width'", "multiple of 8"],
    ),
    (
        "height-too-large",
        GOOD.replace("height = 64", "height = 4104"),
        ["'height'", "at most 4096"],
    ),
    ("negative-cfg", GOOD + "cfg = -1.0\n", ["'cfg'", "at least 0"]),
    (
        "count-zero",
        GOOD.replace("seeds = [1]", "seed = 3\ncount = 0"),
        ["'inputs.count'", "at least 1"],
    ),
    ("per-input-zero", GOOD + "per_input = 0\n", ["'per_input'", "at least 1"]),
    ("seed-negative", GOOD.replace("seeds = [1]", "seeds = [-1]"), ["seed -1", "outside"]),
    (
        "seed-too-large",
        GOOD.replace("seeds = [1]", "seeds = [4294967296]"),
        ["seed 4294967296", "outside"],
    ),
    (
        "empty-prompts",
        GOOD.replace('prompts = ["a red fox"]', "prompts = []"),
        ["'inputs.prompts'", "at least one prompt"],
    ),
    (
        "zip-lengths-differ",
        GOOD.replace('name = "ok"', 'name = "ok"\nexpand = "zip"')
        .replace('prompts = ["a red fox"]', 'prompts = ["a", "b", "c"]')
        .replace("seeds = [1]", "seeds = [1, 2]"),
        ["zip", "3 and 2"],
    ),
    (
        "unknown-model",
        GOOD.replace('model = "demo-sd15"', 'model = "no-such-model"'),
        ["stage 1 (txt2img)", "'model'", "unknown model 'no-such-model'"],
    ),
    (
        "missing-model-path",
        GOOD.replace('model = "demo-sd15"', 'model = "/nowhere/x.safetensors"'),
        ["stage 1 (txt2img)", "/nowhere/x.safetensors does not exist"],
    ),
    (
        "input-not-an-image",
        'name = "up"\n[inputs]\nimages = ["notes.png"]\n[[stages]]\ntype = "upscale"\nscale = 2\n',
        ["'inputs.images'", "notes.png is not an image"],
    ),
    (
        "strength-out-of-range",
        IMG2IMG.replace("strength = 0.5", "strength = 1.5"),
        ["stage 1 (img2img)", "'strength'", "at most 1"],
    ),
    (
        "controlnet-without-image",
        GOOD + 'control = {model = "demo-sd15-controlnet"}\n',
        ["stage 1 (txt2img)", "'control.image'", "is required"],
    ),
    (
        "control-kind-unknown",
        GOOD + 'control = {model = "c", image = "ref1.png", kind = "pose"}\n',
        ["'control.kind'", "canny"],
    ),
    (
        "blend-one-image",
        BLEND.replace('images = ["ref1.png", "ref2.png"]', 'images = ["ref1.png"]'),
        ["stage 1 (blend)", "two or more images", "inputs.images lists 1"],
    ),
    (
        "blend-after-one-output",
        GOOD + '\n[[stages]]\ntype = "blend"\nmodel = "demo-sd15"\n',
        ["stage 2 (blend)", "two or more images", "the stage before makes 1"],
    ),
    (
        "blend-weights-count",
        BLEND + "weights = [1.0, 2.0, 3.0]\n",
        ["stage 1 (blend)", "'weights'", "3 values for 2 images"],
    ),
    (
        "enhance-set-unknown",
        'name = "p"\n[inputs]\nprompts = ["x"]\n[[stages]]\ntype = "prompt_enhance"\n'
        'sets = ["hats"]\n',
        ["stage 1 (prompt_enhance)", "'sets[0]'"],
    ),
    (
        "stage-kinds-mismatch",
        GOOD + '\n[[stages]]\ntype = "txt2img"\nmodel = "demo-sd15"\n',
        ["stage 2 (txt2img) takes prompts", "stage 1 (txt2img) gives images"],
    ),
    (
        "refiner-pass-with-sd15",
        IMG2IMG.replace('type = "img2img"', 'type = "refine"\nmethod = "refiner"').replace(
            "strength = 0.5", "strength = 0.3"
        ),
        ["stage 1 (refine)", "'model'", "sd15", 'method = "refiner"'],
    ),
    (
        "prompt-too-long",
        GOOD.replace('prompts = ["a red fox"]', f'prompts = ["{"fox " * 3000}"]'),
        ["'inputs.prompts[0]'", "at most 10000 characters (got 12000)"],
    ),
    (
        "stage-prompt-too-long",
        IMG2IMG + f'prompt = "{"x" * 10001}"\n',
        ["stage 1 (img2img)", "'prompt'", "at most 10000 characters"],
    ),
]


def _runs_in(db: Path) -> int:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT count(*) FROM run").fetchone()[0]
    finally:
        conn.close()


@pytest.mark.parametrize(("text", "words"), [pytest.param(t, w, id=i) for i, t, w in BAD])
def test_bad_pipeline_is_refused_with_one_clear_line(
    home, capsys: pytest.CaptureFixture[str], text: str, words: list[str]
) -> None:
    (home.root.parent / "notes.png").write_text("not really a picture")
    for name in ("ref1.png", "ref2.png"):
        Image.new("RGB", (64, 64), "teal").save(home.root.parent / name)
    path = home.pipeline("bad", text)
    before = _runs_in(home.root / "medialab.db")

    code = main(["--data-dir", str(home.root), "run", str(path)])

    err = capsys.readouterr().err
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert str(path) in lines[0] or "bad.toml" in lines[0]
    for word in words:
        assert word in lines[0], lines[0]
    assert _runs_in(home.root / "medialab.db") == before


def test_good_pipeline_dry_run_prints_the_plan(home, capsys: pytest.CaptureFixture[str]) -> None:
    path = home.pipeline(
        "good", GOOD.replace("seeds = [1]", "seeds = [1, 2, 3]") + "per_input = 2\n"
    )
    code = main(["--data-dir", str(home.root), "--json", "run", str(path), "--dry-run"])
    assert code == 0
    import json

    plan = json.loads(capsys.readouterr().out)
    assert plan["stages"][0]["jobs"] == 3
    assert plan["stages"][0]["outputs"] == 6
    assert plan["stages"][0]["seconds"] > 0
    assert _runs_in(home.root / "medialab.db") == 0


def test_errors_carry_file_stage_and_key_as_data(home) -> None:
    """The sentence is rendered from the location; the builder reads the location."""

    with pytest.raises(InputError) as parsed:
        parse_pipeline(tomllib.loads(GOOD.replace("steps = 4", "steps = 0")), "p.toml")
    assert parsed.value.loc == ErrorLoc(file="p.toml", stage=1, stage_type="txt2img", key="steps")
    assert parsed.value.text == "must be at least 1 (got 0)"
    assert str(parsed.value) == "p.toml: stage 1 (txt2img): key 'steps' must be at least 1 (got 0)"

    lora = GOOD + 'loras = [{model = "demo-sd15-lora"}, {model = "no-such-lora"}]\n'
    pipeline = parse_pipeline(tomllib.loads(lora), "p.toml")
    with pytest.raises(InputError) as prepared:
        queue.prepare(Store(home.root / "medialab.db"), pipeline, "p.toml", home.root)
    assert prepared.value.loc.stage == 1 and prepared.value.loc.key == "loras[1].model"
    assert str(prepared.value).startswith("p.toml: stage 1 (txt2img): key 'loras[1].model': ")
    assert "no-such-lora" in prepared.value.text


def test_dry_run_says_when_the_text_encoder_will_cut_a_prompt_short(
    home, capsys: pytest.CaptureFixture[str]
) -> None:
    long_prompt = ", ".join(f"detail number {i}" for i in range(40))
    path = home.pipeline("long", GOOD.replace('"a red fox"', f'"{long_prompt}"'))
    assert main(["--data-dir", str(home.root), "run", str(path), "--dry-run"]) == 0
    err = capsys.readouterr().err
    assert "stage 1 (txt2img)" in err and "tokens" in err and "reads 75" in err
    short = home.pipeline("short", GOOD)
    assert main(["--data-dir", str(home.root), "run", str(short), "--dry-run"]) == 0
    assert "tokens" not in capsys.readouterr().err
