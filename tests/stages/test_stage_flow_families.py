"""Flux and SD3 (the rectified-flow families) through the real CLI and worker.

One data directory serves the module: every pipeline is queued, then `medialab run`
hosts the engine for the last one, so one worker makes every image. The demo models
are random, so the pictures are noise; what is checked is what each family takes
(sizes in its multiple, its guidance, its samplers, its LoRAs), what the outputs
record, and the sentences at submit.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from test_stage_detail_upscale import faces_image

from conftest import Home, query, settled
from medialab_tui.engine.stages import STAGES

pytestmark = pytest.mark.slow

FLUX, SD3, FLUX_LORA = "demo-flux", "demo-sd3", "demo-flux-lora"
FLUX_CONTROLNET, SD3_CONTROLNET = "demo-flux-controlnet", "demo-sd3-controlnet"


def toml_value(value: Any) -> str:
    """A value as TOML writes it (LoRA lists hold inline tables)."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(value)


def stage(type_: str, **keys: Any) -> str:
    body = {"type": type_, **keys}
    lines = "\n".join(f"{k} = {toml_value(v)}" for k, v in body.items())
    return f"\n[[stages]]\n{lines}\n"


def pipeline(*stages: str, images: list[str] | None = None, negative: str = "") -> str:
    return (
        '[inputs]\nprompts = ["a lighthouse at dusk"]\nseeds = [5]\n'
        f"images = {json.dumps(images or [])}\nnegative = {json.dumps(negative)}\n"
        + "".join(stages)
    )


FLUX_TXT2IMG = stage("txt2img", model=FLUX, steps=2, width=48, height=32)


@dataclass
class Bench:
    home: Home
    runs: dict[str, int]


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory, demo_models_dir: Path) -> Bench:
    root = tmp_path_factory.mktemp("flow") / "home"
    root.mkdir(parents=True)
    (root / "config.toml").write_text(f'model_roots = ["{demo_models_dir}"]\nthreads = 1\n')
    home = Home(root)
    home.cli("models", "scan", check=True)
    # 70×50: no multiple of 16, so image-to-image rounds it to 64×48.
    yy, xx = np.mgrid[0:50, 0:70]
    pattern = np.stack([xx * 3, yy * 5, (xx * yy) % 256], axis=-1).astype(np.uint8)
    odd = root.parent / "odd.png"
    Image.fromarray(pattern).save(odd)
    face = root.parent / "face.png"
    faces_image(face, (256, 256), [(128, 128, 200)])

    sources = {
        # A negative prompt, which Flux reads none of: not an error.
        "flux": pipeline(
            FLUX_TXT2IMG, stage("img2img", model=FLUX, steps=2, guidance=5.0), negative="blurry"
        ),
        "flux-lora": pipeline(
            stage(
                "txt2img",
                model=FLUX,
                steps=2,
                width=48,
                height=32,
                loras=[{"model": FLUX_LORA, "weight": 1.0}],
            )
        ),
        # The same image as "flux" makes first: the LoRA came off again.
        "flux-again": pipeline(FLUX_TXT2IMG, negative="blurry"),
        "flux-odd": pipeline(
            stage("img2img", model=FLUX, steps=2, strength=0.5, sampler="flow_euler_karras"),
            images=[str(odd)],
        ),
        "sd3": pipeline(
            stage("txt2img", model=SD3, steps=2, width=64, height=32),
            stage("img2img", model=SD3, steps=2, sampler="flow_euler_stochastic"),
            stage("refine", model=SD3, steps=4, scale=1.5, strength=0.5),
            negative="blurry",
        ),
        "sd3-odd": pipeline(stage("img2img", model=SD3, steps=2), images=[str(odd)]),
        # The same images as "flux" and "sd3" make first, each with its family's ControlNet.
        "control": pipeline(
            stage(
                "txt2img",
                model=FLUX,
                steps=2,
                width=48,
                height=32,
                control={"model": FLUX_CONTROLNET, "image": str(odd)},
            ),
            stage(
                "img2img",
                model=FLUX,
                steps=2,
                guidance=5.0,
                control={"model": FLUX_CONTROLNET, "image": str(odd)},
            ),
        ),
        "sd3-control": pipeline(
            stage(
                "txt2img",
                model=SD3,
                steps=2,
                width=64,
                height=32,
                control={"model": SD3_CONTROLNET, "image": str(odd), "kind": "none"},
            ),
            negative="blurry",
        ),
        "detail": pipeline(
            stage("detail", model=FLUX, steps=2, strength=0.5, size=64),
            stage("detail", model=SD3, steps=2, strength=0.5, size=64),
            images=[str(face)],
        ),
    }
    runs = {}
    for name, text in list(sources.items())[:-1]:
        proc = home.cli("run", str(home.pipeline(name, text)), "--no-wait", "--json", check=True)
        runs[name] = int(json.loads(proc.stdout)["run_id"].removeprefix("r"))
    name, text = list(sources.items())[-1]
    proc = home.cli("run", str(home.pipeline(name, text)), "--json", timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    runs[name] = int(json.loads(proc.stdout.splitlines()[-1])["run_id"].removeprefix("r"))
    statuses = settled(home, runs)
    assert set(statuses.values()) == {"succeeded"}, statuses
    return Bench(home, runs)


def outputs(bench: Bench, run: str, stage_type: str) -> list[dict[str, Any]]:
    rows = query(
        bench.home,
        "SELECT a.path, a.params FROM artifact a JOIN job j ON j.id = a.job_id "
        "WHERE a.run_id = ? AND j.stage = ? ORDER BY a.id",
        bench.runs[run],
        stage_type,
    )
    return [{"path": Path(p), "meta": json.loads(m)} for p, m in rows]


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.int16)


# --- the families end to end ------------------------------------------------------------


def test_flow_demos_are_registered_with_their_families(bench: Bench) -> None:
    rows = query(
        bench.home,
        "SELECT name, kind, arch FROM model WHERE name IN (?, ?, ?, ?, ?) ORDER BY name",
        FLUX,
        FLUX_LORA,
        SD3,
        FLUX_CONTROLNET,
        SD3_CONTROLNET,
    )
    assert rows == [
        (FLUX, "checkpoint", "flux"),
        (FLUX_CONTROLNET, "controlnet", "flux"),
        (FLUX_LORA, "lora", "flux"),
        (SD3, "checkpoint", "sd3"),
        (SD3_CONTROLNET, "controlnet", "sd3"),
    ]


def test_flux_takes_guidance_not_cfg_and_reads_no_negative(bench: Bench) -> None:
    (first,) = outputs(bench, "flux", "txt2img")
    (second,) = outputs(bench, "flux", "img2img")
    with Image.open(first["path"]) as im:
        assert im.size == (48, 32)
    with Image.open(second["path"]) as im:
        assert im.size == (48, 32)
    # Flux dev's default guidance, then the stage's own; no CFG, no negative prompt.
    assert (first["meta"]["guidance"], first["meta"]["cfg"]) == (3.5, None)
    assert (second["meta"]["guidance"], second["meta"]["cfg"]) == (5.0, None)
    assert first["meta"]["negative"] == ""


def test_flux_lora_changes_the_image_and_comes_off_after_the_job(bench: Bench) -> None:
    (plain,) = outputs(bench, "flux", "txt2img")
    (lora,) = outputs(bench, "flux-lora", "txt2img")
    (again,) = outputs(bench, "flux-again", "txt2img")
    assert lora["meta"]["loras"][0]["name"] == FLUX_LORA
    assert np.abs(pixels(lora["path"]) - pixels(plain["path"])).max() > 0
    assert np.array_equal(pixels(again["path"]), pixels(plain["path"]))


def test_image_to_image_rounds_inputs_to_the_family_multiple(bench: Bench) -> None:
    for run in ("flux-odd", "sd3-odd"):
        (out,) = outputs(bench, run, "img2img")
        with Image.open(out["path"]) as im:
            assert im.size == (64, 48), run
    (flux,) = outputs(bench, "flux-odd", "img2img")
    assert flux["meta"]["sampler"] == "flow_euler_karras"


def test_sd3_chain_uses_cfg_and_its_negative_prompt(bench: Bench) -> None:
    (made,) = outputs(bench, "sd3", "txt2img")
    (changed,) = outputs(bench, "sd3", "img2img")
    (refined,) = outputs(bench, "sd3", "refine")
    # SD3's default CFG (the stage set none), and the negative prompt it reads.
    assert (made["meta"]["cfg"], made["meta"]["negative"]) == (4.5, "blurry")
    assert "guidance" not in made["meta"]
    assert changed["meta"]["sampler"] == "flow_euler_stochastic"
    with Image.open(refined["path"]) as im:
        assert im.size == (96, 48)


def test_controlnets_of_flux_and_sd3_steer_their_families(bench: Bench) -> None:
    (flux_made,) = outputs(bench, "control", "txt2img")
    (sd3_made,) = outputs(bench, "sd3-control", "txt2img")
    (flux_changed,) = outputs(bench, "control", "img2img")
    (flux_plain,) = outputs(bench, "flux", "txt2img")
    (sd3_plain,) = outputs(bench, "sd3", "txt2img")
    assert flux_made["meta"]["control"]["model"] == FLUX_CONTROLNET
    assert sd3_made["meta"]["control"]["model"] == SD3_CONTROLNET
    assert flux_changed["meta"]["control"]["model"] == FLUX_CONTROLNET
    # Same prompt, seed and size as the runs without one: the control image shows.
    assert np.abs(pixels(flux_made["path"]) - pixels(flux_plain["path"])).mean() > 1
    assert np.abs(pixels(sd3_made["path"]) - pixels(sd3_plain["path"])).mean() > 1


def test_detail_inpaints_faces_with_flux_and_sd3(bench: Bench) -> None:
    (flux_pass,) = outputs(bench, "detail", "detail")[:1]
    sd3_pass = outputs(bench, "detail", "detail")[1]
    for out in (flux_pass, sd3_pass):
        assert out["meta"]["regions"], out["meta"]
        # Work sizes are the family's multiple.
        assert all(side % 16 == 0 for side in out["meta"]["regions"][0]["size"])
    assert flux_pass["meta"]["model"] == FLUX and sd3_pass["meta"]["model"] == SD3


# --- defaults and bad input at submit ---------------------------------------------------


def test_unset_keys_take_the_family_defaults() -> None:
    params = STAGES["txt2img"].params
    stage_ = params.model_validate({"type": "txt2img", "model": "x"})
    schnell = stage_.with_family_defaults("flux-schnell")
    dev = stage_.with_family_defaults("flux")
    sd3 = stage_.with_family_defaults("sd3")
    assert (schnell.steps, schnell.guidance) == (4, None)
    assert (dev.steps, dev.guidance) == (28, 3.5)
    assert (sd3.steps, sd3.cfg, sd3.guidance) == (28, 4.5, None)
    given = params.model_validate({"type": "txt2img", "model": "x", "steps": 9, "guidance": 2.0})
    assert (given.with_family_defaults("flux").steps, given.guidance) == (9, 2.0)
    sd15 = stage_.with_family_defaults("sd15")
    assert (sd15.steps, sd15.cfg) == (20, 7.0)


BAD_CASES = [
    ("guidance-sd15", stage("txt2img", model="demo-sd15", guidance=3.0), "takes no distilled"),
    ("guidance-sd3", stage("txt2img", model=SD3, guidance=3.0), "SD3 takes no distilled guidance"),
    ("cfg-flux", stage("txt2img", model=FLUX, cfg=4.0), "Flux dev takes no classifier-free"),
    (
        "sampler-flux",
        stage("txt2img", model=FLUX, sampler="euler_a"),
        "Flux dev does not sample with euler_a; it takes default, flow_euler,",
    ),
    (
        "sampler-sdxl",
        stage("txt2img", model="demo-sdxl", sampler="flow_euler"),
        "SDXL does not sample with flow_euler; it takes default, euler,",
    ),
    (
        "width-flux",
        stage("txt2img", model=FLUX, width=40),
        "multiples of 16, not 40 (try 32 or 48)",
    ),
    ("size-sd3", FLUX_TXT2IMG + stage("detail", model=SD3, size=72), "multiples of 16, not 72"),
    (
        "flux-lora-on-sdxl",
        stage("txt2img", model="demo-sdxl", loras=[{"model": FLUX_LORA}]),
        "LoRA 'demo-flux-lora' is for flux models, but the stage's model is sdxl",
    ),
    (
        "sd15-lora-on-flux",
        stage("txt2img", model=FLUX, loras=[{"model": "demo-sd15-lora"}]),
        "LoRA 'demo-sd15-lora' is for sd15 models, but the stage's model is flux",
    ),
    (
        "sd3-control-img2img",
        FLUX_TXT2IMG
        + stage("img2img", model=SD3, control={"model": SD3_CONTROLNET, "image": "odd.png"}),
        "SD3 takes a ControlNet in txt2img only, not in img2img",
    ),
    (
        "sd15-controlnet-on-flux",
        stage("txt2img", model=FLUX, control={"model": "demo-sd15-controlnet", "image": "x.png"}),
        "ControlNet 'demo-sd15-controlnet' is for sd15 models, but the stage's model is flux",
    ),
    (
        "blend-flux",
        FLUX_TXT2IMG + stage("blend", model=FLUX),
        "'demo-flux' is a flux model; blend runs sd15, sdxl",
    ),
]


def test_bad_flow_input_exits_2_with_one_sentence_and_stores_nothing(bench: Bench) -> None:
    runs_before = query(bench.home, "SELECT count(*) FROM run")
    for ident, text, words in BAD_CASES:
        path = bench.home.pipeline(f"bad-{ident}", pipeline(text))
        proc = bench.home.cli("run", str(path), "--no-wait", "--no-start")
        assert proc.returncode == 2, (ident, proc.stdout, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and words in lines[0] and str(path) in lines[0], (ident, lines)
    assert query(bench.home, "SELECT count(*) FROM run") == runs_before


def test_dry_run_notes_the_ignored_negative_prompt_only_for_flux(bench: Bench) -> None:
    home = bench.home
    flux = home.pipeline("dry-flux", pipeline(FLUX_TXT2IMG, negative="blurry"))
    proc = home.cli("run", str(flux), "--dry-run", "--json", check=True)
    assert json.loads(proc.stdout)["notices"] == [
        "stage 1 (txt2img): Flux dev reads no negative prompt; the negative prompt is ignored"
    ]
    sd3 = home.pipeline("dry-sd3", pipeline(stage("txt2img", model=SD3), negative="blurry"))
    proc = home.cli("run", str(sd3), "--dry-run", "--json", check=True)
    assert json.loads(proc.stdout)["notices"] == []


def test_packed_flux_latents_unpack_to_their_grid() -> None:
    torch = pytest.importorskip("torch")
    from diffusers import FluxPipeline

    from medialab_tui.engine.worker.generate import unpack_tokens

    latents = torch.arange(2 * 16 * 6 * 4, dtype=torch.float32).reshape(2, 16, 6, 4)
    packed = FluxPipeline._pack_latents(latents, 2, 16, 6, 4)
    assert torch.equal(unpack_tokens(packed, (4 * 8, 6 * 8)), latents)
