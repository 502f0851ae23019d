"""Model folders shared with ComfyUI and A1111/Forge, read in place; a data directory
that is copied keeps its model names; the registry follows the roots while a host runs.

Every tree is built here from tiny safetensors files (headers and a few zeros), and
read by the real `medialab` commands.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
import sqlite3
import subprocess
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import save_file

from conftest import Home, query, txt2img_toml, wait_for
from medialab_tui.config import DataDir, load_config
from medialab_tui.doctor import describe_roots
from medialab_tui.engine import registry
from medialab_tui.store.db import Store

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"

# Headers a family's file has (no real weights: the keys and shapes decide).
SDXL_LORA = {
    "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight": (
        4,
        2048,
    ),
    "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k.lora_up.weight": (640, 4),
}
SD15_LORA = {
    "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight": (
        4,
        768,
    ),
    "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_up.weight": (320, 4),
}
ESRGAN = {"body.0.weight": (1,), "body.1.weight": (1,)}
SD15_EMBEDDING = {"emb_params": (2, 768)}
# Keys no family has: only the folder can say what it is.
UNKNOWN = {"something.weight": (1,)}


def weights(path: Path, keys: dict[str, tuple[int, ...]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: np.zeros(shape, dtype=np.float16) for k, shape in keys.items()}, path)
    return path


def configure(home: Home, **keys: Any) -> None:
    lines = [f"{key} = {json.dumps([str(v) for v in value])}" for key, value in keys.items()]
    (home.root / "config.toml").write_text("\n".join(lines) + "\n")


def scan(home: Home) -> subprocess.CompletedProcess[str]:
    return home.cli("models", "scan", "--json", timeout=60)


def listed(home: Home) -> dict[str, dict[str, Any]]:
    models = home.json("models", "list")
    assert isinstance(models, list)
    return {m["name"]: m for m in models}


def what(models: dict[str, dict[str, Any]], name: str) -> tuple[str, str]:
    return models[name]["kind"], models[name]["arch"]


@pytest.fixture
def comfyui(tmp_path: Path) -> Path:
    """A ComfyUI install's `extra_model_paths.yaml` and the folders it names: a section
    with a base_path relative to the yaml and a multi-line value, one with an absolute
    base_path, one with none (paths relative to the yaml), and an `is_default` one."""
    comfy = tmp_path / "ComfyUI"
    shared = tmp_path / "shared"
    models = comfy / "models"
    # Misleading names and folders: the keys decide.
    weights(models / "checkpoints" / "sd15_base_checkpoint.safetensors", SDXL_LORA)
    weights(models / "loras" / "style.safetensors", SD15_LORA)
    weights(models / "loras" / "mystery.safetensors", UNKNOWN)
    weights(models / "more_loras" / "second.safetensors", SD15_LORA)
    weights(models / "upscale_models" / "4x_lora_upscaler.safetensors", ESRGAN)
    weights(shared / "embeddings" / "negative.safetensors", SD15_EMBEDDING)
    weights(shared / "ESRGAN" / "same.safetensors", ESRGAN)
    weights(comfy / "beside" / "vae" / "mystery_vae.safetensors", UNKNOWN)
    weights(tmp_path / "preferred" / "same.safetensors", ESRGAN)
    (comfy / "beside" / "embeddings").mkdir()
    (comfy / "beside" / "embeddings" / "old_lora.pt").write_bytes(b"not unpickled")
    yaml_file = comfy / "extra_model_paths.yaml"
    yaml_file.write_text(
        "comfyui:\n"
        "    base_path: ./\n"
        "    checkpoints: models/checkpoints/\n"
        "    loras: |\n"
        "        models/loras\n"
        "        models/more_loras\n"
        "    upscale_models: models/upscale_models\n"
        "    custom_nodes: custom_nodes/\n"
        "other:\n"
        f"    base_path: {shared}\n"
        "    embeddings: embeddings\n"
        "    upscale_models: ESRGAN\n"
        "no_base:\n"
        "    vae: beside/vae\n"
        "    embeddings: beside/embeddings\n"
        "empty:\n"
        "first:\n"
        f"    base_path: {tmp_path / 'preferred'}\n"
        "    is_default: true\n"
        "    upscale_models: .\n"
    )
    return yaml_file


def test_a_comfyui_yaml_is_read_in_place_kinds_and_families_from_keys(
    empty_home: Home, comfyui: Path
) -> None:
    configure(empty_home, comfyui_model_paths=[comfyui])
    proc = scan(empty_home)
    assert proc.returncode == 0, proc.stderr
    models = listed(empty_home)
    # The keys decide, whatever the file is called and whichever folder holds it.
    assert what(models, "sd15_base_checkpoint") == ("lora", "sdxl")
    assert what(models, "style") == ("lora", "sd15")
    assert what(models, "second") == ("lora", "sd15")  # the second line of `loras: |`
    assert what(models, "4x_lora_upscaler") == ("upscaler", "esrgan")
    assert what(models, "negative") == ("embedding", "sd15")
    # Where the keys cannot tell, the folder's key suggests the kind.
    assert what(models, "mystery") == ("lora", "unknown")
    assert what(models, "mystery_vae") == ("vae", "unknown")
    assert models["old_lora"]["kind"] == "embedding" and not models["old_lora"]["safe"]
    # `is_default` comes first: its file gets the plain name, the other its path.
    assert models["same"]["path"] == str(comfyui.parent.parent / "preferred" / "same.safetensors")
    assert any(m["path"].endswith("shared/ESRGAN/same.safetensors") for m in models.values())
    # Read in place: nothing was copied into the data directory.
    comfy = comfyui.parent.parent
    assert all(Path(m["path"]).is_relative_to(comfy) for m in models.values())
    assert not any((empty_home.root / "models").iterdir())
    root = models["style"]["root"]
    assert root == str(comfyui.parent / "models" / "loras")
    assert not any(m["hash_pending"] for m in models.values())
    expected = hashlib.sha256(Path(models["style"]["path"]).read_bytes()).hexdigest()
    assert models["style"]["sha256"] == expected


def test_an_a1111_install_is_read_in_place(empty_home: Home, tmp_path: Path) -> None:
    webui = tmp_path / "stable-diffusion-webui"
    weights(webui / "models" / "Stable-diffusion" / "realistic_v5.safetensors", SD15_LORA)
    weights(webui / "models" / "Lora" / "unknown_adapter.safetensors", UNKNOWN)
    weights(webui / "models" / "LyCORIS" / "locon.safetensors", SDXL_LORA)
    weights(webui / "models" / "ESRGAN" / "4x-UltraSharp.safetensors", ESRGAN)
    (webui / "models" / "RealESRGAN").mkdir(parents=True)
    (webui / "models" / "RealESRGAN" / "RealESRGAN_x4plus.pth").write_bytes(b"never unpickled")
    weights(webui / "embeddings" / "easynegative.safetensors", SD15_EMBEDDING)
    weights(webui / "models" / "hypernetworks" / "not_read.safetensors", ESRGAN)
    configure(empty_home, a1111_roots=[webui])
    proc = scan(empty_home)
    assert proc.returncode == 0, proc.stderr
    models = listed(empty_home)
    assert what(models, "realistic_v5") == ("lora", "sd15")
    assert what(models, "unknown_adapter") == ("lora", "unknown")
    assert what(models, "locon") == ("lora", "sdxl")
    assert what(models, "4x-UltraSharp") == ("upscaler", "esrgan")
    assert what(models, "easynegative") == ("embedding", "sd15")
    assert models["RealESRGAN_x4plus"]["kind"] == "upscaler"
    assert models["RealESRGAN_x4plus"]["safe"] is False
    assert "not_read" not in models  # only the folders A1111 keeps models in
    assert all(Path(m["path"]).is_relative_to(webui) for m in models.values())


BAD_YAML = "comfyui:\n  loras: [unclosed\n"


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("yaml-does-not-parse", ["extra_model_paths.yaml: does not parse as YAML at line"]),
        (
            "base-path-missing",
            ["extra_model_paths.yaml: section 'gone', key 'base_path': names ", "does not exist"],
        ),
        (
            "key-not-text",
            ["extra_model_paths.yaml: section 'comfyui', key 'loras': must be a folder path"],
        ),
        (
            "a1111-without-models",
            ["config.toml: key 'a1111_roots[0]': names ", "has no models/ folder"],
        ),
        ("yaml-missing", ["config.toml: key 'comfyui_model_paths[0]': names ", "does not exist"]),
    ],
)
def test_a_broken_shared_folder_is_named_and_the_other_roots_still_load(
    empty_home: Home, tmp_path: Path, case: str, expected: list[str]
) -> None:
    empty_home.root.chmod(0o700)  # so the only notice on stderr is the problem's
    weights(empty_home.root / "models" / "own.safetensors", ESRGAN)
    good = tmp_path / "good"
    weights(good / "models" / "Lora" / "kept.safetensors", SD15_LORA)
    yaml_file = tmp_path / "comfy" / "extra_model_paths.yaml"
    yaml_file.parent.mkdir()
    weights(tmp_path / "comfy" / "loras" / "fine.safetensors", SD15_LORA)
    installs = [tmp_path / "not-webui", good] if case == "a1111-without-models" else [good]
    (tmp_path / "not-webui").mkdir()
    yaml_file.write_text(
        {
            "yaml-does-not-parse": BAD_YAML,
            "base-path-missing": f"gone:\n  base_path: {tmp_path / 'nope'}\n  loras: x\n"
            "comfyui:\n  loras: loras\n",
            "key-not-text": "comfyui:\n  loras: [a, b]\n  upscale_models: loras\n",
        }.get(case, "comfyui:\n  loras: loras\n")
    )
    yamls = [tmp_path / "missing.yaml"] if case == "yaml-missing" else [yaml_file]
    configure(empty_home, comfyui_model_paths=yamls, a1111_roots=installs)
    proc = scan(empty_home)
    assert proc.returncode == 2, proc.stderr
    problems = [line for line in proc.stderr.splitlines() if line.startswith("medialab: ")]
    assert len(problems) == 1, proc.stderr
    assert all(part in problems[0] for part in expected), problems[0]
    assert json.loads(proc.stdout)["problems"][0]["sentence"] in problems[0]
    models = listed(empty_home)
    assert {"own", "kept"} <= set(models)
    # The rest of a yaml whose one section is broken still loads.
    assert ("fine" in models) == (case not in ("yaml-does-not-parse", "yaml-missing"))
    # `models list` and `doctor` say so too, without failing.
    listing = empty_home.cli("models", "list")
    assert listing.returncode == 0 and problems[0] in listing.stderr
    data = DataDir(empty_home.root)
    report = describe_roots(data, load_config(data))
    assert problems[0].removeprefix("medialab: ") in report["model_root_problems"]


def test_models_of_a_yaml_that_breaks_are_kept_until_it_reads_again(
    empty_home: Home, comfyui: Path
) -> None:
    configure(empty_home, comfyui_model_paths=[comfyui])
    assert scan(empty_home).returncode == 0
    before = listed(empty_home)
    good = comfyui.read_text()
    comfyui.write_text(BAD_YAML)
    assert scan(empty_home).returncode == 2
    assert listed(empty_home).keys() == before.keys()
    comfyui.write_text(good)
    proc = scan(empty_home)
    assert proc.returncode == 0 and json.loads(proc.stdout)["unchanged"] == len(before)
    assert listed(empty_home).keys() == before.keys()


def test_shared_folder_paths_must_be_absolute(empty_home: Home) -> None:
    (empty_home.root / "config.toml").write_text('comfyui_model_paths = ["comfy/extra.yaml"]\n')
    proc = empty_home.cli("models", "list")
    assert proc.returncode == 2
    assert "'comfyui_model_paths[0]' must be an absolute path" in proc.stderr


def test_a_copied_data_directory_keeps_its_model_names(
    empty_home: Home, demo_models_dir: Path, tmp_path: Path
) -> None:
    models = empty_home.root / "models"
    shutil.copytree(demo_models_dir / "demo-sd15", models / "demo-sd15", symlinks=True)
    weights(models / "upscalers" / "sharp.safetensors", ESRGAN)
    weights(models / "more" / "sharp.safetensors", ESRGAN)  # a second one: named by path
    assert scan(empty_home).returncode == 0
    before = listed(empty_home)
    copy = Home(tmp_path / "copied")
    subprocess.run(["cp", "-a", str(empty_home.root), str(copy.root)], check=True)
    shutil.rmtree(empty_home.root)  # the original is gone: nothing may point into it
    # Before any rescan, the copy lists and resolves its own files under the same names.
    now = listed(copy)
    assert now.keys() == before.keys()
    assert all(Path(m["path"]).is_relative_to(copy.root) for m in now.values())
    assert all(Path(m["path"]).exists() for m in now.values())
    data = DataDir(copy.root)
    store = Store(data.db_path)
    resolved = registry.resolve(store, "demo-sd15", kinds=("checkpoint",))
    assert Path(resolved.path) == copy.root / "models" / "demo-sd15"
    # A rescan finds every model unchanged: no name changes, nothing re-added.
    result = json.loads(scan(copy).stdout)
    assert (result["added"], result["removed"], result["updated"]) == ([], [], [])
    assert result["unchanged"] == len(before)
    after = listed(copy)
    assert {n: (m["kind"], m["sha256"], m["root"]) for n, m in after.items()} == {
        n: (m["kind"], m["sha256"], m["root"]) for n, m in before.items()
    }
    assert registry.resolve(store, "demo-sd15").path == str(copy.root / "models" / "demo-sd15")
    pipeline = copy.pipeline("p", txt2img_toml(prompts=["a"], seeds=[1]))
    dry = copy.cli("run", "--dry-run", str(pipeline))
    assert dry.returncode == 0, dry.stderr


def test_a_schema_1_database_gets_the_roots_of_its_models(tmp_path: Path) -> None:
    root = tmp_path / "home"
    root.mkdir()
    db = root / "medialab.db"
    shutil.copyfile(FIXTURES / "medialab-v1.db", db)
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("UPDATE model SET path = ?", (str(root / "models" / "demo-sd15"),))
    conn.close()
    Store(db)
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT name, root, rel, hash_pending FROM model").fetchall() == [
        ("demo-sd15", "models", "demo-sd15", 0)
    ]


def test_files_dropped_while_serve_runs_appear_and_go_without_a_rescan(
    home: Home, serve: Any, tmp_path: Path
) -> None:
    comfy = tmp_path / "comfy"
    (comfy / "loras").mkdir(parents=True)
    (comfy / "extra_model_paths.yaml").write_text("comfyui:\n  loras: loras\n")
    config = home.root / "config.toml"
    config.write_text(
        config.read_text() + f'comfyui_model_paths = ["{comfy / "extra_model_paths.yaml"}"]\n'
    )
    proc = serve()
    dropped = weights(home.root / "models" / "dropped.safetensors", ESRGAN)
    shared = weights(comfy / "loras" / "dropped_lora.safetensors", SDXL_LORA)

    def registered(*names: str) -> set[str]:
        marks = ",".join("?" * len(names))
        rows = query(home, f"SELECT name FROM model WHERE name IN ({marks})", *names)
        return {name for (name,) in rows}

    # Within 5 s once the host is up (SPEC); it may still be starting here, and a loaded
    # machine is slower, so the wait allows more.
    wait_for(lambda: len(registered("dropped", "dropped_lora")) == 2, timeout=20.0)
    found = {n: m for n, m in listed(home).items() if n in ("dropped", "dropped_lora")}
    assert what(found, "dropped_lora") == ("lora", "sdxl")
    assert "hash_pending" in found["dropped"]

    def hashed() -> bool:
        """the hashes of the dropped files, computed by the host"""
        rows = query(
            home, "SELECT hash_pending FROM model WHERE name IN ('dropped', 'dropped_lora')"
        )
        return len(rows) == 2 and not any(pending for (pending,) in rows)

    wait_for(hashed, timeout=20.0)
    models = listed(home)
    assert models["dropped"]["sha256"] == hashlib.sha256(dropped.read_bytes()).hexdigest()
    dropped.unlink()
    shared.unlink()
    wait_for(lambda: not registered("dropped", "dropped_lora"), timeout=10.0)
    assert not ({"dropped", "dropped_lora"} & listed(home).keys())
    # The host leaves cleanly with its watch running.
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0


def test_hashes_wait_in_the_background_with_progress_and_stop_between_chunks(
    tmp_path: Path,
) -> None:
    data = DataDir(tmp_path / "home").ensure()
    big = data.models / "big.safetensors"
    save_file({"body.0.weight": np.ones((10 * 1024 * 1024,), dtype=np.float16)}, big)
    small = weights(data.models / "small.safetensors", ESRGAN)
    store, config = Store(data.db_path), load_config(data)
    registry.scan(store, data, config)
    assert all(m.hash_pending and not m.sha256 for m in registry.list_models(store))
    # Stopped after the first chunk of the big file: the small one (first) is done.
    stop = threading.Event()
    heard: list[registry.HashProgress] = []

    def progress(p: registry.HashProgress) -> None:
        heard.append(p)
        if p.name == "big":
            stop.set()

    assert registry.hash_pending(store, config, stop=stop, progress=progress) == 1
    rows = {m.name: m for m in registry.list_models(store)}
    assert rows["big"].hash_pending and not rows["big"].sha256
    assert rows["small"].sha256 == hashlib.sha256(small.read_bytes()).hexdigest()
    assert [(p.name, p.waiting) for p in heard[:2]] == [("small", 1), ("big", 0)]
    assert 0 < heard[-1].done < heard[-1].total == big.stat().st_size
    # A file changed since its scan is not hashed as it was measured: the next scan
    # takes the change, then its hash is written.
    save_file({"body.0.weight": np.zeros((1000,), dtype=np.float16)}, big)
    assert registry.hash_pending(store, config) == 0
    assert registry.scan(store, data, config).updated == ["big"]
    assert registry.hash_pending(store, config) == 1
    row = next(m for m in registry.list_models(store) if m.name == "big")
    assert row.sha256 == hashlib.sha256(big.read_bytes()).hexdigest() and not row.hash_pending
