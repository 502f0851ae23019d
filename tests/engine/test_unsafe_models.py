"""Models that must not load: pickle weights hidden in folders, damaged safetensors.

A folder is safe only when every weight file in it is safetensors; one that holds a
pickle is listed unsafe and refused at submit like a loose `.ckpt`, unless the
operator lists its exact path under `allow_pickle`. A damaged `.safetensors` is one
sentence and exit 2 at submit, and a `broken` entry in a scan, never a traceback.
Everything is driven through the real CLI on real files in a temporary data dir.
"""

from __future__ import annotations

import json
import os
import pickle
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from safetensors.numpy import save_file

from conftest import Home
from medialab_tui.config import DataDir

EXIT_INPUT = 2
PICKLE_SENTENCE = (
    "model '{ref}' {what} ({part}), which can run code; convert it to .safetensors or "
    "list its exact path ({path}) under allow_pickle in config.toml"
)


def safetensors(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"body.0.weight": np.zeros((4, 4), dtype=np.float16)}, path)
    return path


def pickle_file(path: Path) -> Path:
    """A pickle, as torch writes `.bin`/`.ckpt` files (this one holds only a dict)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps({"weight": [0.0] * 4}))
    return path


def sd15_folder(path: Path, unet_weights: str = "diffusion_pytorch_model.safetensors") -> Path:
    """A diffusers folder of the SD1.5 family with one UNet weight file."""
    (path / "unet").mkdir(parents=True)
    (path / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    (path / "unet" / "config.json").write_text(json.dumps({"_class_name": "UNet2DConditionModel"}))
    weights = path / "unet" / unet_weights
    (safetensors if unet_weights.endswith(".safetensors") else pickle_file)(weights)
    return path


def controlnet_folder(path: Path, weights: str) -> Path:
    path.mkdir(parents=True)
    config = {"_class_name": "ControlNetModel", "cross_attention_dim": 768}
    (path / "config.json").write_text(json.dumps(config))
    target = path / weights
    (safetensors if weights.endswith(".safetensors") else pickle_file)(target)
    return path


def txt2img(home: Home, model: str, control: str | None = None, name: str = "p") -> Path:
    extra = ""
    if control is not None:
        Image.new("RGB", (64, 64)).save(home.root.parent / "edges.png")
        extra = f'control = {{ model = "{control}", image = "edges.png", kind = "canny" }}\n'
    return home.pipeline(
        name,
        f"""name = "{name}"
[inputs]
prompts = ["a lighthouse"]
seeds = [1]
[[stages]]
type = "txt2img"
model = "{model}"
steps = 2
width = 64
height = 64
{extra}""",
    )


def stored(home: Home) -> dict[str, object]:
    """What the store holds, as the CLI shows it, and the artifact tree."""
    artifacts = home.root / "artifacts"
    return {
        "runs": home.json("runs"),
        "jobs": home.json("jobs"),
        "files": sorted(str(p.relative_to(artifacts)) for p in artifacts.rglob("*")),
    }


def refused(home: Home, pipeline: Path) -> str:
    """`medialab run` on a pipeline that must fail validation: its one sentence."""
    proc = home.cli("run", str(pipeline), timeout=120)
    assert proc.returncode == EXIT_INPUT, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0].removeprefix("medialab: ")


def allow(home: Home, *paths: Path) -> None:
    (home.root / "config.toml").write_text(
        f"allow_pickle = {json.dumps([str(p) for p in paths])}\n"
    )


@pytest.fixture
def models(empty_home: Home) -> Path:
    """The data dir's models folder, with a clean SD1.5 folder to build on."""
    folder = DataDir(empty_home.root).ensure().models
    sd15_folder(folder / "clean-sd15")
    return folder


# --- pickle hidden in folders -------------------------------------------------------


def hidden_in_diffusers(models: Path, suffix: str) -> tuple[Path, str, str]:
    folder = sd15_folder(models / "pickled", f"diffusion_pytorch_model{suffix}")
    return folder, "pickled", f"unet/diffusion_pytorch_model{suffix}"


def hidden_in_controlnet(models: Path, suffix: str) -> tuple[Path, str, str]:
    folder = controlnet_folder(models / "canny", f"diffusion_pytorch_model{suffix}")
    return folder, "canny", f"diffusion_pytorch_model{suffix}"


def beside_safetensors(models: Path, suffix: str) -> tuple[Path, str, str]:
    """Both formats in one folder (as many downloads ship): still unsafe."""
    folder = sd15_folder(models / "both")
    pickle_file(folder / "unet" / f"diffusion_pytorch_model{suffix}")
    return folder, "both", f"unet/diffusion_pytorch_model{suffix}"


HIDING: dict[str, Callable[[Path, str], tuple[Path, str, str]]] = {
    "diffusers-unet": hidden_in_diffusers,
    "controlnet": hidden_in_controlnet,
    "beside-safetensors": beside_safetensors,
}
PICKLE_SUFFIXES = [".bin", ".ckpt", ".pt", ".pth", ".pkl"]


def pipeline_using(home: Home, name: str, hiding: str) -> Path:
    if hiding == "controlnet":
        return txt2img(home, "clean-sd15", control=name)
    return txt2img(home, name)


# Every pickle suffix in a diffusers folder; one in each other kind of folder.
LISTING_CASES = [("diffusers-unet", suffix) for suffix in PICKLE_SUFFIXES] + [
    (hiding, ".bin") for hiding in sorted(HIDING) if hiding != "diffusers-unet"
]


@pytest.mark.parametrize(("hiding", "suffix"), LISTING_CASES)
def test_a_folder_holding_a_pickle_is_listed_unsafe(
    empty_home: Home, models: Path, hiding: str, suffix: str
) -> None:
    _, name, _ = HIDING[hiding](models, suffix)
    empty_home.cli("models", "scan", check=True)
    safe = {m["name"]: m["safe"] for m in empty_home.json("models", "list")}
    assert safe == {"clean-sd15": True, name: False}


@pytest.mark.parametrize("hiding", sorted(HIDING))
def test_a_folder_holding_a_pickle_is_refused_at_submit(
    empty_home: Home, models: Path, hiding: str
) -> None:
    folder, name, part = HIDING[hiding](models, ".bin")
    empty_home.cli("models", "scan", check=True)
    before = stored(empty_home)
    sentence = refused(empty_home, pipeline_using(empty_home, name, hiding))
    key = "control.model" if hiding == "controlnet" else "model"
    assert sentence.endswith(
        f"key '{key}': "
        + PICKLE_SENTENCE.format(ref=name, what="holds a pickle file", part=part, path=folder)
    )
    assert stored(empty_home) == before


@pytest.mark.parametrize("hiding", sorted(HIDING))
def test_allowing_the_exact_path_lets_a_pickled_folder_through(
    empty_home: Home, models: Path, hiding: str
) -> None:
    folder, name, _ = HIDING[hiding](models, ".bin")
    empty_home.cli("models", "scan", check=True)
    pipeline = pipeline_using(empty_home, name, hiding)
    allow(empty_home, folder)
    proc = empty_home.cli("run", str(pipeline), "--dry-run", check=True)
    assert "txt2img" in proc.stdout
    # Taken back out of the list, it is refused again at the next submit.
    allow(empty_home)
    assert "which can run code" in refused(empty_home, pipeline)


@pytest.mark.parametrize(
    "allowed",
    [
        pytest.param(lambda folder: folder.parent, id="the-folder-above"),
        pytest.param(lambda folder: folder / "unet", id="a-folder-inside"),
        pytest.param(
            lambda folder: folder / "unet" / "diffusion_pytorch_model.bin", id="the-pickle-itself"
        ),
        pytest.param(lambda folder: Path(f"{folder}-other"), id="a-longer-name"),
    ],
)
def test_only_the_exact_path_is_allowed(
    empty_home: Home, models: Path, allowed: Callable[[Path], Path]
) -> None:
    folder, name, _ = hidden_in_diffusers(models, ".bin")
    empty_home.cli("models", "scan", check=True)
    allow(empty_home, allowed(folder))
    assert "which can run code" in refused(empty_home, txt2img(empty_home, name))


def test_a_pickled_folder_given_by_path_is_refused_too(
    empty_home: Home, models: Path, tmp_path: Path
) -> None:
    empty_home.cli("models", "scan", check=True)
    folder = sd15_folder(tmp_path / "elsewhere" / "pickled", "diffusion_pytorch_model.bin")
    sentence = refused(empty_home, txt2img(empty_home, str(folder)))
    assert sentence.endswith(
        PICKLE_SENTENCE.format(
            ref=folder,
            what="holds a pickle file",
            part="unet/diffusion_pytorch_model.bin",
            path=folder,
        )
    )


def test_a_loose_pickle_file_is_refused_with_the_same_sentence(
    empty_home: Home, models: Path
) -> None:
    ckpt = pickle_file(models / "old.ckpt")
    empty_home.cli("models", "scan", check=True)
    sentence = refused(empty_home, txt2img(empty_home, "old"))
    assert sentence.endswith(
        PICKLE_SENTENCE.format(ref="old", what="is a pickle file", part=".ckpt", path=ckpt)
    )


def test_a_pickle_dropped_in_after_the_scan_is_still_refused(
    empty_home: Home, models: Path
) -> None:
    empty_home.cli("models", "scan", check=True)
    pickle_file(models / "clean-sd15" / "text_encoder" / "pytorch_model.bin")
    sentence = refused(empty_home, txt2img(empty_home, "clean-sd15"))
    assert "holds a pickle file (text_encoder/pytorch_model.bin)" in sentence


def test_allow_pickle_takes_only_absolute_paths(empty_home: Home) -> None:
    for value in ('["old.ckpt"]', "[1]", '"/srv/models/old.ckpt"'):
        (empty_home.root / "config.toml").write_text(f"allow_pickle = {value}\n")
        proc = empty_home.cli("models", "list")
        assert proc.returncode == EXIT_INPUT
        assert "allow_pickle" in proc.stderr and "Traceback" not in proc.stderr


# --- damaged safetensors ------------------------------------------------------------


def cut_short() -> bytes:
    header = json.dumps({"w": {"dtype": "F16", "shape": [64], "data_offsets": [0, 128]}}).encode()
    return struct.pack("<Q", len(header)) + header + b"\0" * 10


CORRUPT: dict[str, tuple[bytes, str]] = {
    "random-bytes": (
        bytes.fromhex("9f3c6e21d4b07a58") + os.urandom(200),
        "its header claims",
    ),
    "too-short": (b"\x01\x02\x03", "too short to be a safetensors file (3 bytes)"),
    "header-longer-than-file": (
        struct.pack("<Q", 1000) + b'{"a": 1}',
        "its header claims 1000 bytes; the file has 16",
    ),
    "truncated-header": (
        struct.pack("<Q", 40) + b'{"w": {"dtype": "F16", "shape"',
        "its header claims 40 bytes; the file has 38",
    ),
    "header-not-json": (struct.pack("<Q", 5) + b"nope!", "its header is not JSON"),
    "header-not-utf8": (struct.pack("<Q", 4) + b"\xff\xfe{}", "its header is not JSON"),
    "json-not-an-object": (struct.pack("<Q", 9) + b"[1, 2, 3]", "its header is not an object"),
    "tensor-without-offsets": (
        struct.pack("<Q", 37) + b'{"w": {"dtype": "F16", "shape": [1]}}',
        "tensor 'w' has no data offsets",
    ),
    "data-cut-short": (cut_short(), "it is cut short: tensor 'w' ends at byte 128 of 10"),
}


class Damaged:
    """One data dir for every damaged-file case: a root holding each case as
    `<case>.safetensors` (scanned once), the same files outside the roots, and a
    queued run, with what the store held before any case was tried."""

    def __init__(self, root: Path) -> None:
        self.home = Home(root / "home")
        self.home.root.mkdir()
        self.models = DataDir(self.home.root).ensure().models
        self.outside = root / "downloads"
        sd15_folder(self.models / "clean-sd15")
        for case, (content, _) in CORRUPT.items():
            for folder in (self.models / "damaged", self.outside / case):
                folder.mkdir(parents=True, exist_ok=True)
                (folder / f"{case}.safetensors").write_bytes(content)
        scan = self.home.cli("models", "scan", "--json", check=True)
        self.scan = json.loads(scan.stdout)
        models = self.home.json("models", "list")
        assert isinstance(models, list)
        self.listing = {m["name"]: m for m in models}
        queued = self.home.cli(
            "run",
            str(txt2img(self.home, "clean-sd15", name="ok")),
            "--no-wait",
            "--no-start",  # it stays queued: the cases check that nothing changes
            check=True,
        )
        assert "queued" in queued.stdout
        self.before = stored(self.home)


@pytest.fixture(scope="module")
def damaged(tmp_path_factory: pytest.TempPathFactory) -> Damaged:
    return Damaged(tmp_path_factory.mktemp("damaged"))


def test_a_scan_lists_every_damaged_safetensors_as_broken(damaged: Damaged) -> None:
    assert sorted(damaged.scan["added"]) == sorted([*CORRUPT, "clean-sd15"])
    broken = {n: (m["kind"], m["arch"]) for n, m in damaged.listing.items() if n != "clean-sd15"}
    assert broken == {case: ("broken", "unknown") for case in CORRUPT}
    assert damaged.listing["clean-sd15"]["kind"] == "checkpoint"


@pytest.mark.parametrize("case", sorted(CORRUPT))
def test_a_damaged_safetensors_given_as_a_model_path_is_one_sentence(
    damaged: Damaged, case: str
) -> None:
    bad = damaged.outside / case / f"{case}.safetensors"
    pipeline = txt2img(damaged.home, str(bad), name=f"path-{case}")
    sentence = refused(damaged.home, pipeline)
    assert sentence.startswith(f"{pipeline}: stage 1 (txt2img): key 'model': {case}.safetensors ")
    assert CORRUPT[case][1] in sentence
    assert stored(damaged.home) == damaged.before


@pytest.mark.parametrize("case", sorted(CORRUPT))
def test_a_broken_model_named_in_a_pipeline_is_one_sentence(damaged: Damaged, case: str) -> None:
    sentence = refused(damaged.home, txt2img(damaged.home, case, name=f"name-{case}"))
    assert f"key 'model': {case}.safetensors " in sentence
    assert CORRUPT[case][1] in sentence
    assert stored(damaged.home) == damaged.before


def test_a_damaged_safetensors_inside_a_folder_makes_the_folder_broken(
    empty_home: Home, models: Path
) -> None:
    vae = models / "clean-sd15" / "vae" / "diffusion_pytorch_model.safetensors"
    vae.parent.mkdir()
    vae.write_bytes(CORRUPT["too-short"][0])
    empty_home.cli("models", "scan", check=True)
    listing = {m["name"]: m for m in empty_home.json("models", "list")}
    assert listing["clean-sd15"]["kind"] == "broken"
    sentence = refused(empty_home, txt2img(empty_home, "clean-sd15"))
    assert sentence.endswith(
        "vae/diffusion_pytorch_model.safetensors is too short to be a safetensors file (3 bytes)"
    )


def test_a_fifo_given_as_a_model_path_is_refused_without_blocking(
    empty_home: Home, models: Path, tmp_path: Path
) -> None:
    empty_home.cli("models", "scan", check=True)
    fifo = tmp_path / "pipe.safetensors"
    os.mkfifo(fifo)
    sentence = refused(empty_home, txt2img(empty_home, str(fifo)))
    assert sentence.endswith(f"{fifo} is a FIFO, not a regular file")


def test_a_folder_with_a_damaged_model_index_given_by_path_is_one_sentence(
    empty_home: Home, models: Path, tmp_path: Path
) -> None:
    empty_home.cli("models", "scan", check=True)
    folder = sd15_folder(tmp_path / "elsewhere" / "sd15")
    (folder / "model_index.json").write_text("{not json")
    sentence = refused(empty_home, txt2img(empty_home, str(folder)))
    assert sentence.endswith(f"{folder / 'model_index.json'} is not a valid diffusers model index")
