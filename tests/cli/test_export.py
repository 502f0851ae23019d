"""`medialab export`: artifacts copied out with their metadata, or stripped of it."""

from __future__ import annotations

import json
import zipfile
from fractions import Fraction
from pathlib import Path

import pytest
from PIL import Image

from conftest import Home
from imagemeta import A1111, jpeg_or_webp_with, png_with
from medialab_tui.interop.readers import read_image_metadata
from medialab_tui.store.videos import probe_video
from videoclips import Videos, moving_bar


@pytest.fixture
def library(tmp_path: Path) -> Home:
    """A data directory holding two imported images (an A1111 PNG, an A1111 JPEG): run r1."""
    home = Home(tmp_path / "home")
    home.root.mkdir()
    png_with(tmp_path / "fox.png", size=(32, 32), parameters=A1111)
    jpeg_or_webp_with(tmp_path / "forge.jpg", A1111.replace("Seed: 77", "Seed: 78"), "JPEG")
    home.cli("import", str(tmp_path / "fox.png"), str(tmp_path / "forge.jpg"), check=True)
    return home


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_export_to_a_folder_keeps_the_metadata_and_never_replaces_a_file(
    library: Home, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    result = library.json("export", "r1", "--to", str(out))
    assert [a["artifact"] for a in result["artifacts"]] == ["a1", "a2"]
    assert sorted(_files(out)) == ["a1-fox.json", "a1-fox.png", "a2-forge.jpg", "a2-forge.json"]
    stored = {a["id"]: Path(a["path"]) for a in library.json("gallery")}
    # Byte for byte: every chunk and EXIF tag another tool wrote is still there.
    assert (out / "a1-fox.png").read_bytes() == stored["a1"].read_bytes()
    png = read_image_metadata(out / "a1-fox.png")
    jpeg = read_image_metadata(out / "a2-forge.jpg")
    assert (png.source, png.params["seed"], png.params["steps"]) == ("a1111", 77, 30)
    assert (jpeg.source, jpeg.params["seed"]) == ("a1111", 78)
    assert json.loads((out / "a1-fox.json").read_text())["seed"] == 77

    before = _files(out)
    proc = library.cli("export", "a1", "--to", str(out), check=True)
    assert "a1-fox-2.png" in proc.stdout
    after = _files(out)
    assert {k: after[k] for k in before} == before  # nothing there was replaced
    assert sorted(set(after) - set(before)) == ["a1-fox-2.json", "a1-fox-2.png"]


def test_strip_writes_the_same_pixels_with_no_metadata_into_a_zip(
    library: Home, tmp_path: Path
) -> None:
    target = tmp_path / "clean.zip"
    library.cli("export", "a1", "a2", "--to", str(target), "--strip", check=True)
    unpacked = tmp_path / "unpacked"
    with zipfile.ZipFile(target) as archive:
        assert sorted(archive.namelist()) == ["a1-fox.png", "a2-forge.jpg"]  # no sidecars
        archive.extractall(unpacked)
    stored = {a["id"]: Path(a["path"]) for a in library.json("gallery")}
    for ref, name in (("a1", "a1-fox.png"), ("a2", "a2-forge.jpg")):
        found = read_image_metadata(unpacked / name)
        assert found.source == "none" and found.params["prompt"] in (None, "")
        with Image.open(unpacked / name) as clean, Image.open(stored[ref]) as original:
            assert clean.size == original.size
            assert not clean.info.get("parameters") and not clean.getexif()
            if name.endswith(".png"):
                assert clean.tobytes() == original.tobytes()


def test_an_existing_zip_is_replaced_only_with_force(library: Home, tmp_path: Path) -> None:
    target = tmp_path / "out.zip"
    target.write_bytes(b"someone's zip")
    proc = library.cli("export", "a1", "--to", str(target))
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"medialab: {target} already exists; --force replaces it"
    assert target.read_bytes() == b"someone's zip"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.zip")] == []

    library.cli("export", "a1", "--to", str(target), "--force", check=True)
    with zipfile.ZipFile(target) as archive:
        assert sorted(archive.namelist()) == ["a1-fox.json", "a1-fox.png"]


def test_an_existing_file_that_is_no_zip_is_refused_as_a_target(
    library: Home, tmp_path: Path
) -> None:
    target = tmp_path / "notes.png"
    target.write_bytes(b"someone's file")
    for extra in ((), ("--force",)):
        proc = library.cli("export", "a1", "--to", str(target), *extra)
        assert proc.returncode == 2
        assert proc.stderr.strip() == (
            f"medialab: {target} is a file, not a folder (a zip file ends in .zip)"
        )
        assert target.read_bytes() == b"someone's file"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["fox.png", "forge.jpg", "home", "notes.png"]
    )


def test_an_unknown_id_is_refused_and_nothing_is_written(library: Home, tmp_path: Path) -> None:
    out = tmp_path / "out"
    for ref in ("a99", "r7"):
        proc = library.cli("export", "a1", ref, "--to", str(out))
        assert proc.returncode == 2
        assert ref in proc.stderr and "Traceback" not in proc.stderr
        assert not out.exists()


def test_a_video_keeps_its_comment_and_strip_remuxes_it_without(tmp_path: Path) -> None:
    home = Home(tmp_path / "home")
    video = Videos(home.root).video("i2v", moving_bar(6), Fraction(24000, 1001))
    out = tmp_path / "out"
    home.cli("export", f"a{video.id}", "--to", str(out), check=True)
    home.cli("export", f"a{video.id}", "--to", str(out), "--strip", check=True)
    kept, stripped = out / f"a{video.id}-5.mp4", out / f"a{video.id}-5-2.mp4"
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [kept.name, f"a{video.id}-5.json", stripped.name]
    )
    with_meta, without = probe_video(kept), probe_video(stripped)
    assert json.loads(with_meta.comment)["stage"] == "i2v"
    assert without.comment == ""
    assert (without.frames, without.fps) == (6, Fraction(24000, 1001))


def test_gallery_lists_by_source(library: Home, tmp_path: Path) -> None:
    png_with(tmp_path / "comfy.png", size=(16, 16), prompt="{}")
    library.cli("import", str(tmp_path / "comfy.png"), check=True)
    ids = {
        s: [a["id"] for a in library.json("gallery", "--source", s)]
        for s in ("a1111", "imported", "here", "none")
    }
    assert ids == {
        "a1111": ["a2", "a1"],
        "imported": ["a3", "a2", "a1"],
        "here": [],
        "none": ["a3"],
    }
    proc = library.cli("gallery", "--source", "photoshop")
    assert proc.returncode == 2 and "--source must be" in proc.stderr
