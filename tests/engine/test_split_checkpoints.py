"""Split checkpoints as ComfyUI users keep them: a Flux transformer in
`diffusion_models/`, its text encoders in `text_encoders/` and its VAE in `vae/`,
each registered on its own and put together at load time with the configs and
tokenizers of a registered diffusers folder of the same family.

The split is cut from demo-flux: the transformer in the diffusers layout (diffusers
cannot write Black Forest Labs' layout back; that layout's detection is covered by
the key table in test_family_detection.py), the CLIP in the Hugging Face layout with
its `text_model.` prefix as ComfyUI's clip_l.safetensors has it, the T5 and the VAE
as diffusers saved them. Names are misleading on purpose: the keys decide.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from test_family_detection import write_header_only

from conftest import Home, query, stop_engine_host, txt2img_toml


def load_file(path: Path) -> dict[str, Any]:
    """safetensors' torch reader, imported when a test runs: every test process collects
    this file, and importing torch costs seconds."""
    from safetensors.torch import load_file as load

    return load(path)


def save_file(tensors: dict[str, Any], path: Path, metadata: dict[str, str] | None = None) -> None:
    from safetensors.torch import save_file as save

    save(tensors, path, metadata)


TRANSFORMER = "sdxl_turbo"  # a Flux transformer, whatever its name says


def cut_split(demo_flux: Path, root: Path, *, with_t5: bool = True) -> Path:
    """Save demo-flux's transformer, text encoders and VAE as loose files under `root`."""
    for folder in ("diffusion_models", "text_encoders", "vae"):
        (root / folder).mkdir(parents=True)
    save_file(
        load_file(demo_flux / "transformer" / "diffusion_pytorch_model.safetensors"),
        root / "diffusion_models" / f"{TRANSFORMER}.safetensors",
    )
    clip = load_file(demo_flux / "text_encoder" / "model.safetensors")
    # A demo-sized CLIP has no telling width: it names its arch, as demo adapters do.
    save_file(
        {f"text_model.{k}": v for k, v in clip.items()},
        root / "text_encoders" / "clip_l.safetensors",
        {"medialab.arch": "clip-l"},
    )
    if with_t5:
        save_file(
            load_file(demo_flux / "text_encoder_2" / "model.safetensors"),
            root / "text_encoders" / "t5xxl_fp16.safetensors",
        )
    save_file(
        load_file(demo_flux / "vae" / "diffusion_pytorch_model.safetensors"),
        root / "vae" / "ae.safetensors",
    )
    return root


def make_home(root: Path, demo_models_dir: Path, comfy: Path) -> Home:
    root.mkdir()
    (root / "config.toml").write_text(
        f'model_roots = ["{demo_models_dir}", "{comfy}"]\nthreads = 1\n'
    )
    home = Home(root)
    home.cli("models", "scan", check=True)
    return home


@pytest.fixture(scope="module")
def split_home(tmp_path_factory: pytest.TempPathFactory, demo_models_dir: Path):
    base = tmp_path_factory.mktemp("split")
    comfy = cut_split(demo_models_dir / "demo-flux", base / "comfy")
    home = make_home(base / "home", demo_models_dir, comfy)
    yield home
    stop_engine_host(home.root)


def test_the_parts_are_registered_by_their_keys(split_home: Home) -> None:
    models = {m["name"]: m for m in split_home.json("models", "list")}
    seen = {
        name: (models[name]["kind"], models[name]["arch"])
        for name in (TRANSFORMER, "clip_l", "t5xxl_fp16", "ae")
    }
    assert seen == {
        TRANSFORMER: ("diffusion_model", "flux"),
        "clip_l": ("text_encoder", "clip-l"),
        "t5xxl_fp16": ("text_encoder", "t5"),
        "ae": ("vae", "vae-16ch"),
    }


def generate(home: Home, model: str) -> bytes:
    text = txt2img_toml(prompts=["a lighthouse"], seeds=[5], steps=2, size=32, model=model)
    proc = home.cli("run", str(home.pipeline(model, text)), "--json", timeout=300)
    assert proc.returncode == 0, proc.stderr
    (image,) = json.loads(proc.stdout.splitlines()[-1])["artifacts"]
    with Image.open(image) as im:
        assert im.size == (32, 32)
        assert f"Model: {model}" in im.info["parameters"]
        return im.tobytes()


def test_a_split_transformer_generates_as_its_folder_does(split_home: Home) -> None:
    """The same weights, put together from four files, make the same image, pixel for
    pixel, as the folder they were cut from."""
    assert generate(split_home, TRANSFORMER) == generate(split_home, "demo-flux")


def test_a_split_transformer_without_its_t5_is_refused_naming_it(
    tmp_path: Path, demo_models_dir: Path
) -> None:
    comfy = cut_split(demo_models_dir / "demo-flux", tmp_path / "comfy", with_t5=False)
    home = make_home(tmp_path / "home", demo_models_dir, comfy)
    text = txt2img_toml(prompts=["a lighthouse"], seeds=[5], steps=2, size=32, model=TRANSFORMER)
    proc = home.cli("run", str(home.pipeline("split", text)), "--no-wait", "--no-start", "--json")
    assert proc.returncode == 2, proc.stderr
    assert "T5-XXL text encoder" in proc.stderr and TRANSFORMER in proc.stderr
    assert "text_encoders/" in proc.stderr
    assert query(home, "SELECT count(*) FROM run") == [(0,)]
    assert query(home, "SELECT count(*) FROM job") == [(0,)]


def test_an_sd3_split_loads_the_same_weights_as_its_folder(
    tmp_path: Path, demo_models_dir: Path
) -> None:
    """SD3's three text encoders (two CLIPs with projections, a T5) and its VAE, each
    from its own file, in the worker's loader."""
    import torch

    from medialab_tui.engine.worker.loading import load_image_pipeline

    folder = demo_models_dir / "demo-sd3"
    files = {
        "transformer": "transformer/diffusion_pytorch_model.safetensors",
        "text_encoder": "text_encoder/model.safetensors",
        "text_encoder_2": "text_encoder_2/model.safetensors",
        "text_encoder_3": "text_encoder_3/model.safetensors",
        "vae": "vae/diffusion_pytorch_model.safetensors",
    }
    split = {}
    for component, rel in files.items():
        split[component] = tmp_path / f"{component}.safetensors"
        save_file(load_file(folder / rel), split[component])
    transformer = split.pop("transformer")
    pipe = load_image_pipeline(
        transformer, "sd3", "cpu", torch.float32, config_dir=folder, parts=split
    )
    reference = load_image_pipeline(folder, "sd3", "cpu", torch.float32)
    for component in files:
        ours, theirs = (
            getattr(pipe, component).state_dict(),
            getattr(reference, component).state_dict(),
        )
        assert ours.keys() == theirs.keys(), component
        assert all(torch.equal(ours[k], theirs[k]) for k in ours), component
    # A part that is not what the component needs is refused, not filled in at random.
    wrong = {**split, "text_encoder": split["text_encoder_3"]}
    with pytest.raises(ValueError, match="text_encoder.safetensors|text_encoder_3.safetensors"):
        load_image_pipeline(
            transformer, "sd3", "cpu", torch.float32, config_dir=folder, parts=wrong
        )


def test_an_sd_unet_saved_alone_is_refused_at_submit(tmp_path: Path, demo_models_dir: Path) -> None:
    """Split loading is Flux's and SD3's; an SDXL UNet from `unet/` is listed as what it
    is and refused with a sentence saying so."""
    unet = tmp_path / "comfy" / "unet"
    unet.mkdir(parents=True)
    header = {
        "model.diffusion_model.input_blocks.0.0.weight": [320, 4, 3, 3],
        "model.diffusion_model.input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight": [
            640,
            2048,
        ],
    }
    write_header_only(unet / "flux_unet.safetensors", header)
    home = make_home(tmp_path / "home", demo_models_dir, tmp_path / "comfy")
    row = next(m for m in home.json("models", "list") if m["name"] == "flux_unet")
    assert (row["kind"], row["arch"]) == ("diffusion_model", "sdxl")
    text = txt2img_toml(prompts=["a lighthouse"], seeds=[5], steps=2, size=64, model="flux_unet")
    proc = home.cli("run", str(home.pipeline("unet", text)), "--no-wait", "--no-start", "--json")
    assert proc.returncode == 2, proc.stderr
    assert "flux_unet" in proc.stderr and "Flux, SD3 only" in proc.stderr
    assert query(home, "SELECT count(*) FROM run") == [(0,)]


def test_a_schnell_transformer_takes_a_dev_folders_configs(
    tmp_path: Path, demo_models_dir: Path
) -> None:
    """Flux schnell has no guidance embedding and an unshifted schedule; with only a dev
    folder registered its transformer still loads, the folder's configs set to schnell's."""
    import torch

    from medialab_tui.engine.worker.loading import load_image_pipeline

    folder = demo_models_dir / "demo-flux"
    comfy = cut_split(folder, tmp_path / "comfy")
    transformer = comfy / "diffusion_models" / f"{TRANSFORMER}.safetensors"
    weights = load_file(transformer)
    save_file({k: v for k, v in weights.items() if "guidance_embedder" not in k}, transformer)
    home = make_home(tmp_path / "home", demo_models_dir, comfy)
    row = next(m for m in home.json("models", "list") if m["name"] == TRANSFORMER)
    assert (row["kind"], row["arch"]) == ("diffusion_model", "flux-schnell")
    text = txt2img_toml(prompts=["a lighthouse"], seeds=[5], steps=2, size=32, model=TRANSFORMER)
    dry = home.cli("run", str(home.pipeline("schnell", text)), "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr

    parts = {
        "text_encoder": comfy / "text_encoders" / "clip_l.safetensors",
        "text_encoder_2": comfy / "text_encoders" / "t5xxl_fp16.safetensors",
        "vae": comfy / "vae" / "ae.safetensors",
    }
    pipe = load_image_pipeline(
        transformer, "flux-schnell", "cpu", torch.float32, config_dir=folder, parts=parts
    )
    assert pipe.transformer.config.guidance_embeds is False
    assert pipe.scheduler.config.use_dynamic_shifting is False
    image = pipe(
        "a lighthouse", num_inference_steps=2, width=32, height=32, guidance_scale=0.0
    ).images[0]
    assert image.size == (32, 32)


def test_a_flux_lora_applies_to_a_split_transformer_as_to_its_folder(
    tmp_path: Path, demo_models_dir: Path
) -> None:
    import numpy as np
    import torch

    from medialab_tui.engine.worker.loading import apply_loras, load_image_pipeline, remove_loras

    folder = demo_models_dir / "demo-flux"
    comfy = cut_split(folder, tmp_path / "comfy")
    parts = {
        "text_encoder": comfy / "text_encoders" / "clip_l.safetensors",
        "text_encoder_2": comfy / "text_encoders" / "t5xxl_fp16.safetensors",
        "vae": comfy / "vae" / "ae.safetensors",
    }
    transformer = comfy / "diffusion_models" / f"{TRANSFORMER}.safetensors"
    split = load_image_pipeline(
        transformer, "flux", "cpu", torch.float32, config_dir=folder, parts=parts
    )
    whole = load_image_pipeline(folder, "flux", "cpu", torch.float32)
    lora = demo_models_dir / "demo-flux-lora.safetensors"

    def image(pipe) -> np.ndarray:
        generator = torch.Generator().manual_seed(3)
        out = pipe("a lighthouse", num_inference_steps=2, width=32, height=32, generator=generator)
        return np.asarray(out.images[0])

    plain = image(split)
    for pipe in (split, whole):
        apply_loras(pipe, [(lora, 1.0)])
    with_lora = image(split)
    assert np.array_equal(with_lora, image(whole))
    assert not np.array_equal(with_lora, plain)
    remove_loras(split)
    assert np.array_equal(image(split), plain)


def test_a_real_config_folder_lends_the_parts_not_registered(
    tmp_path: Path, demo_models_dir: Path
) -> None:
    """A real (not demo) diffusers folder of the family is preferred as the config and
    gives the parts no file of their own is registered for."""
    import shutil

    import torch

    from medialab_tui.engine.worker.loading import load_image_pipeline

    comfy = tmp_path / "comfy"
    (comfy / "diffusion_models").mkdir(parents=True)
    transformer = comfy / "diffusion_models" / f"{TRANSFORMER}.safetensors"
    folder = demo_models_dir / "demo-flux"
    save_file(
        load_file(folder / "transformer" / "diffusion_pytorch_model.safetensors"), transformer
    )
    # The same weights without the demo marker stand for a real FLUX.1-dev folder.
    real = comfy / "flux1-dev-diffusers"  # after demo-flux by name
    shutil.copytree(folder, real, ignore=shutil.ignore_patterns("medialab.json"))
    home = make_home(tmp_path / "home", demo_models_dir, comfy)
    text = txt2img_toml(prompts=["a lighthouse"], seeds=[5], steps=2, size=32, model=TRANSFORMER)
    proc = home.cli("run", str(home.pipeline("real", text)), "--no-wait", "--no-start", "--json")
    assert proc.returncode == 0, proc.stderr
    ((document,),) = query(home, "SELECT pipeline FROM run")
    (model,) = json.loads(document)["models"]
    assert Path(model["config_dir"]) == real
    assert model["parts"] == {}

    pipe = load_image_pipeline(transformer, "flux", "cpu", torch.float32, config_dir=real, parts={})
    reference = load_image_pipeline(folder, "flux", "cpu", torch.float32)
    for component in ("transformer", "text_encoder_2", "vae"):
        ours, theirs = (
            getattr(pipe, component).state_dict(),
            getattr(reference, component).state_dict(),
        )
        assert all(torch.equal(ours[k], theirs[k]) for k in theirs), component
