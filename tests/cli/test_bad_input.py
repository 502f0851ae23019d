"""Bad input of every kind: exit 2 (4 for `serve` without a usable data directory),
one sentence on stderr naming the file, key or value, no traceback, and a store left
exactly as it was (SPEC §8, §10; hardening items 7 and 8).

One table, one test. The cases share one data directory that holds real history (a
run waiting in review with an artifact, a pending run with queued jobs), so "nothing
changed" compares something; every case runs the real command line in this process
(fast), or in a subprocess where the case needs other permissions than the test's.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from conftest import wait_for
from medialab_tui.cli import main

ROOT = Path(__file__).resolve().parents[2]

GOOD = """
name = "ok"
[inputs]
prompts = ["a red fox"]
seeds = [1]
[[stages]]
type = "txt2img"
model = "demo-sd15"
steps = 4
width = 64
height = 64
"""

UPSCALE = """
name = "up"
[inputs]
images = ["ref1.png"]
[[stages]]
type = "upscale"
scale = 2
"""

IMG2IMG = """
name = "i2i"
[inputs]
images = ["ref1.png"]
prompts = ["a red fox"]
[[stages]]
type = "img2img"
model = "demo-sd15"
strength = 0.5
"""

BLEND = """
name = "mix"
[inputs]
images = ["ref1.png", "ref2.png"]
[[stages]]
type = "blend"
model = "demo-sd15"
"""

ENHANCE = """
name = "p"
[inputs]
prompts = ["x"]
[[stages]]
type = "prompt_enhance"
"""

DETAIL = UPSCALE.replace('type = "upscale"\nscale = 2', 'type = "detail"\nmodel = "demo-sd15"')
REFINE = UPSCALE.replace('type = "upscale"\nscale = 2', 'type = "refine"\nmodel = "demo-sd15"')
BIG_TXT2IMG = GOOD.replace("width = 64\nheight = 64", "width = 4096\nheight = 4096")


def with_images(text: str, *images: object) -> str:
    return text.replace('images = ["ref1.png"]', f"images = {json.dumps(list(images))}")


def nested(opening: str, closing: str, depth: int, inner: str = "1") -> str:
    return f"a = {opening * depth}{inner}{closing * depth}\n"


@dataclass(frozen=True)
class Case:
    """One bad input. `args` may name `{data}` (the case's data directory), `{files}`
    (where the inputs lie) and `{pipeline}` (this case's `pipeline` text, written to
    `{files}/<id>.toml`); `config` is the shared config.toml for the case (after the
    line naming the demo models, or alone when `config_only`)."""

    id: str
    args: tuple[str, ...]
    words: tuple[str, ...]
    code: int = 2
    pipeline: str | None = None
    config: str | bytes | None = None
    config_only: bool = False
    # "file", "under-file", "denied", "read-only[/sub]": a data directory of its own
    data_dir: str | None = None
    own_process: bool = False  # run as its own `medialab` process


def run(pipeline: str, *words: str, id: str, flags: tuple[str, ...] = ("--no-wait",)) -> Case:
    return Case(id, ("run", "{pipeline}", *flags), (f"{id}.toml", *words), pipeline=pipeline)


def conf(id: str, line: str | bytes, *words: str, only: bool = False) -> Case:
    return Case(
        f"config-{id}",
        ("runs",),
        ("config.toml", *words),
        config=line,
        config_only=only,
    )


def cli(id: str, *args: str, words: tuple[str, ...] = (), code: int = 2) -> Case:
    return Case(id, args, words, code=code)


PIPELINES = [
    # the document as a whole
    run('name = "x\n[[stages]]\ntype = "txt2img"', "TOML syntax error", "line 1", id="toml-syntax"),
    run("", "at least one [[stages]] table is required", id="empty-file"),
    run('colour = "red"\n' + GOOD, "unknown top-level key 'colour'", id="unknown-top-key"),
    run('name = "x"\nstages = []\n', "at least one [[stages]]", id="stages-empty"),
    run('name = "x"\nstages = 3\n', "at least one [[stages]]", id="stages-not-a-list"),
    run('name = "x"\nstages = [1]\n', "stage 1 must be a table", id="stage-not-a-table"),
    run('name = "x"\n[[stages]]\nsteps = 3\n', "stage 1", "'type'", "is required", id="no-type"),
    run(GOOD.replace('"txt2img"', '"paint"'), "unknown stage type 'paint'", id="unknown-type"),
    run(
        '[inputs]\nprompts = ["x"]\n[[stages]]\ntype = "interpolate"\nmultiplier = 2\n',
        "'inputs.videos'",
        "at least one video for stage 1 (interpolate)",
        id="interpolate-without-videos",
    ),
    run(GOOD.replace('"txt2img"', "3"), "unknown stage type 3", id="type-a-number"),
    run(GOOD + "brightness = 3\n", "stage 1 (txt2img)", "'brightness'", id="unknown-key"),
    run(GOOD.replace('name = "ok"', "name = 3"), "'name'", "must be text", id="name-a-number"),
    run(GOOD.replace('name = "ok"', 'name = ""'), "'name'", "must not be empty", id="name-empty"),
    run(GOOD.replace('name = "ok"', 'name = "ok"\nmode = "yolo"'), "'mode'", id="mode-unknown"),
    run(GOOD.replace('name = "ok"', 'name = "ok"\nexpand = "x"'), "'expand'", id="expand-bad"),
    # [inputs]
    run('inputs = 3\n[[stages]]\ntype = "upscale"\n', "'inputs'", "a table", id="inputs-not-table"),
    run(GOOD.replace("seeds = [1]", "seeds = [1]\nvideo = 1"), "'inputs.video'", id="inputs-key"),
    run(GOOD.replace('["a red fox"]', '"a red fox"'), "'inputs.prompts'", id="prompts-text"),
    run(GOOD.replace('["a red fox"]', "[1]"), "'inputs.prompts[0]'", "text", id="prompt-number"),
    run(GOOD.replace('["a red fox"]', "[]"), "at least one prompt", id="prompts-empty"),
    run(GOOD.replace('["a red fox"]', '["  "]'), "at least one prompt", id="prompts-blank"),
    run(
        GOOD.replace('["a red fox"]', json.dumps(["x" * 10_001])),
        "'inputs.prompts[0]'",
        "at most 10000 characters",
        id="prompt-too-long",
    ),
    run(
        GOOD.replace("seeds = [1]", "seeds = [1]\nnegative = 3"), "'inputs.negative'", id="neg-num"
    ),
    run(
        GOOD.replace("seeds = [1]", "seeds = [1]\nseed = 2"), "either 'seeds'", id="seed-and-seeds"
    ),
    run(GOOD.replace("seeds = [1]", "seeds = []"), "'seeds' is empty", id="seeds-empty"),
    run(GOOD.replace("seeds = [1]", "seeds = [-1]"), "seed -1", "outside", id="seed-negative"),
    run(GOOD.replace("seeds = [1]", "seeds = [4294967296]"), "outside", id="seed-too-large"),
    run(GOOD.replace("seeds = [1]", 'seeds = ["1"]'), "'inputs.seeds[0]'", id="seed-text"),
    run(GOOD.replace("seeds = [1]", "seed = 3\ncount = 0"), "'inputs.count'", id="count-zero"),
    run(GOOD.replace("seeds = [1]", "count = 100001"), "at most 100000", id="count-too-many"),
    run(
        GOOD.replace('name = "ok"', 'name = "ok"\nexpand = "zip"')
        .replace('["a red fox"]', '["a", "b", "c"]')
        .replace("seeds = [1]", "seeds = [1, 2]"),
        "zip",
        "3 and 2",
        id="zip-lengths",
    ),
    Case(  # the question is not a mistake in the file: it names the count instead
        "large-run-no-yes",
        ("run", "{pipeline}", "--no-wait"),
        ("this run makes 600 jobs", "pass --yes"),
        pipeline=GOOD.replace("seeds = [1]", "count = 600"),
    ),
    # stage keys: types and ranges
    run(GOOD.replace("steps = 4", 'steps = "four"'), "'steps'", "integer", id="steps-text"),
    run(GOOD.replace("steps = 4", "steps = true"), "'steps'", "integer", id="steps-bool"),
    run(GOOD.replace("steps = 4", "steps = 4.5"), "'steps'", "integer", id="steps-float"),
    run(GOOD.replace("steps = 4", "steps = 0"), "'steps'", "at least 1", id="steps-zero"),
    run(GOOD.replace("steps = 4", "steps = 501"), "'steps'", "at most 500", id="steps-501"),
    run(GOOD.replace("steps = 4", f"steps = {2**62}"), "'steps'", "at most 500", id="steps-huge"),
    run(GOOD.replace("width = 64", "width = 100"), "'width'", "multiple of 8", id="width-100"),
    run(GOOD.replace("width = 64", "width = 0"), "'width'", "at least 8", id="width-zero"),
    run(GOOD.replace("height = 64", "height = 4104"), "'height'", "4096", id="height-4104"),
    run(GOOD + "cfg = -1.0\n", "'cfg'", "at least 0", id="cfg-negative"),
    run(GOOD + "cfg = 51\n", "'cfg'", "at most 50", id="cfg-51"),
    run(GOOD + "cfg = nan\n", "'cfg'", "nan", id="cfg-nan"),
    run(GOOD + "cfg = inf\n", "'cfg'", "inf", id="cfg-inf"),
    run(GOOD + 'sampler = "magic"\n', "'sampler'", "must be one of", id="sampler-unknown"),
    run(GOOD + "per_input = 0\n", "'per_input'", "at least 1", id="per-input-zero"),
    run(GOOD + "per_input = 65\n", "'per_input'", "at most 64", id="per-input-65"),
    run(GOOD + 'review = "yes"\n', "'review'", "true or false", id="review-text"),
    run(GOOD + "negative = [1]\n", "'negative'", "text", id="stage-negative-list"),
    # models, LoRAs, ControlNets
    run(
        GOOD.replace('"demo-sd15"', '"no-such-model"'), "unknown model 'no-such-model'", id="model"
    ),
    run(GOOD.replace('"demo-sd15"', '"/nowhere/x.safetensors"'), "does not exist", id="model-path"),
    run(GOOD.replace('"demo-sd15"', '""'), "'model'", "must not be empty", id="model-empty"),
    run(GOOD.replace('"demo-sd15"', '"{files}/broken.safetensors"'), "broken", id="model-corrupt"),
    run(GOOD.replace('"demo-sd15"', '"demo-esrgan-x4"'), "'model'", id="model-wrong-kind"),
    run(GOOD + 'loras = [{model = "no-such-lora"}]\n', "'loras[0].model'", id="lora-unknown"),
    run(GOOD + 'loras = [{model = "x", weight = 5}]\n', "'loras[0].weight'", id="lora-weight"),
    run(GOOD + 'loras = "x"\n', "'loras'", "a list", id="loras-text"),
    run(GOOD + 'loras = [{model = "x", w = 1}]\n', "'loras[0].w'", id="lora-unknown-key"),
    run(GOOD + 'control = {model = "demo-sd15-controlnet"}\n', "'control.image'", id="control-img"),
    run(
        GOOD + 'control = {model = "c", image = "ref1.png", kind = "pose"}\n',
        "canny",
        id="ctl-kind",
    ),
    run(
        GOOD + 'control = {model = "demo-sd15-controlnet", image = "nope.png"}\n',
        "'control.image'",
        "nope.png does not exist",
        id="control-image-missing",
    ),
    run(
        GOOD + 'control = {model = "demo-sd15-controlnet", image = "notes.png"}\n',
        "notes.png is not an image",
        id="control-image-not-image",
    ),
    run(
        GOOD + 'control = {model = "demo-sd15-controlnet", image = "bomb.png"}\n',
        "'control.image'",
        "20000×20000",
        "max_input_pixels",
        id="control-image-bomb",
    ),
    # input images (item 7: decompression bombs, oversized inputs)
    run(with_images(UPSCALE, "nope.png"), "'inputs.images'", "does not exist", id="image-missing"),
    run(with_images(UPSCALE, "notes.png"), "notes.png is not an image", id="image-not-image"),
    run(with_images(UPSCALE, "folder.png"), "folder.png does not exist", id="image-folder"),
    run(with_images(UPSCALE, "cut.png"), "cut.png is not an image", id="image-cut-short"),
    run(
        with_images(UPSCALE, "bomb.png"),
        "'inputs.images'",
        "bomb.png is 20000×20000 (400 Mpx)",
        "at most 100 Mpx (max_input_pixels in config.toml)",
        id="image-decompression-bomb",
    ),
    run(
        with_images(UPSCALE, "bomb.png"),
        "bomb.png is 20000×20000",
        id="image-bomb-dry-run",
        flags=("--dry-run",),
    ),
    run(with_images(UPSCALE, "bomb.png"), "bomb.png is 20000×20000", id="image-bomb-run", flags=()),
    run(
        with_images(UPSCALE, "ref1.png", "big.png"),
        "big.png is 12000×12000 (144 Mpx)",
        "max_input_pixels",
        id="image-12000-upscaled-x2",
    ),
    run(with_images(IMG2IMG, "bomb.png"), "bomb.png is 20000×20000", id="img2img-bomb"),
    run(GOOD.replace("seeds = [1]", 'images = ["ref1.png"]'), "takes prompts", id="images-txt2img"),
    run(IMG2IMG.replace('images = ["ref1.png"]', ""), "at least one image", id="img2img-none"),
    run(IMG2IMG.replace("strength = 0.5", "strength = 1.5"), "'strength'", id="strength-1.5"),
    run(with_images(UPSCALE, "ref1.png", 3), "'inputs.images[1]'", "text", id="image-number"),
    # output sizes, checked at submit (item 7: an upscale that would make 576 Mpx)
    run(
        BIG_TXT2IMG + '[[stages]]\ntype = "upscale"\nscale = 4.5\n',
        "stage 2 (upscale): key 'scale' makes 18432×18432 images (339.7 Mpx) from 4096×4096",
        "at most 268.4 Mpx (max_output_pixels in config.toml)",
        id="upscale-output-cap",
    ),
    run(
        UPSCALE.replace("scale = 2", "scale = 8")
        + ('[[stages]]\ntype = "upscale"\nscale = 8\n' * 2),
        "stage 3 (upscale): key 'scale' makes 32768×32768",
        "max_output_pixels",
        id="upscale-chain-output-cap",
    ),
    run(
        BIG_TXT2IMG + '[[stages]]\ntype = "upscale"\nscale = 4\n'
        '[[stages]]\ntype = "refine"\nmodel = "demo-sd15"\nscale = 1.5\n',
        "stage 3 (refine): key 'scale' makes 24576×24576",
        id="refine-output-cap",
    ),
    run(
        BIG_TXT2IMG + '[[stages]]\ntype = "upscale"\nscale = 8\n',
        "1074 Mpx",
        id="upscale-output-cap-dry-run",
        flags=("--dry-run",),
    ),
    run(UPSCALE.replace("scale = 2", "scale = 1"), "'scale'", "greater than 1", id="upscale-x1"),
    run(UPSCALE.replace("scale = 2", "scale = 9"), "'scale'", "at most 8", id="upscale-x9"),
    run(UPSCALE + "tile = -1\n", "'tile'", "at least 0", id="upscale-tile"),
    run(UPSCALE + 'model = "nope"\n', "unknown model 'nope'", id="upscale-model"),
    run(REFINE + "scale = 5\n", "'scale'", "at most 4", id="refine-scale"),
    run(REFINE + 'method = "magic"\n', "'method'", id="refine-method"),
    run(DETAIL + 'target = "hands"\n', "'target'", id="detail-target"),
    run(DETAIL + "max_regions = 0\n", "'max_regions'", id="detail-max-regions"),
    run(DETAIL + 'detector = "no-such-detector"\n', "'detector'", id="detail-detector"),
    # blend and prompt_enhance
    run(BLEND.replace(', "ref2.png"', ""), "two or more images", "lists 1", id="blend-one"),
    run(GOOD + '\n[[stages]]\ntype = "blend"\nmodel = "demo-sd15"\n', "makes 1", id="blend-after"),
    run(BLEND + "weights = [1.0, 2.0, 3.0]\n", "3 values for 2 images", id="blend-weights-count"),
    run(BLEND + "weights = [-1.0, 2.0]\n", "'weights'", id="blend-weights-negative"),
    run(ENHANCE + 'sets = ["hats"]\n', "'sets[0]'", id="enhance-set-unknown"),
    run(ENHANCE + 'sets = ["angles", "angles"]\n', "twice", id="enhance-set-twice"),
    run(GOOD + '\n[[stages]]\ntype = "txt2img"\nmodel = "demo-sd15"\n', "gives images", id="chain"),
    # the file itself (item 7: nesting, size)
    run(nested("[", "]", 100_000), "nest more than 32 deep", id="nested-arrays-100000"),
    run(nested("{b = ", "}", 100_000), "nest more than 32 deep", id="nested-tables-100000"),
    run(nested("[", "]", 40), "nest more than 32 deep", id="nested-arrays-40"),
    run("a" + ".b" * 5000 + " = 1\n", "nest more than 32 deep", id="dotted-keys-5000"),
    run(f'name = "{"x" * 1_100_000}"\n', "too large (1,100,010 bytes", id="file-over-1mb"),
    run(GOOD.replace("a red fox", "caf\udce9"), "not UTF-8 text", id="file-not-utf8"),
    Case("file-missing", ("run", "{files}/nope.toml"), ("nope.toml", "no such file")),
    Case("file-is-a-folder", ("run", "{files}/folder.png"), ("folder.png", "a folder")),
    Case("file-is-a-device", ("run", "/dev/zero", "--dry-run"), ("/dev/zero", "not a regular")),
    # the same mistakes through the other ways in
    run(GOOD.replace("steps = 4", "steps = 0"), "'steps'", id="steps-zero-run", flags=()),
    run(
        GOOD.replace("steps = 4", "steps = 0"), "'steps'", id="steps-zero-dry", flags=("--dry-run",)
    ),
    run(nested("[", "]", 100_000), "32 deep", id="nested-arrays-run", flags=()),
]

CONFIGS = [
    conf("threads-negative", "threads = -3", "key 'threads' must be at least 0 (got -3)"),
    conf("threads-float", "threads = 1.5", "'threads'", "an integer"),
    conf("threads-text", 'threads = "2"', "'threads'", "an integer"),
    conf("threads-bool", "threads = true", "'threads'", "an integer"),
    conf("threads-huge", "threads = 5000", "'threads'", "at most 1024"),
    conf("cache-negative", "cache_budget_gb = -5", "'cache_budget_gb' must be at least 0 (got -5)"),
    conf("cache-text", 'cache_budget_gb = "8"', "'cache_budget_gb'", "a number"),
    conf("cache-nan", "cache_budget_gb = nan", "'cache_budget_gb'", "nan"),
    conf("cache-inf", "cache_budget_gb = inf", "'cache_budget_gb'", "inf"),
    conf("price-negative", "price_per_gpu_hour = -1", "'price_per_gpu_hour'", "at least 0"),
    conf("price-text", 'price_per_gpu_hour = "2.5"', "'price_per_gpu_hour'", "a number"),
    conf("attempts-zero", "max_attempts = 0", "'max_attempts'", "at least 1"),
    conf("attempts-huge", "max_attempts = 101", "'max_attempts'", "at most 100"),
    conf("device-unknown", 'device = "tpu"', "'device'", "'cuda'", "(got 'tpu')"),
    conf("device-number", "device = 1", "'device'"),
    conf("dtype-unknown", 'dtype = "int8"', "'dtype'", "'bfloat16'"),
    conf("graphics-unknown", 'graphics = "ascii-art"', "'graphics'", "'sixel'", "'ascii-art'"),
    conf("graphics-bool", "graphics = true", "'graphics'"),
    conf("theme-number", "theme = 3", "'theme'", "text"),
    conf("theme-long", f'theme = "{"n" * 100}"', "'theme'", "at most 64 characters"),
    conf("keys-number", "keys = 3", "'keys'", "a table"),
    conf("keys-value-number", "[keys]\n'queue.cancel' = 1", "'keys.queue.cancel'", "text"),
    conf(
        "model-roots-number",
        "model_roots = [1]",
        "'model_roots[0]' must be text (got 1)",
        only=True,
    ),
    conf("model-roots-text", 'model_roots = "/srv"', "'model_roots'", "a list", only=True),
    conf("model-roots-empty", 'model_roots = [""]', "'model_roots[0]'", "empty", only=True),
    conf("links-text", 'allow_outside_links = "yes"', "'allow_outside_links'", "true or false"),
    conf("pickle-relative", 'allow_pickle = ["rel/x.ckpt"]', "'allow_pickle[0]'", "absolute"),
    conf("pickle-text", 'allow_pickle = "/x.ckpt"', "'allow_pickle'", "a list"),
    conf("pickle-number", "allow_pickle = [1]", "'allow_pickle[0]'", "text"),
    conf("input-pixels-zero", "max_input_pixels = 0", "'max_input_pixels'", "at least 1"),
    conf("input-pixels-negative", "max_input_pixels = -1", "'max_input_pixels'"),
    conf("input-pixels-text", 'max_input_pixels = "100M"', "'max_input_pixels'", "an integer"),
    conf("input-pixels-huge", f"max_input_pixels = {2**40}", "'max_input_pixels'", "at most"),
    conf("output-pixels-zero", "max_output_pixels = 0", "'max_output_pixels'", "at least 1"),
    conf("output-pixels-float", "max_output_pixels = 1.5", "'max_output_pixels'", "an integer"),
    conf("video-frames-zero", "max_video_frames = 0", "'max_video_frames'", "at least 1"),
    conf("unknown-key", 'colour = "red"', "key 'colour' is not a known key"),
    conf("unknown-table", "[engine]\nx = 1", "key 'engine' is not a known key"),
    conf("toml-syntax", "threads = ", "TOML syntax error"),
    conf("nested-100000", nested("[", "]", 100_000), "nest more than 32 deep"),
    conf("over-1mb", f'theme = "{"x" * 1_100_000}"', "too large"),
    conf("not-utf8", b"threads = 1\n\xff\xfe\n", "not UTF-8 text", only=True),
    Case(
        "config-rejected-by-serve",
        ("serve",),
        ("config.toml", "'threads'"),
        config="threads = -3",
    ),
    Case(
        "config-rejected-by-run",
        ("run", "{pipeline}", "--no-wait"),
        ("config.toml", "'graphics'"),
        pipeline=GOOD,
        config='graphics = "ascii-art"',
    ),
    # lowered caps: a small input or output is refused at submit, nothing runs
    Case(
        "config-max-input-pixels",
        ("run", "{pipeline}", "--no-wait"),
        ("ref1.png is 64×64 (4,096 px)", "at most 1,000 px (max_input_pixels"),
        pipeline=UPSCALE,
        config="max_input_pixels = 1000",
    ),
    Case(
        "config-max-output-pixels",
        ("run", "{pipeline}", "--no-wait"),
        ("stage 1 (txt2img): key 'width' makes 64×64 images", "max_output_pixels"),
        pipeline=GOOD,
        config="max_output_pixels = 1000",
    ),
    Case(
        "config-max-output-pixels-upscale",
        ("run", "{pipeline}", "--dry-run"),
        ("stage 1 (upscale): key 'scale' makes 128×128 images", "from 64×64"),
        pipeline=UPSCALE,
        config="max_output_pixels = 10000",
    ),
]

FLAGS = [
    cli(
        "runs-limit-negative",
        "runs",
        "--limit",
        "-1",
        words=("--limit must be at least 1 (got -1)",),
    ),
    cli(
        "runs-limit-zero",
        "runs",
        "--limit",
        "0",
        words=(
            "--limit",
            "at least 1",
        ),
    ),
    cli("runs-limit-text", "runs", "--limit", "x", words=("--limit", "whole number", "'x'")),
    cli("runs-limit-float", "runs", "--limit", "1.5", words=("--limit", "whole number")),
    cli("runs-limit-empty", "runs", "--limit", "", words=("--limit", "whole number")),
    cli("runs-limit-huge", "runs", "--limit", "9" * 30, words=("--limit", "at most")),
    cli("runs-limit-5000-digits", "runs", "--limit", "9" * 5000, words=("whole number",)),
    cli("runs-limit-missing", "runs", "--limit", words=("--limit", "expected one argument")),
    cli("jobs-limit-negative", "jobs", "--limit", "-1", words=("--limit", "at least 1")),
    cli("jobs-limit-zero", "jobs", "--limit", "0", words=("--limit", "at least 1")),
    cli("jobs-status-unknown", "jobs", "--status", "done", words=("--status", "'done'")),
    cli("jobs-run-a-job", "jobs", "--run", "j1", words=("--run takes a run id",)),
    cli("jobs-run-not-an-id", "jobs", "--run", "x", words=("'x' is not an id",)),
    cli("jobs-run-overflow", "jobs", "--run", "r" + "9" * 25, words=("no id is larger",)),
    cli("gallery-limit-zero", "gallery", "--limit", "0", words=("--limit", "at least 1")),
    cli("gallery-limit-negative", "gallery", "--limit", "-5", words=("--limit", "(got -5)")),
    cli("gallery-limit-exponent", "gallery", "--limit", "1e3", words=("whole number",)),
    cli("gallery-kind-unknown", "gallery", "--kind", "audio", words=("--kind", "'audio'")),
    cli("gallery-since-bad", "gallery", "--since", "yesterday-ish", words=("--since",)),
    cli("unknown-flag", "runs", "--bogus", words=("unrecognized arguments: --bogus",)),
    cli("unknown-command", "frob", words=("invalid choice: 'frob'",)),
    cli("models-without-command", "models", words=("required",)),
    cli("show-without-id", "show", words=("required: id",)),
    cli("run-without-file", "run", words=("required",)),
    cli("data-dir-without-value", "runs", "--data-dir", words=("--data-dir", "expected one")),
    cli("approve-edit-format", "approve", "r1", "--edit", "a1", words=("ARTIFACT_ID=PROMPT",)),
    cli("approve-select-empty", "approve", "r1", "--select", words=("--select",)),
]

BIG = "9" * 25
IDS = [
    cli("show-run-overflow", "show", "r99999999999999999999999", words=("no id is larger",)),
    cli("show-job-overflow", "show", "j" + BIG, words=(f"'j{BIG}' is not an id",)),
    cli("show-artifact-overflow", "show", "a" + BIG, words=("no id is larger",)),
    cli("show-bare-overflow", "show", BIG, words=("no id is larger",)),
    cli("show-2-to-the-63", "show", f"r{2**63}", words=("no id is larger",)),
    cli("show-largest-id", "show", f"r{2**63 - 1}", words=(f"there is no run r{2**63 - 1}",)),
    cli("show-1000-digits", "show", "r" + "9" * 1000, words=("…' is not an id",)),
    cli("show-run-missing", "show", "r999", words=("there is no run r999",)),
    cli("show-job-missing", "show", "j999", words=("there is no job j999",)),
    cli("show-artifact-missing", "show", "a999", words=("there is no artifact a999",)),
    cli("show-unknown-prefix", "show", "x12", words=("'x12' is not an id",)),
    cli("show-negative", "show", "r-1", words=("'r-1' is not an id",)),
    cli("show-fraction", "show", "r1.5", words=("'r1.5' is not an id",)),
    cli("show-superscript", "show", "r²", words=("'r²' is not an id",)),
    cli("show-other-script-digits", "show", "r١٢", words=("is not an id",)),
    cli("show-empty", "show", "", words=("'' is not an id",)),
    cli("show-prefix-only", "show", "r", words=("'r' is not an id",)),
    cli("cancel-missing", "cancel", "r999", words=("there is no run r999",)),
    cli("cancel-not-an-id", "cancel", "x", words=("'x' is not an id",)),
    cli("cancel-overflow", "cancel", "j" + BIG, words=("no id is larger",)),
    cli("cancel-artifact", "cancel", "a1", words=("a1",)),
    cli("retry-missing", "retry", "j999", words=("there is no job j999",)),
    cli("retry-overflow", "retry", "r" + BIG, words=("no id is larger",)),
    cli("retry-nothing-failed", "retry", "r1", words=("no failed or cancelled jobs",)),
    cli("approve-not-in-review", "approve", "r2", words=("not waiting in review",)),
    cli("approve-overflow", "approve", "r" + BIG, words=("no id is larger",)),
    cli("approve-a-job", "approve", "j1", words=("j1 is not a run",)),
    cli("approve-select-missing", "approve", "r1", "--select", "a999", words=("a999 is not an",)),
    cli("approve-select-overflow", "approve", "r1", "--select", "a" + BIG, words=("no id is",)),
    cli("approve-select-a-run", "approve", "r1", "--select", "r1", words=("r1 is not an output",)),
    cli("approve-edit-not-output", "approve", "r1", "--edit", "a999=x", words=("a999 is not",)),
    cli("rerun-missing", "rerun", "a999", words=("there is no artifact a999",)),
    cli("rerun-a-run", "rerun", "r1", words=("rerun takes an artifact id", "not r1")),
    cli("rerun-a-missing-run", "rerun", "r777", words=("rerun takes an artifact id",)),
    cli("rerun-overflow", "rerun", "a" + BIG, words=("no id is larger",)),
    cli("rerun-bare-overflow", "rerun", BIG, words=("no id is larger",)),
    cli("rerun-not-an-id", "rerun", "x", words=("'x' is not an id",)),
]

DATA_DIRS = [
    Case("data-dir-a-file", ("runs",), ("{data}", "it is a file, not a folder"), data_dir="file"),
    Case("data-dir-a-file-tui", (), ("it is a file",), data_dir="file"),
    Case("data-dir-a-file-serve", ("serve",), ("it is a file",), code=4, data_dir="file"),
    Case(
        "data-dir-a-file-serve-process",
        ("serve",),
        ("it is a file",),
        code=4,
        data_dir="file",
        own_process=True,
    ),
    Case("data-dir-under-a-file", ("runs",), ("is a file, not a folder",), data_dir="under-file"),
    Case("data-dir-under-a-file-serve", ("serve",), ("a file",), code=4, data_dir="under-file"),
    Case("data-dir-denied", ("runs",), ("permission denied",), data_dir="denied"),
    Case("data-dir-denied-run", ("run", "x.toml"), ("permission denied",), data_dir="denied"),
    Case("data-dir-denied-serve", ("serve",), ("permission denied",), code=4, data_dir="denied"),
    Case("data-dir-read-only", ("runs",), ("read-only file system",), data_dir="read-only"),
    Case("data-dir-read-only-new", ("jobs",), ("read-only",), data_dir="read-only/new"),
    Case("data-dir-read-only-serve", ("serve",), ("read-only",), code=4, data_dir="read-only"),
]

CASES = [*PIPELINES, *CONFIGS, *FLAGS, *IDS, *DATA_DIRS]


# -- the shared data directory ------------------------------------------------------


@dataclass
class Place:
    data: Path
    files: Path
    roots: str  # the config line that shows the demo models
    odd: Path  # data directories of the data_dir cases
    pristine: Path  # a copy of `data` as the cases found it

    def restore(self) -> None:
        """Put the data directory back as it was, so one failing case fails alone."""
        shutil.rmtree(self.data)
        shutil.copytree(self.pristine, self.data)

    @property
    def base_config(self) -> str:
        return f"{self.roots}threads = 1\n"


def medialab(data: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "medialab_tui", "--data-dir", str(data), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )
    assert proc.returncode == 0, f"{args}: {proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def place(tmp_path_factory: pytest.TempPathFactory, demo_models_dir: Path) -> Iterator[Place]:
    """One data directory with history for every case, and the inputs they name."""
    root = tmp_path_factory.mktemp("bad-input")
    data, files = root / "home", root / "files"
    data.mkdir()
    files.mkdir()
    roots = f'model_roots = ["{demo_models_dir}"]\n'
    (data / "config.toml").write_text(f"{roots}threads = 1\n")
    for name in ("ref1.png", "ref2.png"):
        Image.new("RGB", (64, 64), "teal").save(files / name)
    (files / "notes.png").write_text("not really a picture")
    (files / "folder.png").mkdir()
    (files / "cut.png").write_bytes((files / "ref1.png").read_bytes()[:60])
    (files / "broken.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{oops")
    # A decompression bomb: 400 Mpx in a file of about 400 KB.
    Image.new("L", (20000, 20000)).save(files / "bomb.png")
    Image.new("1", (12000, 12000)).save(files / "big.png")
    # History: a run waiting in review with one artifact, and a pending run.
    review = files / "history.toml"
    review.write_text(
        with_images(UPSCALE, str(files / "ref1.png")).replace('name = "up"', 'mode = "checkpoint"')
        + "review = true\n"
        + '[[stages]]\ntype = "upscale"\nscale = 2\n'
    )
    medialab(data, "models", "scan")
    medialab(data, "run", str(review))
    medialab(data, "stop")  # the host `run` started: the cases check that nothing changes
    (files / "pending.toml").write_text(GOOD)
    medialab(data, "run", str(files / "pending.toml"), "--no-wait", "--no-start")
    odd = root / "odd"
    odd.mkdir()
    pristine = root / "pristine"
    shutil.copytree(data, pristine)
    yield Place(data, files, roots, odd, pristine)
    for path in odd.iterdir():
        if path.is_mount():
            subprocess.run(["umount", "-l", str(path)], check=False)


def store_state(data: Path) -> dict[str, Any]:
    """What `runs`, `jobs` and `gallery` say (as JSON), and every file under artifacts/
    and inputs/ with its size: the store as a user can see it."""
    state: dict[str, Any] = {}
    for command in ("runs", "jobs", "gallery"):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = main(["--data-dir", str(data), "--json", command])
        assert code == 0
        state[command] = json.loads(out.getvalue())
    state["files"] = sorted(
        (str(p.relative_to(data)), p.stat().st_size)
        for sub in ("artifacts", "inputs")
        for p in (data / sub).rglob("*")
        if p.is_file()
    )
    return state


@pytest.fixture(scope="module")
def before(place: Place) -> dict[str, Any]:
    state = store_state(place.data)
    assert len(state["runs"]) == 2 and state["gallery"] and state["jobs"]
    return state


# -- the cases' own data directories (item 8) -----------------------------------------


def odd_data_dir(place: Place, kind: str) -> tuple[Path, list[str]]:
    """A data directory that cannot be used, and the command prefix that meets it as
    its owner would (root passes permission checks: it runs without that power)."""
    base, _, below = kind.partition("/")
    folder = place.odd / base
    prefix: list[str] = []
    if base == "file":
        folder.touch()
    elif base == "under-file":
        (place.odd / "plain").touch()
        folder = place.odd / "plain" / "medialab"
    elif base == "denied":
        folder.mkdir(mode=0o000, exist_ok=True)
        folder.chmod(0o000)
        if os.geteuid() == 0:
            if not shutil.which("setpriv"):
                pytest.skip("running as root without setpriv to drop the override")
            prefix = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]
    elif base == "read-only":
        if not folder.is_mount():
            folder.mkdir(exist_ok=True)
            mount = ["mount", "-t", "tmpfs", "-o", "ro,size=1m,mode=0700", "tmpfs", str(folder)]
            proc = subprocess.run(mount, capture_output=True, text=True)
            if proc.returncode != 0:
                pytest.skip(f"cannot mount a read-only file system here ({proc.stderr.strip()})")
    return (folder / below if below else folder), prefix


# -- the test -----------------------------------------------------------------------------


def fill(text: str, place: Place, pipeline: Path | None, data: Path) -> str:
    return (
        text.replace("{pipeline}", str(pipeline))
        .replace("{files}", str(place.files))
        .replace("{data}", str(data))
    )


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bad_input_exits_with_its_code_one_sentence_and_changes_nothing(
    case: Case, place: Place, before: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    data, prefix = place.data, []
    if case.data_dir:
        data, prefix = odd_data_dir(place, case.data_dir)
    pipeline = None
    if case.pipeline is not None:
        pipeline = place.files / f"{case.id}.toml"
        text = fill(case.pipeline, place, None, data)
        pipeline.write_bytes(text.encode("utf-8", "surrogateescape"))
    config = place.data / "config.toml"
    if case.config is not None:
        raw = case.config if isinstance(case.config, bytes) else case.config.encode() + b"\n"
        config.write_bytes(raw if case.config_only else place.roots.encode() + raw)
    argv = ["--data-dir", str(data), *(fill(a, place, pipeline, data) for a in case.args)]
    try:
        capsys.readouterr()
        if case.own_process or prefix:
            proc = subprocess.run(
                [*prefix, sys.executable, "-m", "medialab_tui", *argv],
                capture_output=True,
                text=True,
                timeout=60,
                cwd=ROOT,
            )
            code, out, err = proc.returncode, proc.stdout, proc.stderr
        else:
            code = main(argv)
            out, err = capsys.readouterr()
    finally:
        config.write_text(place.base_config)

    after = store_state(place.data)
    if after != before:
        place.restore()
    assert after == before, f"the store changed: {out}"
    assert code == case.code, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("medialab: "), lines[0]
    for word in case.words:
        assert fill(word, place, pipeline, data) in lines[0], lines[0]
    assert out == "", out


def test_a_4096_image_upscaled_x4_passes_the_default_caps(
    place: Place, capsys: pytest.CaptureFixture[str]
) -> None:
    """The caps leave room for real work: 4096 × 4096 × 4 is 268 Mpx, the output cap."""
    path = place.files / "4k-x4.toml"
    path.write_text(BIG_TXT2IMG + '[[stages]]\ntype = "upscale"\nscale = 4\n')
    code = main(["--data-dir", str(place.data), "--json", "run", str(path), "--dry-run"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert json.loads(out)["outputs"] == 2


# -- the same pipelines, handed to a warm engine host ----------------------------------

# Refused before anything is handed over: the file is read here first (what it is, its
# size, its bytes); a dry run validates here, and a run that needs the operator's yes
# is asked here.
READ_HERE = ("no such file", "a folder, not", "not a regular file", "too large (", "not UTF-8")
ASKED_HERE = ("large-run-no-yes",)
WARM_CASES = [
    case
    for case in PIPELINES
    if case.args[:1] == ("run",) and case.config is None and case.data_dir is None
]


@pytest.fixture(scope="module")
def warm(place: Place) -> Iterator[Path]:
    """A copy of the cases' data directory with an idle engine host on it (its pending
    run cancelled, so the host has nothing to do but the cases)."""
    data = place.pristine.parent / "warm"
    shutil.copytree(place.pristine, data)
    for run in json.loads(medialab(data, "--json", "runs").stdout):
        if run["status"] == "pending":
            medialab(data, "cancel", run["id"])
    log = (place.pristine.parent / "warm-serve.log").open("w")
    host = subprocess.Popen(
        [sys.executable, "-m", "medialab_tui", "--data-dir", str(data), "serve"],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    try:

        def waking() -> bool:
            """the warm host to say it takes a wake-up signal"""
            assert host.poll() is None, (place.pristine.parent / "warm-serve.log").read_text()
            card = _setting(data, "host.info")
            return card is not None and json.loads(card).get("wake") == "SIGUSR1"

        wait_for(waking, timeout=120)
        yield data
    finally:
        medialab(data, "stop", timeout=120)
        host.wait(timeout=60)
        log.close()


def _setting(data: Path, key: str) -> str | None:
    conn = sqlite3.connect(data / "medialab.db", timeout=30)
    try:
        row = conn.execute("SELECT value FROM setting WHERE key = ?", (key,)).fetchone()
    finally:
        conn.close()
    return None if row is None else str(row[0])


@pytest.mark.parametrize("case", WARM_CASES, ids=lambda c: c.id)
def test_a_bad_pipeline_handed_to_a_warm_host_reads_the_same_and_changes_nothing(
    case: Case, place: Place, warm: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pipeline = None
    if case.pipeline is not None:
        pipeline = place.files / f"warm-{case.id}.toml"  # beside the inputs it names
        text = fill(case.pipeline, place, None, warm)
        pipeline.write_bytes(text.encode("utf-8", "surrogateescape"))
    host_log = warm.parent / "warm-serve.log"
    before, logged = store_state(warm), host_log.stat().st_size
    argv = ["--data-dir", str(warm), *(fill(a, place, pipeline, warm) for a in case.args)]
    capsys.readouterr()
    code = main(argv)
    out, err = capsys.readouterr()

    assert store_state(warm) == before, f"the store changed: {out}"
    assert code == case.code, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("medialab: "), err
    for word in case.words:
        assert fill(word, place, pipeline, warm) in lines[0], lines[0]
    assert out == "", out
    assert _setting(warm, "host.info") is not None, "the host is still there"
    assert _setting_keys(warm, "submit.%") == [], "a request or a reply was left"
    # The host refused it, unless the client never got as far as handing it over.
    # (It logs the refusal before it replies.)
    sentence = lines[0].removeprefix("medialab: ")
    new = host_log.read_bytes()[logged:].decode("utf-8", "replace")
    refused = f"refused a handed-over run from pid {os.getpid()}: " in new
    here = "--dry-run" in case.args or case.id in ASKED_HERE
    if here or any(reason in sentence for reason in READ_HERE):
        assert not refused, sentence
    else:
        assert refused, sentence


def _setting_keys(data: Path, pattern: str) -> list[str]:
    conn = sqlite3.connect(data / "medialab.db", timeout=30)
    try:
        rows = conn.execute("SELECT key FROM setting WHERE key LIKE ?", (pattern,)).fetchall()
    finally:
        conn.close()
    return [str(key) for (key,) in rows]
