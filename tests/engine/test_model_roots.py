"""A scan of the model roots ends, whatever links, loops and special files they hold.

Real files in a temporary data directory, scanned by the real `medialab models scan`
(each call under a timeout: a scan that loops fails the test instead of hanging it)
and, for the reasons it gives, by `registry.scan` in this process.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from conftest import Home
from medialab_tui.config import DataDir, load_config
from medialab_tui.engine import registry
from medialab_tui.store.db import Store

SCAN_SECONDS = 30
# A loose model: an ESRGAN-style upscaler is told from its keys alone.
UPSCALER_KEYS = {"body.0.weight": (1,), "body.1.weight": (1,)}


def weights(path: Path, keys: dict[str, tuple[int, ...]] = UPSCALER_KEYS) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: np.zeros(shape, dtype=np.float16) for k, shape in keys.items()}, path)
    return path


def diffusers_folder(path: Path) -> Path:
    (path / "unet").mkdir(parents=True)
    (path / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    weights(path / "unet" / "diffusion_pytorch_model.safetensors")
    return path


def scan(home: Home) -> dict:
    proc = home.cli("models", "scan", "--json", timeout=SCAN_SECONDS, check=True)
    return json.loads(proc.stdout)


def listed(home: Home) -> dict[str, dict]:
    models = home.json("models", "list")
    assert isinstance(models, list)
    return {m["path"]: m for m in models}


def scan_here(home: Home) -> registry.ScanResult:
    data = DataDir(home.root).ensure()
    return registry.scan(Store(data.db_path), data, load_config(data))


def allow_outside(home: Home) -> None:
    (home.root / "config.toml").write_text("allow_outside_links = true\n")


@pytest.fixture
def tangled(empty_home: Home, tmp_path: Path) -> tuple[Home, Path, Path]:
    """A model root with two real models, link loops, a self-link, a link to a model
    already listed, and links to files outside the roots (one made here, one the
    system's /etc/passwd). Returns the home, its models folder and the outside folder."""
    models = DataDir(empty_home.root).ensure().models
    weights(models / "upscalers" / "esrgan.safetensors")
    diffusers_folder(models / "sd15")
    (models / "loop_a").mkdir()
    (models / "loop_b").mkdir()
    (models / "loop_a" / "to_b").symlink_to("../loop_b")
    (models / "loop_b" / "to_a").symlink_to("../loop_a")
    (models / "self").symlink_to("self")
    (models / "up").symlink_to(".")
    (models / "to_models").symlink_to(models)
    (models / "sd15-again").symlink_to("sd15")
    (models / "esrgan-again.safetensors").symlink_to("upscalers/esrgan.safetensors")
    outside = tmp_path / "outside"
    weights(outside / "elsewhere.safetensors")
    (models / "elsewhere.safetensors").symlink_to(outside / "elsewhere.safetensors")
    (models / "outside-folder").symlink_to(outside)
    (models / "passwd.safetensors").symlink_to("/etc/passwd")
    return empty_home, models, outside


def test_loops_and_links_register_each_real_model_once(tangled: tuple[Home, Path, Path]) -> None:
    home, models, _ = tangled
    started = time.monotonic()
    result = scan(home)
    assert time.monotonic() - started < SCAN_SECONDS
    assert sorted(result["added"]) == ["esrgan", "sd15"]
    assert sorted(listed(home)) == [
        str(models / "sd15"),
        str(models / "upscalers/esrgan.safetensors"),
    ]
    # A second scan finds the same two, unchanged.
    again = scan(home)
    assert again["added"] == [] and again["removed"] == [] and again["unchanged"] == 2


def test_the_scan_says_why_it_passed_each_link_over(tangled: tuple[Home, Path, Path]) -> None:
    home, models, outside = tangled
    skipped = {Path(s.path).name: s.reason for s in scan_here(home).skipped}
    assert skipped == {
        "to_b": "a link to a folder already scanned",
        "to_a": "a link to a folder already scanned",
        "self": "a link loop",
        "up": "a link to a folder already scanned",
        "to_models": "a link to a folder already scanned",
        "sd15-again": "a link to a folder already scanned",
        "esrgan-again.safetensors": (
            f"the same file as {models / 'upscalers/esrgan.safetensors'}, already listed"
        ),
        "elsewhere.safetensors": (
            f"a link outside the model roots (to {outside / 'elsewhere.safetensors'})"
        ),
        "outside-folder": f"a link outside the model roots (to {outside})",
        "passwd.safetensors": "a link outside the model roots (to /etc/passwd)",
    }


def test_links_out_of_the_roots_are_listed_only_when_the_config_allows(
    tangled: tuple[Home, Path, Path],
) -> None:
    home, models, _ = tangled
    scan(home)
    assert str(models / "elsewhere.safetensors") not in listed(home)
    assert str(models / "passwd.safetensors") not in listed(home)

    allow_outside(home)
    result = scan(home)
    assert sorted(result["added"]) == ["elsewhere", "passwd"]
    now = listed(home)
    assert now[str(models / "elsewhere.safetensors")]["kind"] == "upscaler"
    # Allowed, the system file is read as what it is: not a safetensors file.
    assert now[str(models / "passwd.safetensors")]["kind"] == "broken"
    # The outside folder holds the same file as the link beside it: listed once.
    assert not any("outside-folder" in path for path in now)

    (home.root / "config.toml").write_text("allow_outside_links = false\n")
    assert sorted(scan(home)["removed"]) == ["elsewhere", "passwd"]


@pytest.mark.timeout(SCAN_SECONDS)
@pytest.mark.parametrize("name", ["model.safetensors", "weights.ckpt", "faces.xml"])
def test_a_fifo_in_a_root_is_skipped_without_blocking(empty_home: Home, name: str) -> None:
    models = DataDir(empty_home.root).ensure().models
    weights(models / "real.safetensors")
    os.mkfifo(models / name)
    assert scan(empty_home)["added"] == ["real"]
    assert {Path(s.path).name: s.reason for s in scan_here(empty_home).skipped} == {
        name: "a FIFO, not a regular file"
    }


@pytest.mark.timeout(SCAN_SECONDS)
def test_special_files_inside_a_model_folder_are_never_opened(empty_home: Home) -> None:
    models = DataDir(empty_home.root).ensure().models
    folder = diffusers_folder(models / "sd15")
    os.mkfifo(folder / "unet" / "extra.safetensors")
    (folder / "vae").symlink_to("/dev/zero")
    # A FIFO named like a model index makes no folder a model, and is not read.
    (models / "fake").mkdir()
    os.mkfifo(models / "fake" / "model_index.json")
    assert scan(empty_home)["added"] == ["sd15"]
    reasons = {Path(s.path).name: s.reason for s in scan_here(empty_home).skipped}
    assert reasons["extra.safetensors"] == "a FIFO, not a regular file"
    assert reasons["vae"] == "a link outside the model roots (to /dev/zero)"
    assert "model_index.json" not in reasons


@pytest.mark.timeout(SCAN_SECONDS)
def test_a_device_is_not_hashed_even_when_outside_links_are_allowed(empty_home: Home) -> None:
    models = DataDir(empty_home.root).ensure().models
    (models / "zero.safetensors").symlink_to("/dev/zero")
    allow_outside(empty_home)
    assert scan(empty_home)["added"] == []
    reasons = {Path(s.path).name: s.reason for s in scan_here(empty_home).skipped}
    assert reasons == {"zero.safetensors": "a device, not a regular file"}


@pytest.mark.parametrize(("folders", "listed_"), [(16, True), (17, False)])
def test_folders_deeper_than_the_limit_are_skipped(
    empty_home: Home, folders: int, listed_: bool
) -> None:
    models = DataDir(empty_home.root).ensure().models
    deepest = models.joinpath(*[f"d{i}" for i in range(folders)])
    weights(deepest / "deep.safetensors")
    assert scan(empty_home)["added"] == (["deep"] if listed_ else [])
    if not listed_:
        reasons = {s.path: s.reason for s in scan_here(empty_home).skipped}
        assert reasons == {str(deepest): "more than 16 folders deep"}


def test_a_root_inside_another_root_is_walked_once(empty_home: Home) -> None:
    models = DataDir(empty_home.root).ensure().models
    weights(models / "nested" / "inner.safetensors")
    (empty_home.root / "config.toml").write_text(f'model_roots = ["{models / "nested"}"]\n')
    assert scan(empty_home)["added"] == ["inner"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file")
def test_an_unreadable_file_is_skipped_not_a_crash(empty_home: Home) -> None:
    models = DataDir(empty_home.root).ensure().models
    weights(models / "real.safetensors")
    secret = weights(models / "secret.safetensors")
    secret.chmod(0)
    assert scan(empty_home)["added"] == ["real"]
    reasons = {Path(s.path).name: s.reason for s in scan_here(empty_home).skipped}
    assert reasons == {"secret.safetensors": "cannot be read"}
