"""Images written by other tools, their settings read into one shape."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from imagemeta import (
    A1111,
    COMFY_FLUX,
    COMFY_HIRES,
    INVOKE,
    SWARM,
    jpeg_or_webp_with,
    png_with,
)
from medialab_tui.interop.readers import read_image_metadata
from medialab_tui.store.artifacts import write_png


def test_a1111png_with(tmp_path: Path) -> None:
    found = read_image_metadata(png_with(tmp_path / "a.png", parameters=A1111))
    assert found.source == "a1111"
    p = found.params
    assert (p["prompt"], p["negative"], p["seed"], p["steps"], p["cfg"]) == (
        "a lighthouse, stormy sea",
        "blurry",
        77,
        30,
        5.5,
    )
    assert p["sampler"] == "dpmpp_2m_karras" and p["scheduler"] == "Karras"
    assert (p["width"], p["height"], p["model"], p["model_hash"]) == (
        96,
        64,
        "juggernaut",
        "31e35c80fc",
    )
    assert p["loras"] == [{"name": "salt", "hash": "0123456789ab"}]
    assert found.raw["parameters"] == A1111


@pytest.mark.parametrize(
    ("fmt", "little_endian"), [("JPEG", False), ("WEBP", False), ("JPEG", True)]
)
def test_a1111_jpeg_and_webp_user_comment(tmp_path: Path, fmt: str, little_endian: bool) -> None:
    path = jpeg_or_webp_with(tmp_path / f"a.{fmt.lower()}", A1111, fmt, little_endian)
    found = read_image_metadata(path)
    assert found.source == "a1111"
    assert found.params["prompt"] == "a lighthouse, stormy sea" and found.params["seed"] == 77


def test_comfyui_hires_graph_reads_the_pass_that_made_the_saved_image(tmp_path: Path) -> None:
    path = png_with(tmp_path / "c.png", prompt=json.dumps(COMFY_HIRES), workflow='{"nodes": []}')
    found = read_image_metadata(path)
    p = found.params
    assert found.source == "comfyui"
    assert (p["prompt"], p["negative"]) == ("an ink castle, on a hill", "photo")
    assert (p["seed"], p["steps"], p["cfg"], p["denoise"]) == (100, 12, 8.0, 0.5)
    assert p["sampler"] == "dpmpp_2m_karras" and p["scheduler"] == "karras"
    assert (p["width"], p["height"]) == (768, 1152)
    assert p["model"] == "dream"
    assert p["loras"] == [{"name": "ink", "weight": 0.7}]
    assert json.loads(found.raw["workflow"]) == {"nodes": []}


def test_comfyui_flux_graph(tmp_path: Path) -> None:
    found = read_image_metadata(png_with(tmp_path / "f.png", prompt=json.dumps(COMFY_FLUX)))
    p = found.params
    assert found.source == "comfyui"
    assert p["prompt"] == "a fox in the snow: cinematic" and p["negative"] == ""
    assert (p["seed"], p["steps"], p["sampler"], p["scheduler"]) == (555, 24, "euler", "simple")
    assert p["guidance"] == 3.5 and p["model"] == "flux1-dev"
    assert (p["width"], p["height"]) == (1024, 576)
    assert "cfg" not in p or p["cfg"] is None


def test_invokeai_metadata(tmp_path: Path) -> None:
    found = read_image_metadata(png_with(tmp_path / "i.png", invokeai_metadata=json.dumps(INVOKE)))
    p = found.params
    assert found.source == "invokeai"
    assert (p["prompt"], p["negative"], p["seed"], p["steps"], p["cfg"]) == (
        "a red bicycle, studio light",
        "text",
        4242,
        25,
        6.0,
    )
    assert p["sampler"] == "dpmpp_2m_karras" and p["model"] == "Juggernaut XL"
    assert p["loras"] == [{"name": "bike-style", "hash": "blake3:99", "weight": 0.6}]


@pytest.mark.parametrize("where", ["png", "jpeg"])
def test_swarmui_params(tmp_path: Path, where: str) -> None:
    text = json.dumps(SWARM)
    if where == "png":
        path = png_with(tmp_path / "s.png", parameters=text)
    else:
        path = jpeg_or_webp_with(tmp_path / "s.jpg", text, "JPEG")
    found = read_image_metadata(path)
    p = found.params
    assert found.source == "swarmui"
    assert (p["prompt"], p["negative"], p["seed"], p["cfg"], p["sampler"]) == (
        "a lighthouse, dusk",
        "people",
        31337,
        7.0,
        "dpmpp_2m_karras",
    )
    assert p["model"] == "sd_xl_base_1.0" and p["loras"] == [{"name": "coast", "weight": 0.8}]


def test_medialab_png_reads_its_own_chunk_first(tmp_path: Path) -> None:
    meta = {
        "prompt": "p, with: colon",
        "negative": "",
        "seed": 5,
        "steps": 4,
        "cfg": 7.0,
        "sampler": "euler",
        "width": 64,
        "height": 64,
        "model": "demo-sd15",
        "stage": "txt2img",
    }
    path = tmp_path / "m.png"
    write_png(path, Image.new("RGB", (64, 64)), meta)
    found = read_image_metadata(path)
    assert found.source == "medialab"
    assert {k: found.params[k] for k in meta} == meta


def test_an_image_without_metadata_is_source_none_with_its_size(tmp_path: Path) -> None:
    path = tmp_path / "plain.png"
    Image.new("RGB", (40, 30)).save(path)
    found = read_image_metadata(path)
    assert found.source == "none" and (found.params["width"], found.params["height"]) == (40, 30)
    assert found.params["prompt"] is None


def test_reading_never_changes_the_file(tmp_path: Path) -> None:
    path = png_with(tmp_path / "a.png", parameters=A1111)
    before = path.read_bytes()
    read_image_metadata(path)
    assert path.read_bytes() == before
