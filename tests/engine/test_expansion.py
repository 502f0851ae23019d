"""Expansion through every stage, the dry-run tree and estimate, and very large runs."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from PIL import Image

from conftest import Home
from medialab_tui.cli import LARGE_RUN_JOBS, main
from medialab_tui.engine import queue

CHAIN = """
name = "chain"
[inputs]
prompts = ["a lighthouse"]
seeds = [5]
[[stages]]
type = "prompt_enhance"
count = 5
[[stages]]
type = "txt2img"
model = "demo-sd15"
steps = 4
width = 64
height = 64
per_input = 2
[[stages]]
type = "upscale"
scale = 2
"""


def _runs(home: Home) -> int:
    conn = sqlite3.connect(home.root / "medialab.db")
    try:
        return conn.execute("SELECT count(*) FROM run").fetchone()[0]
    finally:
        conn.close()


def _dry_run(home: Home, path: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> str:
    code = main(["--data-dir", str(home.root), *extra, "run", str(path), "--dry-run"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out


def test_dry_run_shows_the_tree_per_stage_counts_and_cost(
    home: Home, capsys: pytest.CaptureFixture[str]
) -> None:
    (home.root / "config.toml").write_text(
        (home.root / "config.toml").read_text() + "price_per_gpu_hour = 2.5\n"
    )
    path = home.pipeline("chain", CHAIN)
    text = _dry_run(home, path, capsys)
    assert "chain: 1 prompt → 5 prompts → 10 images → 10 upscaled" in text
    assert "per GPU-hour" in text
    plan = json.loads(_dry_run(home, path, capsys, "--json"))
    assert [(s["jobs"], s["outputs"]) for s in plan["stages"]] == [(1, 5), (5, 10), (10, 10)]
    assert plan["jobs"] == 16 and plan["outputs"] == 25
    assert plan["cost"] == pytest.approx(plan["seconds"] / 3600 * 2.5, abs=1e-4)
    assert all(s["basis"] == "guess" for s in plan["stages"])
    assert _runs(home) == 0


def test_set_mode_multiplies_the_variants_and_blend_gathers(
    home: Home, capsys: pytest.CaptureFixture[str]
) -> None:
    sets = CHAIN.replace("count = 5", 'count = 2\nsets = ["angles", "lighting"]')
    plan = json.loads(_dry_run(home, home.pipeline("sets", sets), capsys, "--json"))
    # 2 variants × 6 angles × 5 lightings, each made into 2 images.
    assert [s["outputs"] for s in plan["stages"]] == [60, 120, 120]

    for name in ("r1.png", "r2.png", "r3.png"):
        Image.new("RGB", (64, 64), "orange").save(home.root.parent / name)
    blend = """
name = "mix"
[inputs]
images = ["r1.png", "r2.png", "r3.png"]
prompts = ["a", "b"]
seeds = [1]
[[stages]]
type = "blend"
model = "demo-sd15"
per_input = 2
width = 64
height = 64
[[stages]]
type = "img2img"
model = "demo-sd15"
[[stages]]
type = "blend"
model = "demo-sd15"
width = 64
height = 64
"""
    plan = json.loads(_dry_run(home, home.pipeline("mix", blend), capsys, "--json"))
    # One blend job per prompt, holding all three images; a later blend takes everything.
    assert [(s["jobs"], s["outputs"]) for s in plan["stages"]] == [(2, 4), (4, 4), (1, 1)]
    assert plan["tree"] == "3 images → 4 blended → 4 images → 1 blended"


def test_a_very_large_run_needs_yes(home: Home, capsys: pytest.CaptureFixture[str]) -> None:
    many = CHAIN.replace("seeds = [5]", f"seed = 1\ncount = {LARGE_RUN_JOBS}")
    path = home.pipeline("many", many)
    code = main(["--data-dir", str(home.root), "run", str(path), "--no-wait"])
    err = capsys.readouterr().err
    assert code == 2
    assert "pass --yes" in err and f"{LARGE_RUN_JOBS * 16} jobs" in err
    assert _runs(home) == 0
    code = main(["--data-dir", str(home.root), "run", str(path), "--no-wait", "--yes"])
    assert code == 0, capsys.readouterr().err
    assert _runs(home) == 1
    assert queue.LARGE_RUN_JOBS == LARGE_RUN_JOBS
