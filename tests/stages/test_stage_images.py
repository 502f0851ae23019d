"""img2img, refine and blend, and the LoRA and ControlNet options: through the real
`medialab run` and the real worker on the demo models (and the demo LoRA and ControlNet),
plus how LoRA and ControlNet files are recognised and how references are blended."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from conftest import Home, query, submit, txt2img_toml
from medialab_tui.engine.model_files import detect_arch
from medialab_tui.engine.registry import find_model_paths

LORA = 'loras = [{model = "demo-sd15-lora", weight = 0.9}]'
CONTROL = (
    'control = {model = "demo-sd15-controlnet", image = "photo.png", kind = "canny", '
    "low = 50, high = 150}"
)


def write_photo(path: Path, size: tuple[int, int], seed: int) -> Path:
    """A noisy picture with a bright square in it, so canny finds edges."""
    width, height = size
    pixels = np.random.default_rng(seed).integers(0, 160, (height, width, 3), dtype=np.uint8)
    pixels[height // 4 : height // 2, width // 4 : width // 2] = 255
    Image.fromarray(pixels).save(path)
    return path


def run_pipeline(home: Home, name: str, text: str) -> dict[str, Any]:
    proc = home.cli("run", str(home.pipeline(name, text)), "--json", timeout=300)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.splitlines()[-1])
    assert summary["status"] == "succeeded", summary
    return summary


def png_info(path: str | Path) -> tuple[dict[str, Any], str, tuple[int, int]]:
    """The `medialab` chunk, the A1111 `parameters` text and the size of a PNG."""
    with Image.open(path) as im:
        return json.loads(im.info["medialab"]), im.info["parameters"], im.size


def pixels(path: str | Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.int16)


def outputs(home: Home, run_id: int, stage: str) -> list[str]:
    rows = query(
        home, "SELECT path FROM artifact WHERE run_id=? AND stage=? ORDER BY id", run_id, stage
    )
    return [path for (path,) in rows]


def parents(home: Home, path: str) -> list[str]:
    """The paths of the artifacts the lineage table says `path` was made from."""
    rows = query(
        home,
        "SELECT p.path FROM artifactparent ap JOIN artifact a ON a.id = ap.artifact_id "
        "JOIN artifact p ON p.id = ap.parent_id WHERE a.path = ? ORDER BY p.id",
        path,
    )
    return [p for (p,) in rows]


def img2img_toml(extra: str = "", seed: int = 11) -> str:
    return f"""
name = "img2img"
[inputs]
prompts = ["a red fox"]
images = ["photo.png"]
seeds = [{seed}]
[[stages]]
type = "img2img"
model = "demo-sd15"
steps = 4
strength = 0.75
{extra}
"""


# --- one run through every image stage ------------------------------------------


CHAIN = """
name = "chain"
[inputs]
prompts = ["a red fox"]
images = ["photo.png"]
seeds = [5]

[[stages]]
type = "img2img"
model = "demo-sd15"
steps = 4
strength = 0.75
per_input = 3
prompt = "a fox in the snow"
sampler = "euler"

[[stages]]
type = "blend"
model = "demo-sd15"
steps = 4
strength = 0.6
width = 64
height = 64
weights = [1.0, 2.0, 1.0]
per_input = 2

[[stages]]
type = "refine"
model = "demo-sd15"
steps = 4
scale = 1.5
strength = 0.5

[[stages]]
type = "refine"
model = "demo-sdxl"
method = "refiner"
steps = 4
strength = 0.5
"""


@dataclass
class Chain:
    home: Home
    run_id: int
    photo: Path
    photo_bytes: bytes

    def outputs(self, stage: str) -> list[str]:
        return outputs(self.home, self.run_id, stage)

    def stage_outputs(self, index: int) -> list[str]:
        rows = query(
            self.home,
            "SELECT a.path FROM artifact a JOIN job j ON j.id = a.job_id "
            "WHERE a.run_id=? AND j.stage_index=? ORDER BY a.id",
            self.run_id,
            index,
        )
        return [path for (path,) in rows]


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory, demo_models_dir: Path) -> Chain:
    """img2img ×3 → blend of the three ×2 → hires refine → SDXL refiner pass, in one run."""
    root = tmp_path_factory.mktemp("chain") / "home"
    root.mkdir()
    (root / "config.toml").write_text(f'model_roots = ["{demo_models_dir}"]\nthreads = 1\n')
    home = Home(root)
    home.cli("models", "scan", check=True)
    # 66×50 is no multiple of 8: img2img makes 64×48 of it.
    photo = write_photo(root.parent / "photo.png", (66, 50), seed=1)
    photo_bytes = photo.read_bytes()
    summary = run_pipeline(home, "chain", CHAIN)
    run_id = int(summary["run_id"].removeprefix("r"))
    return Chain(home, run_id, photo, photo_bytes)


@pytest.mark.slow
def test_img2img_keeps_the_input_size_and_makes_one_image_per_seed(chain: Chain) -> None:
    made = chain.outputs("img2img")
    assert len(made) == 3
    metas = [png_info(path) for path in made]
    assert [meta["seed"] for meta, _, _ in metas] == [5, 6, 7]
    for meta, parameters, size in metas:
        assert size == (64, 48)
        assert meta["prompt"] == "a fox in the snow"  # the stage's prompt overrides the input's
        assert meta["strength"] == 0.75 and meta["params"]["type"] == "img2img"
        assert meta["steps"] == 4 and meta["model"] == "demo-sd15" and meta["sampler"] == "euler"
        assert "Denoising strength: 0.75" in parameters and "Seed: " in parameters
        # The input was copied into the store; the worker read the copy.
        assert Path(meta["source"]).read_bytes() == chain.photo_bytes
        assert Path(meta["source"]).parent == chain.home.root / "inputs"
    assert not np.array_equal(pixels(made[0]), pixels(made[1]))
    assert chain.photo.read_bytes() == chain.photo_bytes, "an input must never be modified"


@pytest.mark.slow
def test_img2img_progress_counts_only_the_steps_it_runs(chain: Chain) -> None:
    rows = query(
        chain.home,
        "SELECT step, total_steps FROM job WHERE run_id=? AND stage='img2img'",
        chain.run_id,
    )
    # Euler at strength 0.75 of 4 steps runs the last 3 of them, for each of the 3 seeds.
    assert rows == [(9, 9)]


@pytest.mark.slow
def test_blend_is_one_job_whose_outputs_name_all_three_references(chain: Chain) -> None:
    references = chain.outputs("img2img")
    jobs = query(chain.home, "SELECT id FROM job WHERE run_id=? AND stage='blend'", chain.run_id)
    assert len(jobs) == 1
    blended = chain.outputs("blend")
    assert len(blended) == 2
    for path, seed in zip(blended, [5, 6], strict=True):
        meta, parameters, size = png_info(path)
        assert size == (64, 64)
        assert meta["seed"] == seed and meta["strength"] == 0.6
        assert parents(chain.home, path) == references
        assert meta["sources"] == references
        assert meta["weights"] == [0.25, 0.5, 0.25]
        assert len(meta["parents"]) == 3
        assert "Denoising strength: 0.6" in parameters
    assert not np.array_equal(pixels(blended[0]), pixels(blended[1]))


@pytest.mark.slow
def test_img2img_and_blend_outputs_read_back_as_a1111_reads_them(chain: Chain) -> None:
    """Both generate: each names its own steps, seed, size, model and strength."""
    from medialab_tui.interop.infotext import parse_infotext

    for stage, strength in (("img2img", "0.75"), ("blend", "0.6")):
        for path in chain.outputs(stage):
            meta, parameters, size = png_info(path)
            assert parameters.splitlines()[-1].startswith("Steps: ")
            info = parse_infotext(parameters)
            assert info.prompt == meta["prompt"]
            p = info.params
            assert (p["Steps"], p["Seed"]) == ("4", str(meta["seed"]))
            assert p["Size"] == f"{size[0]}x{size[1]}"
            assert (p["Denoising strength"], p["Model"]) == (strength, "demo-sd15")
            assert p["Model hash"] == meta["model_hash"]


@pytest.mark.slow
def test_hires_refine_upscales_by_scale_and_keeps_lineage(chain: Chain) -> None:
    blended = chain.outputs("blend")
    hires = chain.stage_outputs(2)
    assert len(hires) == 2
    for path, parent in zip(hires, blended, strict=True):
        meta, parameters, size = png_info(path)
        assert size == (96, 96)  # 64 × 1.5
        assert parents(chain.home, path) == [parent]
        assert meta["method"] == "hires" and meta["scale"] == 1.5 and meta["strength"] == 0.5
        assert "Hires upscale: 1.5" in parameters and "Denoising strength: 0.5" in parameters


@pytest.mark.slow
def test_refiner_pass_keeps_the_size_and_uses_its_own_model(chain: Chain) -> None:
    hires = chain.stage_outputs(2)
    refined = chain.stage_outputs(3)
    assert len(refined) == 2
    for path, parent in zip(refined, hires, strict=True):
        meta, parameters, size = png_info(path)
        assert size == (96, 96)
        assert parents(chain.home, path) == [parent]
        assert meta["method"] == "refiner" and "scale" not in meta
        assert meta["model"] == "demo-sdxl" and "Refiner: demo-sdxl" in parameters
        assert not np.array_equal(pixels(path), pixels(parent))


# --- LoRA and ControlNet ----------------------------------------------------------


@pytest.mark.slow
def test_lora_and_controlnet_change_the_image_and_the_model_is_clean_after(home: Home) -> None:
    write_photo(home.root.parent / "photo.png", (64, 64), seed=2)
    sha = dict(query(home, "SELECT name, sha256 FROM model WHERE kind IN ('lora', 'controlnet')"))
    plain_text = txt2img_toml(prompts=["a fox"], seeds=[11])
    # Queued first, then one engine (with one worker and its cached model) runs them
    # in order: the last plain run comes after a LoRA and a ControlNet job.
    plain = submit(home, plain_text, "plain")
    with_lora = submit(home, txt2img_toml(prompts=["a fox"], seeds=[11], extra=LORA), "lora")
    controlled = submit(home, txt2img_toml(prompts=["a fox"], seeds=[11], extra=CONTROL), "cn")
    img_plain = submit(home, img2img_toml(), "img-plain")
    img_options = submit(home, img2img_toml(f"{LORA}\n{CONTROL}"), "img-options")
    again = run_pipeline(home, "again", plain_text)

    for run_id in (plain, with_lora, controlled, img_plain, img_options):
        assert query(home, "SELECT status FROM run WHERE id=?", run_id) == [("succeeded",)]
    (first,) = outputs(home, plain, "txt2img")
    (lora_image,) = outputs(home, with_lora, "txt2img")
    (last,) = again["artifacts"]
    assert np.abs(pixels(lora_image) - pixels(first)).mean() > 0.5
    assert np.array_equal(pixels(last), pixels(first)), "the LoRA was left on the cached model"

    meta, parameters, _ = png_info(lora_image)
    assert meta["loras"] == [
        {"name": "demo-sd15-lora", "weight": 0.9, "sha256": sha["demo-sd15-lora"]}
    ]
    assert f'Lora hashes: "demo-sd15-lora: {sha["demo-sd15-lora"][:12]}"' in parameters
    assert "loras" not in png_info(first)[0] and "control" not in png_info(first)[0]

    (controlled_image,) = outputs(home, controlled, "txt2img")
    assert np.abs(pixels(controlled_image) - pixels(first)).mean() > 0.5
    meta, parameters, _ = png_info(controlled_image)
    assert meta["control"]["model"] == "demo-sd15-controlnet" and "loras" not in meta
    assert 'ControlNet 0: "Module: canny' in parameters

    (img_plain_image,) = outputs(home, img_plain, "img2img")
    (img_options_image,) = outputs(home, img_options, "img2img")
    assert np.abs(pixels(img_options_image) - pixels(img_plain_image)).mean() > 0.5
    meta, parameters, size = png_info(img_options_image)
    assert size == (64, 64)
    assert [lora["name"] for lora in meta["loras"]] == ["demo-sd15-lora"]
    control = meta["control"]
    assert control["model"] == "demo-sd15-controlnet" and control["kind"] == "canny"
    assert (control["scale"], control["low"], control["high"]) == (1.0, 50, 150)
    assert control["sha256"] == sha["demo-sd15-controlnet"]
    # The run keeps its own copy of the control image.
    assert Path(control["image"]).parent == home.root / "inputs"
    assert (
        'ControlNet 0: "Module: canny, Model: demo-sd15-controlnet '
        f"[{sha['demo-sd15-controlnet'][:8]}], Weight: 1.0, Threshold A: 50, Threshold B: 150"
        in parameters
    )


# --- mistakes are caught before anything runs -------------------------------------


BLEND_ONE_IMAGE = """
name = "blend"
[inputs]
prompts = ["a fox"]
images = ["photo.png"]
seeds = [1]
[[stages]]
type = "blend"
model = "demo-sd15"
"""


@pytest.mark.slow
@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(
            txt2img_toml(prompts=["a fox"], seeds=[1], model="demo-sdxl", extra=LORA),
            "LoRA 'demo-sd15-lora' is for sd15 models, but the stage's model is sdxl",
            id="lora-for-another-architecture",
        ),
        pytest.param(
            img2img_toml().replace("strength = 0.75", "strength = 1.5"),
            "strength",
            id="strength-above-one",
        ),
        pytest.param(
            img2img_toml('control = {model = "demo-sd15-controlnet"}'),
            "image",
            id="controlnet-without-image",
        ),
        pytest.param(
            img2img_toml(CONTROL.replace('image = "photo.png"', 'image = "missing.png"')),
            "missing.png does not exist",
            id="controlnet-image-missing",
        ),
        pytest.param(BLEND_ONE_IMAGE, "blends two or more images", id="blend-of-one-image"),
    ],
)
def test_bad_options_are_rejected_and_nothing_is_stored(
    home: Home, text: str, message: str
) -> None:
    write_photo(home.root.parent / "photo.png", (64, 64), seed=3)
    proc = home.cli("run", str(home.pipeline("bad", text)), "--json")
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert query(home, "SELECT COUNT(*) FROM run") == [(0,)]
    assert query(home, "SELECT COUNT(*) FROM job") == [(0,)]
    inputs = home.root / "inputs"
    assert not inputs.exists() or not any(inputs.iterdir())


# --- recognising LoRA and ControlNet files -----------------------------------------


def lora_file(path: Path, width: int, metadata: dict[str, str]) -> Path:
    """A LoRA on one cross-attention key projection whose input is `width` wide."""
    from safetensors.numpy import save_file

    layer = "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k"
    tensors = {
        f"{layer}.lora_A.weight": np.zeros((4, width), dtype=np.float16),
        f"{layer}.lora_B.weight": np.zeros((64, 4), dtype=np.float16),
    }
    save_file(tensors, path, metadata={"format": "pt", **metadata})
    return path


@pytest.mark.parametrize(
    ("metadata", "arch"),
    [
        ({"ss_base_model_version": "sdxl_base_v1-0"}, "sdxl"),
        ({"ss_base_model_version": "sd_v1"}, "sd15"),
        ({"modelspec.architecture": "stable-diffusion-xl-v1-base/lora"}, "sdxl"),
        ({"modelspec.architecture": "stable-diffusion-v1/lora"}, "sd15"),
        ({"medialab.arch": "sd15"}, "sd15"),
        ({}, "unknown"),
    ],
)
def test_lora_family_comes_from_its_metadata_when_the_shapes_cannot_tell(
    tmp_path: Path, metadata: dict[str, str], arch: str
) -> None:
    path = lora_file(tmp_path / "style.safetensors", 32, metadata)
    assert detect_arch(path) == ("lora", arch, "safetensors")


def test_lora_shapes_outrank_its_metadata(tmp_path: Path) -> None:
    path = lora_file(tmp_path / "style.safetensors", 768, {"ss_base_model_version": "sdxl_base"})
    assert detect_arch(path) == ("lora", "sd15", "safetensors")


def controlnet_folder(root: Path, config: dict[str, Any]) -> Path:
    root.mkdir(parents=True)
    (root / "config.json").write_text(json.dumps({"_class_name": "ControlNetModel", **config}))
    (root / "diffusion_pytorch_model.safetensors").write_bytes(b"")
    return root


def test_controlnet_folders_are_one_registry_entry_each_with_their_family(tmp_path: Path) -> None:
    sd15 = controlnet_folder(tmp_path / "canny-sd15", {"cross_attention_dim": 768})
    sdxl = controlnet_folder(
        tmp_path / "nested" / "canny-sdxl",
        {"cross_attention_dim": 2048, "addition_embed_type": "text_time"},
    )
    # A folder with some other config.json is looked into, not listed.
    other = tmp_path / "unet"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"_class_name": "UNet2DConditionModel"}))
    inner = lora_file(other / "style.safetensors", 768, {})

    assert find_model_paths(tmp_path) == sorted([sd15, sdxl, inner])
    assert detect_arch(sd15) == ("controlnet", "sd15", "diffusers")
    assert detect_arch(sdxl) == ("controlnet", "sdxl", "diffusers")


# --- blending latents ----------------------------------------------------------------


def test_blended_latents_lean_towards_the_heavier_reference() -> None:
    torch = pytest.importorskip("torch")
    from medialab_tui.engine.worker.generate import blend_latents, slerp

    generator = torch.Generator().manual_seed(0)
    a, b, c = (torch.randn(1, 4, 8, 8, generator=generator) for _ in range(3))
    assert torch.equal(blend_latents([a, b, c], [0.0, 1.0, 0.0]), b)
    assert torch.allclose(blend_latents([a, b], [1.0, 1.0]), slerp(a, b, 0.5))
    assert torch.allclose(slerp(a, b, 0.0), a) and torch.allclose(slerp(a, b, 1.0), b)
    leaning = blend_latents([a, b], [1.0, 3.0])
    assert (leaning - b).norm() < (leaning - a).norm()
