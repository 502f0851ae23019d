"""`medialab import`: other tools' images into the gallery; `show --toml` makes them again."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from PIL import Image

from conftest import Home, query
from imagemeta import A1111, COMFY_FLUX, INVOKE, SWARM, jpeg_or_webp_with, png_with
from medialab_tui.interop.readers import read_image_metadata
from medialab_tui.store.artifacts import write_png


def _models(home: Home) -> dict[str, dict]:
    return {m["name"]: m for m in home.json("models", "list")}


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A library as people have one: several tools' images, a copy, notes, a broken file."""
    root = tmp_path / "library"
    (root / "comfy" / "deep").mkdir(parents=True)
    png_with(root / "a1111.png", parameters=A1111)
    png_with(root / "comfy" / "deep" / "flux.png", prompt=json.dumps(COMFY_FLUX), workflow="{}")
    png_with(root / "invoke.PNG", invokeai_metadata=json.dumps(INVOKE))
    jpeg_or_webp_with(root / "swarm.jpg", json.dumps(SWARM), "JPEG")
    jpeg_or_webp_with(root / "forge.webp", A1111.replace("Seed: 77", "Seed: 78"), "WEBP")
    write_png(
        root / "mine.png",
        Image.new("RGB", (64, 64)),
        {"prompt": "made here", "seed": 9, "steps": 4, "model": "demo-sd15", "cfg": 7.0},
    )
    Image.new("RGB", (8, 8)).save(root / "plain.png")
    (root / "comfy" / "copy-of-a1111.png").write_bytes((root / "a1111.png").read_bytes())
    (root / "notes.txt").write_text("not an image")
    (root / "broken.png").write_bytes((root / "a1111.png").read_bytes()[:40])
    return root


def _snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p): (p.read_bytes(), p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


def test_import_reads_every_tool_copies_in_place_and_recognises_a_second_copy(
    home: Home, folder: Path
) -> None:
    before = _snapshot(folder)
    results = home.json("import", str(folder))
    by_name = {Path(r["path"]).name: r for r in results}
    assert {n: r["status"] for n, r in by_name.items()} == {
        "a1111.png": "imported",
        "flux.png": "imported",
        "copy-of-a1111.png": "duplicate",
        "invoke.PNG": "imported",
        "swarm.jpg": "imported",
        "forge.webp": "imported",
        "mine.png": "imported",
        "plain.png": "imported",
        "notes.txt": "skipped",
        "broken.png": "skipped",
    }
    assert {n: r["source"] for n, r in by_name.items() if r["status"] == "imported"} == {
        "a1111.png": "a1111",
        "flux.png": "comfyui",
        "invoke.PNG": "invokeai",
        "swarm.jpg": "swarmui",
        "forge.webp": "a1111",
        "mine.png": "medialab",
        "plain.png": "none",
    }
    assert by_name["copy-of-a1111.png"]["artifact"] == by_name["a1111.png"]["artifact"]
    assert _snapshot(folder) == before  # originals untouched

    gallery = {a["id"]: a for a in home.json("gallery", "--stage", "import")}
    assert len(gallery) == 7
    a1111 = gallery[by_name["a1111.png"]["artifact"]]
    assert a1111["stage"] == "import" and a1111["kind"] == "image"
    params = a1111["params"]
    assert {k: params[k] for k in ("prompt", "negative", "seed", "steps", "cfg", "source")} == {
        "prompt": "a lighthouse, stormy sea",
        "negative": "blurry",
        "seed": 77,
        "steps": 30,
        "cfg": 5.5,
        "source": "a1111",
    }
    assert (params["sampler"], params["width"], params["height"]) == ("dpmpp_2m_karras", 96, 64)
    assert params["model"] == "juggernaut" and params["metadata"]["parameters"] == A1111
    copy = Path(a1111["path"])
    assert copy.is_relative_to(home.root / "artifacts")
    assert copy.read_bytes() == (folder / "a1111.png").read_bytes()
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600
    assert gallery[by_name["flux.png"]["artifact"]]["params"]["guidance"] == 3.5

    again = home.json("import", str(folder / "a1111.png"), str(folder / "swarm.jpg"))
    assert [r["status"] for r in again] == ["duplicate", "duplicate"]
    assert len(home.json("gallery", "--stage", "import")) == 7
    assert query(home, "SELECT count(*) FROM run") == [(1,)]


@pytest.mark.parametrize("bad", ["missing.png", "notes.txt", "broken.png"])
def test_a_missing_path_or_a_named_non_image_exits_2_and_imports_nothing(
    home: Home, folder: Path, bad: str
) -> None:
    proc = home.cli("import", str(folder / "a1111.png"), str(folder / bad))
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and bad in proc.stderr
    assert query(home, "SELECT count(*) FROM artifact") == [(0,)]


def test_show_toml_makes_an_imported_image_again_with_its_model_found_by_hash(
    home: Home, tmp_path: Path
) -> None:
    demo = _models(home)["demo-sd15"]
    text = (
        "a harbour at dawn, fog\nNegative prompt: people\n"
        "Steps: 3, Sampler: Euler a, CFG scale: 6, Seed: 21, Size: 64x64, "
        f"Model hash: {demo['sha256'][:10]}, Model: renamed-elsewhere, Version: v1.10.1"
    )
    ref = home.json("import", str(png_with(tmp_path / "h.png", (64, 64), parameters=text)))[0][
        "artifact"
    ]
    toml = home.cli("show", ref, "--toml", check=True).stdout
    pipeline = home.pipeline("again", toml)
    assert 'model = "demo-sd15"' in toml and "seeds = [\n    21,\n]" in toml
    made = home.cli("run", str(pipeline), "--json", timeout=300)
    assert made.returncode == 0, made.stderr
    (path,) = json.loads(made.stdout.splitlines()[-1])["artifacts"]
    again = read_image_metadata(Path(path)).params
    assert (again["seed"], again["steps"], again["width"], again["height"]) == (21, 3, 64, 64)
    assert again["prompt"] == "a harbour at dawn, fog" and again["model"] == "demo-sd15"

    rerun = home.cli("rerun", ref)
    assert rerun.returncode == 2 and "--toml" in rerun.stderr


def test_an_unknown_model_is_marked_and_run_refuses_it_naming_it(
    home: Home, tmp_path: Path
) -> None:
    ref = home.json("import", str(png_with(tmp_path / "u.png", (64, 64), parameters=A1111)))[0][
        "artifact"
    ]
    toml = home.cli("show", ref, "--toml", check=True).stdout
    assert 'model = "unknown: juggernaut"' in toml
    runs = query(home, "SELECT count(*) FROM run")
    proc = home.cli("run", str(home.pipeline("u", toml)), "--no-wait", "--no-start")
    assert proc.returncode == 2 and "juggernaut" in proc.stderr and "registry" in proc.stderr
    assert query(home, "SELECT count(*) FROM run") == runs


def test_a_folder_with_nothing_to_import_says_so(home: Home, tmp_path: Path) -> None:
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("x")
    proc = home.cli("import", str(tmp_path / "notes"), check=True)
    assert proc.stdout.startswith("Nothing to import") and "1 other file" in proc.stdout
    assert query(home, "SELECT count(*) FROM run") == [(0,)]
    assert query(home, "SELECT count(*) FROM artifact") == [(0,)]


def test_import_never_follows_a_fifo_named_like_an_image(home: Home, tmp_path: Path) -> None:
    root = tmp_path / "odd"
    root.mkdir()
    os.mkfifo(root / "pipe.png")
    png_with(root / "ok.png", parameters=A1111)
    results = {Path(r["path"]).name: r for r in home.json("import", str(root))}
    assert results["ok.png"]["status"] == "imported"
    assert results["pipe.png"]["status"] == "skipped"
