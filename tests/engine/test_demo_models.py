"""The bundled demo models, and loading and running them the way the worker does."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
from PIL import Image

from medialab_tui.engine.demo.adapters import (
    DEMO_SD15_CONTROLNET,
    DEMO_SD15_LORA,
)
from medialab_tui.engine.demo.diffusion import (
    DEMO_SD15,
    DEMO_SD15_SINGLE_FILE,
    DEMO_SDXL,
    write_demo_models,
)
from medialab_tui.engine.demo.flow import (
    DEMO_FLUX,
    DEMO_FLUX_CONTROLNET,
    DEMO_FLUX_LORA,
    DEMO_SD3,
    DEMO_SD3_CONTROLNET,
)
from medialab_tui.engine.demo.interpolator import DEMO_RIFE
from medialab_tui.engine.demo.upscaler import DEMO_ESRGAN
from medialab_tui.engine.demo.video import DEMO_LTX, DEMO_SVD, DEMO_WAN
from medialab_tui.engine.model_files import detect_arch, read_safetensors_header

if TYPE_CHECKING:
    import torch
    from safetensors.torch import load_file

    from medialab_tui.engine.worker.generate import lanczos_upscale, latents_preview, txt2img
    from medialab_tui.engine.worker.loading import (
        SAMPLERS,
        estimate_pipeline_bytes,
        load_image_pipeline,
        set_sampler,
    )


ARCHS = ("sd15", "sdxl")
# The rectified-flow families, loaded for the sampler test.
FLOW_ARCHS = ("flux", "sd3")
FOLDERS = {"sd15": DEMO_SD15, "sdxl": DEMO_SDXL, "flux": DEMO_FLUX, "sd3": DEMO_SD3}
JOB = {"prompt": "a red fox in the snow", "negative": "", "steps": 4, "cfg": 5.0}


class Cancelled(Exception):
    """Raised from on_step to stop a job, as the worker does on a cancel request."""


@pytest.fixture(scope="session", autouse=True)
def worker_side() -> None:
    """torch, diffusers and the worker's modules, imported when these tests run, not
    when the file is collected: every test process collects every file (and pays
    seconds for these imports), one of them runs these tests. Session-wide (it applies
    to this file only), so that the session's pipelines below find them."""
    global torch, load_file, lanczos_upscale, latents_preview, txt2img
    global SAMPLERS, estimate_pipeline_bytes, load_image_pipeline, set_sampler
    torch = pytest.importorskip("torch")
    pytest.importorskip("diffusers")
    from safetensors.torch import load_file

    from medialab_tui.engine.worker.generate import lanczos_upscale, latents_preview, txt2img
    from medialab_tui.engine.worker.loading import (
        SAMPLERS,
        estimate_pipeline_bytes,
        load_image_pipeline,
        set_sampler,
    )


@pytest.fixture(scope="module", autouse=True)
def one_thread(worker_side: None):
    """Bitwise comparisons need a fixed thread count (reductions split by thread)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    write_demo_models(root)
    return root


@pytest.fixture(scope="session")
def pipes(models_dir: Path) -> dict:
    return {
        arch: load_image_pipeline(models_dir / FOLDERS[arch], arch, "cpu", torch.float32)
        for arch in (*ARCHS, *FLOW_ARCHS)
    }


def run(pipe, seeds: list[int], on_step=None, **overrides) -> list[Image.Image]:
    job = {**JOB, "width": 64, "height": 64, **overrides}
    return txt2img(pipe, seeds=seeds, on_step=on_step or (lambda *_: None), **job)


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def all_files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


# --- writing ------------------------------------------------------------------


def test_writes_the_demo_folders_and_files(models_dir: Path) -> None:
    assert sorted(p.name for p in models_dir.iterdir()) == sorted(
        [
            DEMO_SD15,
            DEMO_SDXL,
            DEMO_SD15_SINGLE_FILE,
            DEMO_SD15_LORA,
            DEMO_SD15_CONTROLNET,
            DEMO_SVD,
            DEMO_WAN,
            DEMO_LTX,
            DEMO_FLUX,
            DEMO_SD3,
            DEMO_FLUX_LORA,
            DEMO_FLUX_CONTROLNET,
            DEMO_SD3_CONTROLNET,
            DEMO_RIFE,
            DEMO_ESRGAN,
        ]
    )
    for arch, name in FOLDERS.items():
        marker = json.loads((models_dir / name / "medialab.json").read_text())
        assert marker == {
            "demo": True,
            "arch": arch,
            "note": "random weights: output is abstract noise",
        }
        weights = list((models_dir / name).rglob("*.safetensors"))
        assert weights and not list((models_dir / name).rglob("*.bin"))


def test_second_write_is_byte_identical_and_replaces_incomplete_folders(
    models_dir: Path, tmp_path: Path
) -> None:
    # A folder left half-written under a demo name is rebuilt, not trusted.
    stale = tmp_path / DEMO_SD15
    stale.mkdir()
    (stale / "model_index.json").write_text("{}")

    paths = write_demo_models(tmp_path)

    assert [p.name for p in paths] == [
        DEMO_SD15,
        DEMO_SDXL,
        DEMO_SD15_SINGLE_FILE,
        DEMO_SD15_LORA,
        DEMO_SD15_CONTROLNET,
        DEMO_SVD,
        DEMO_WAN,
        DEMO_LTX,
        DEMO_FLUX,
        DEMO_SD3,
        DEMO_FLUX_LORA,
        DEMO_FLUX_CONTROLNET,
        DEMO_SD3_CONTROLNET,
        DEMO_RIFE,
        DEMO_ESRGAN,
    ]
    assert all_files(tmp_path) == all_files(models_dir)
    assert not list(tmp_path.glob(".*")), "temporary build folders must be cleaned up"


def test_existing_complete_models_are_left_alone(models_dir: Path) -> None:
    before = {p: p.stat().st_mtime_ns for p in models_dir.rglob("*")}
    started = time.perf_counter()
    paths = write_demo_models(models_dir)
    assert time.perf_counter() - started < 1.0
    assert paths == [
        models_dir / DEMO_SD15,
        models_dir / DEMO_SDXL,
        models_dir / DEMO_SD15_SINGLE_FILE,
        models_dir / DEMO_SD15_LORA,
        models_dir / DEMO_SD15_CONTROLNET,
        models_dir / DEMO_SVD,
        models_dir / DEMO_WAN,
        models_dir / DEMO_LTX,
        models_dir / DEMO_FLUX,
        models_dir / DEMO_SD3,
        models_dir / DEMO_FLUX_LORA,
        models_dir / DEMO_FLUX_CONTROLNET,
        models_dir / DEMO_SD3_CONTROLNET,
        models_dir / DEMO_RIFE,
        models_dir / DEMO_ESRGAN,
    ]
    assert {p: p.stat().st_mtime_ns for p in models_dir.rglob("*")} == before


@pytest.mark.parametrize("subfolder", ["demo-sd15/tokenizer", "demo-sdxl/tokenizer_2"])
def test_tokenizer_round_trips_offline(models_dir: Path, subfolder: str) -> None:
    from transformers import CLIPTokenizer

    folder = models_dir / subfolder
    # Both transformers 5's tokenizer.json and transformers 4's BPE files are there.
    assert {"tokenizer.json", "vocab.json", "merges.txt"} <= {p.name for p in folder.iterdir()}
    tokenizer = CLIPTokenizer.from_pretrained(folder, local_files_only=True)
    assert tokenizer.model_max_length == 77
    assert len(tokenizer) == 514
    ids = tokenizer("Fox!").input_ids
    # No merges: one token per byte, lowercased; each word's last byte is
    # word-final. Ids as in CLIP: "!" is 0, word-final ids start at 256.
    clip_id = {c: ord(c) - ord("!") for c in "fox!"}
    word_final = 256
    assert ids == [
        512,
        clip_id["f"],
        clip_id["o"],
        word_final + clip_id["x"],
        word_final + clip_id["!"],
        513,
    ]
    padded = tokenizer("fox", padding="max_length", max_length=77, truncation=True).input_ids
    assert len(padded) == 77


def test_detect_arch_on_demo_models(models_dir: Path) -> None:
    assert detect_arch(models_dir / DEMO_SD15) == ("checkpoint", "sd15", "diffusers")
    assert detect_arch(models_dir / DEMO_SDXL) == ("checkpoint", "sdxl", "diffusers")
    assert detect_arch(models_dir / DEMO_SD15_SINGLE_FILE) == ("checkpoint", "sd15", "safetensors")
    # The demo adapters are too small for their shapes to tell; their metadata does.
    assert detect_arch(models_dir / DEMO_SD15_LORA) == ("lora", "sd15", "safetensors")
    assert detect_arch(models_dir / DEMO_SD15_CONTROLNET) == ("controlnet", "sd15", "diffusers")
    assert detect_arch(models_dir / DEMO_ESRGAN) == ("upscaler", "esrgan", "safetensors")
    assert detect_arch(models_dir / DEMO_FLUX) == ("checkpoint", "flux", "diffusers")
    assert detect_arch(models_dir / DEMO_SD3) == ("checkpoint", "sd3", "diffusers")
    assert detect_arch(models_dir / DEMO_FLUX_LORA) == ("lora", "flux", "safetensors")
    assert detect_arch(models_dir / DEMO_FLUX_CONTROLNET) == ("controlnet", "flux", "diffusers")
    assert detect_arch(models_dir / DEMO_SD3_CONTROLNET) == ("controlnet", "sd3", "diffusers")


# --- generating ---------------------------------------------------------------


@pytest.mark.parametrize("arch", ARCHS)
def test_generates_a_64px_image_in_4_steps(pipes: dict, arch: str) -> None:
    progress: list[tuple[int, int]] = []
    (image,) = run(pipes[arch], [1], on_step=lambda done, total, _: progress.append((done, total)))

    assert image.size == (64, 64) and image.mode == "RGB"
    total = progress[-1][1]
    # PNDM (the SD1.5 default) spends one extra model call warming up (5 calls), but
    # the counter shows the 4 steps asked for: it never goes back, and ends at 4/4.
    assert total == 4
    dones = [done for done, _ in progress]
    assert len(progress) == (5 if arch == "sd15" else 4)
    assert dones == sorted(dones) and dones[0] == 1 and dones[-1] == 4
    assert {t for _, t in progress} == {4}
    assert pixels(image).std() > 1, "random weights still give a non-flat image"


@pytest.mark.parametrize("arch", ARCHS)
def test_seed_gives_the_same_image_alone_or_in_a_batch(pipes: dict, arch: str) -> None:
    pipe = pipes[arch]
    (alone,) = run(pipe, [5])
    (again,) = run(pipe, [5])
    batch = run(pipe, [9, 5, 2])

    assert np.array_equal(pixels(alone), pixels(again))
    assert len(batch) == 3
    # Same starting noise; batched matrix kernels round differently from
    # single-row ones, so pixels may move by a step or two, never more.
    assert np.abs(pixels(batch[1]) - pixels(alone)).max() <= 2
    assert np.abs(pixels(batch[0]) - pixels(alone)).mean() > 5


@pytest.mark.parametrize("arch", ARCHS)
def test_on_step_exception_cancels_cleanly(pipes: dict, arch: str) -> None:
    pipe = pipes[arch]
    (reference,) = run(pipe, [3])
    seen: list[int] = []

    def cancel_at_two(done: int, total: int, latents) -> None:
        seen.append(done)
        assert latents.shape == (1, 4, 32, 32)
        if done == 2:
            raise Cancelled

    with pytest.raises(Cancelled):
        run(pipe, [3], on_step=cancel_at_two)
    assert seen == [1, 2]
    # A cancelled job leaves nothing behind that changes the next one.
    (after,) = run(pipe, [3])
    assert np.array_equal(pixels(after), pixels(reference))


def test_pipeline_files_offer_exactly_the_worker_samplers() -> None:
    from medialab_tui.engine.stages.base import SAMPLERS as OFFERED

    assert set(OFFERED) == set(SAMPLERS)


@pytest.mark.parametrize("arch", (*ARCHS, *FLOW_ARCHS))
def test_every_sampler_of_the_family_runs(pipes: dict, arch: str) -> None:
    from medialab_tui.engine.families import family_of

    pipe = pipes[arch]
    model_scheduler = type(pipe.scheduler)
    family = family_of(arch)
    assert family is not None
    try:
        for name in family.image_rules(arch).samplers:
            scheduler_class = SAMPLERS[name][0]
            set_sampler(pipe, name)
            expected = model_scheduler if scheduler_class is None else scheduler_class
            assert type(pipe.scheduler) is expected
            (image,) = run(pipe, [1], steps=2)
            assert image.size == (64, 64)
    finally:
        set_sampler(pipe, "default")
    assert type(pipe.scheduler) is model_scheduler
    with pytest.raises(ValueError, match="Unknown sampler"):
        set_sampler(pipe, "euler_b")


def test_karras_variant_differs_from_plain(pipes: dict) -> None:
    pipe = pipes["sd15"]
    try:
        set_sampler(pipe, "dpmpp_2m")
        assert not pipe.scheduler.config.use_karras_sigmas
        set_sampler(pipe, "dpmpp_2m_karras")
        assert pipe.scheduler.config.use_karras_sigmas
        # Betas come from the model's own scheduler config.
        assert pipe.scheduler.config.beta_schedule == "scaled_linear"
    finally:
        set_sampler(pipe, "default")


@pytest.mark.parametrize("arch", ARCHS)
def test_estimate_pipeline_bytes_matches_the_weight_files(
    models_dir: Path, pipes: dict, arch: str
) -> None:
    stored = 0
    for weights in (models_dir / FOLDERS[arch]).rglob("*.safetensors"):
        header = read_safetensors_header(weights)
        header.pop("__metadata__", None)
        stored += sum(end - start for start, end in (t["data_offsets"] for t in header.values()))
    estimate = estimate_pipeline_bytes(pipes[arch])
    # Non-persistent buffers (CLIP's position ids) are in memory but not on disk.
    assert stored <= estimate < stored * 1.05


# --- loading errors and the single-file checkpoint ----------------------------


def test_load_rejects_what_it_cannot_load(models_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="sd2"):
        load_image_pipeline(models_dir / DEMO_SD15, "sd2", "cpu", torch.float32)
    with pytest.raises(ValueError, match="model_index.json"):
        load_image_pipeline(tmp_path, "sd15", "cpu", torch.float32)
    pickle_file = tmp_path / "model.ckpt"
    pickle_file.write_bytes(b"not opened")
    with pytest.raises(ValueError, match="neither"):
        load_image_pipeline(pickle_file, "sd15", "cpu", torch.float32)
    with pytest.raises(ValueError, match="config folder"):
        load_image_pipeline(models_dir / DEMO_SD15_SINGLE_FILE, "sd15", "cpu", torch.float32)
    with pytest.raises(FileNotFoundError):
        load_image_pipeline(tmp_path / "gone.safetensors", "sd15", "cpu", torch.float32)


def test_single_file_uses_the_original_sd_layout(models_dir: Path) -> None:
    keys = set(load_file(models_dir / DEMO_SD15_SINGLE_FILE))
    prefixes = {k.split(".")[0] for k in keys}
    assert prefixes == {"model", "first_stage_model", "cond_stage_model"}
    assert "model.diffusion_model.input_blocks.0.0.weight" in keys
    assert "model.diffusion_model.middle_block.1.proj_in.weight" in keys
    assert "first_stage_model.decoder.mid.attn_1.q.weight" in keys
    assert "cond_stage_model.transformer.text_model.embeddings.position_embedding.weight" in keys


@pytest.mark.parametrize("via", ["config_dir", "fallback"])
def test_single_file_loads_to_the_same_pipeline(models_dir: Path, pipes: dict, via: str) -> None:
    folder = models_dir / DEMO_SD15
    if via == "config_dir":
        kwargs = {"config_dir": folder}
    else:
        kwargs = {"fallback_config_dirs": {"sd15": folder}}
    single = load_image_pipeline(
        models_dir / DEMO_SD15_SINGLE_FILE, "sd15", "cpu", torch.float32, **kwargs
    )
    reference = pipes["sd15"]
    for component in ("unet", "vae", "text_encoder"):
        ours = getattr(single, component).state_dict()
        theirs = getattr(reference, component).state_dict()
        assert ours.keys() == theirs.keys()
        assert all(torch.equal(ours[k], theirs[k]) for k in ours), component
    assert single.safety_checker is None
    assert np.array_equal(pixels(run(single, [4])[0]), pixels(run(reference, [4])[0]))


# --- previews and upscaling ---------------------------------------------------


@pytest.mark.parametrize(
    ("arch", "latent_size", "expected"),
    [
        ("sd15", (32, 32), (32, 32)),
        ("sdxl", (128, 96), (48, 64)),
        ("sdxl-refiner", (64, 64), (64, 64)),
    ],
)
def test_latents_preview_is_small_rgb(arch: str, latent_size: tuple, expected: tuple) -> None:
    latents = torch.randn(2, 4, *latent_size, dtype=torch.float16)
    preview = latents_preview(latents, arch)
    assert preview.mode == "RGB"
    assert preview.size == expected  # (width, height)


def test_latents_preview_follows_the_first_latent() -> None:
    latents = torch.zeros(2, 4, 8, 8)
    latents[1] = 3.0
    assert np.asarray(latents_preview(latents, "sd15")).tolist() == [[[127] * 3] * 8] * 8


@pytest.mark.parametrize(("scale", "size"), [(2.0, (128, 96)), (1.5, (96, 72)), (0.33, (21, 16))])
def test_lanczos_upscale_rounds_the_size(scale: float, size: tuple) -> None:
    image = Image.new("RGB", (64, 48), "orange")
    assert lanczos_upscale(image, scale).size == size


def test_lanczos_upscale_rejects_a_non_positive_scale() -> None:
    with pytest.raises(ValueError):
        lanczos_upscale(Image.new("RGB", (8, 8)), 0)
