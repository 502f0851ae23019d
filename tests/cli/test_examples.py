"""Every pipeline in examples/ runs on the demo models, through one real engine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from conftest import EXAMPLES, Home, query, run_status, wait_for
from medialab_tui.store.artifacts import read_png_meta

pytestmark = pytest.mark.slow

# example → (status it ends in, outputs of its last stage, stages)
EXPECTED = {
    "classic-chain": (
        "succeeded",
        1,
        ["txt2img", "refine", "detail", "detail", "detail", "upscale"],
    ),
    "enhance-review": ("review", 10, ["prompt_enhance", "txt2img"]),
    "blend-references": ("succeeded", 2, ["blend"]),
    "controlnet-lora": ("succeeded", 2, ["img2img"]),
}


def test_every_example_runs_on_the_demo_models(home: Home, serve) -> None:
    assert {p.stem for p in EXAMPLES.glob("*.toml")} >= set(EXPECTED)
    runs = {}
    for name in EXPECTED:
        # Submitted in place: the examples name their images relative to themselves.
        proc = home.cli(
            "run", str(EXAMPLES / f"{name}.toml"), "--no-wait", "--no-start", "--json", check=True
        )
        runs[name] = int(json.loads(proc.stdout)["run_id"].removeprefix("r"))
    serve()
    for name, run_id in runs.items():
        status = EXPECTED[name][0]
        wait_for(lambda r=run_id, s=status: run_status(home, r) == s, timeout=240)

    for name, run_id in runs.items():
        status, outputs, stages = EXPECTED[name]
        made = query(
            home,
            "SELECT a.id, a.stage, a.path, a.kind FROM artifact a JOIN job j ON j.id = a.job_id "
            "WHERE a.run_id=? ORDER BY j.stage_index, a.id",
            run_id,
        )
        assert [s for s in dict.fromkeys(m[1] for m in made)] == list(dict.fromkeys(stages))
        last = [m for m in made if m[1] == stages[-1]]
        assert len(last) == outputs, name
        for _, stage, path, kind in made:
            if kind != "image":
                continue
            meta = read_png_meta(Path(path))
            assert meta["stage"] == stage and meta["run_id"] == run_id
            with Image.open(path) as im:
                assert "Seed:" in im.info["parameters"]
        # Every output after the first stage names its parents.
        for art_id, stage, _, _ in made:
            if stage != stages[0]:
                assert (
                    query(home, "SELECT count(*) FROM artifactparent WHERE artifact_id=?", art_id)[
                        0
                    ][0]
                    >= 1
                ), (name, art_id)

    # The review example continues with two of its ten images, which are upscaled.
    review_run = runs["enhance-review"]
    picks = [
        m[0]
        for m in query(
            home, "SELECT id FROM artifact WHERE run_id=? AND kind='image' ORDER BY id", review_run
        )
    ][:2]
    home.cli("approve", f"r{review_run}", "--select", *[f"a{i}" for i in picks], check=True)
    wait_for(lambda: run_status(home, review_run) == "succeeded", timeout=120)
    upscaled = query(
        home,
        "SELECT p.parent_id FROM artifact a JOIN artifactparent p ON p.artifact_id = a.id "
        "WHERE a.run_id=? AND a.stage='upscale' ORDER BY p.parent_id",
        review_run,
    )
    assert [u[0] for u in upscaled] == picks
    # The blend's references are input files, not artifacts: its metadata names all three.
    blend = query(home, "SELECT path FROM artifact WHERE run_id=?", runs["blend-references"])
    assert len(read_png_meta(Path(blend[0][0]))["sources"]) == 3
