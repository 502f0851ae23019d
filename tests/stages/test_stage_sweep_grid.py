"""Sweeps (A1111's X/Y/Z plot) and the `grid` contact sheet, through the real
`medialab run` and worker on the demo models.

One data directory serves the module: a txt2img sweep over seeds followed by an
img2img sweep over strength is queued first, then `medialab run` hosts the engine for
a txt2img sweep over cfg and steps, each followed by a grid, so one worker runs both.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from conftest import Home, query, settled

CELL = 32

TXT2IMG_SWEEP = f"""
name = "plot"
[inputs]
prompts = ["a lighthouse, at dusk"]
seeds = [5]
[[stages]]
type = "txt2img"
model = "demo-sd15"
width = {CELL}
height = {CELL}
sweep = {{ cfg = [4, 7], steps = [2, 3] }}
[[stages]]
type = "grid"
"""

CHAIN_SWEEP = f"""
name = "chain"
[inputs]
prompts = ["a harbour"]
[[stages]]
type = "txt2img"
model = "demo-sd15"
steps = 2
width = {CELL}
height = {CELL}
sweep = {{ seed = [11, 12] }}
[[stages]]
type = "img2img"
model = "demo-sd15"
steps = 2
sweep = {{ strength = [0.5, 0.9] }}
[[stages]]
type = "grid"
gap = 2
"""


@dataclass
class Plot:
    home: Home
    runs: dict[str, int]


@pytest.fixture(scope="module")
def plot(tmp_path_factory: pytest.TempPathFactory, demo_models_dir: Path) -> Plot:
    root = tmp_path_factory.mktemp("sweep-grid") / "home"
    root.mkdir()
    (root / "config.toml").write_text(f'model_roots = ["{demo_models_dir}"]\nthreads = 1\n')
    home = Home(root)
    home.cli("models", "scan", check=True)
    proc = home.cli(
        "run", str(home.pipeline("chain", CHAIN_SWEEP)), "--no-wait", "--json", check=True
    )
    runs = {"chain": int(json.loads(proc.stdout)["run_id"].removeprefix("r"))}
    proc = home.cli("run", str(home.pipeline("plot", TXT2IMG_SWEEP)), "--json", timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = json.loads(proc.stdout.splitlines()[-1])
    assert summary["status"] == "succeeded", summary
    runs["txt2img"] = int(summary["run_id"].removeprefix("r"))
    # Runs are served fairly: the chain submitted first can still be running.
    assert settled(home, runs, timeout=300) == {"chain": "succeeded", "txt2img": "succeeded"}
    return Plot(home, runs)


def jobs(plot: Plot, run: str, stage_index: int) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    rows = query(
        plot.home,
        "SELECT params, item FROM job WHERE run_id = ? AND stage_index = ? ORDER BY id",
        plot.runs[run],
        stage_index,
    )
    return [(json.loads(p), json.loads(i)) for p, i in rows]


def artifacts(plot: Plot, run: str, stage: str) -> list[tuple[int, str, dict[str, Any]]]:
    rows = query(
        plot.home,
        "SELECT id, path, params FROM artifact WHERE run_id = ? AND stage = ? ORDER BY id",
        plot.runs[run],
        stage,
    )
    return [(i, path, json.loads(params)) for i, path, params in rows]


def chunk(path: str) -> dict[str, Any]:
    with Image.open(path) as im:
        return json.loads(im.info["medialab"])


def rgb(path: str) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def test_a_sweep_makes_one_job_per_cell_with_its_values(plot: Plot) -> None:
    made = jobs(plot, "txt2img", 0)
    cells = [(params["cfg"], params["steps"]) for params, _ in made]
    assert sorted(cells) == [(4, 2), (4, 3), (7, 2), (7, 3)]
    for params, item in made:
        assert "sweep" not in params
        assert item["cell"] == {"cfg": params["cfg"], "steps": params["steps"]}
    images = artifacts(plot, "txt2img", "txt2img")
    assert len(images) == 4
    for _, path, params in images:
        own = params["params"]
        assert params["cell"] == {"cfg": own["cfg"], "steps": own["steps"]}
        assert chunk(path)["cell"] == params["cell"]
        with Image.open(path) as im:
            assert f"Steps: {own['steps']}, " in im.info["parameters"]


def test_cells_go_down_the_chain_and_join_the_next_stages_sweep(plot: Plot) -> None:
    first = jobs(plot, "chain", 0)
    assert sorted((i["seed"], i["cell"]["seed"]) for _, i in first) == [(11, 11), (12, 12)]
    second = jobs(plot, "chain", 1)
    assert sorted((i["seed"], p["strength"]) for p, i in second) == [
        (11, 0.5),
        (11, 0.9),
        (12, 0.5),
        (12, 0.9),
    ]
    for params, item in second:
        assert item["cell"] == {"seed": item["seed"], "strength": params["strength"]}
    made = artifacts(plot, "chain", "img2img")
    assert sorted(p["seed"] for _, _, p in made) == [11, 11, 12, 12]
    assert all(p["cell"]["seed"] == p["seed"] for _, _, p in made)


def test_the_grid_is_one_labelled_sheet_of_every_cell(plot: Plot) -> None:
    images = artifacts(plot, "txt2img", "txt2img")
    sheets = artifacts(plot, "txt2img", "grid")
    assert len(sheets) == 1
    ident, path, params = sheets[0]
    meta = chunk(path)
    assert meta["grid"]["axes"] == ["cfg", "steps"]
    assert (meta["grid"]["columns"], meta["grid"]["rows"]) == (2, 2)
    listed = {c["artifact"]: c for c in meta["cells"]}
    assert sorted(listed) == sorted(i for i, _, _ in images)
    sheet = rgb(path)
    height, width = sheet.shape[:2]
    # Larger than the four cells and their gaps: the label margins at the top and left.
    assert width > 2 * CELL + 3 * 4 and height > 2 * CELL + 3 * 4
    for cell_id, cell_path, cell_params in images:
        entry = listed[cell_id]
        assert entry["cell"] == cell_params["cell"]
        # cfg runs along the columns, steps down the rows.
        assert entry["column"] == [4, 7].index(cell_params["cell"]["cfg"])
        assert entry["row"] == [2, 3].index(cell_params["cell"]["steps"])
        left, top, right, bottom = entry["box"]
        assert (right - left, bottom - top) == (CELL, CELL)
        assert np.array_equal(sheet[top:bottom, left:right], rgb(cell_path))
    boxes = [c["box"] for c in meta["cells"]]
    margin_top, margin_left = min(b[1] for b in boxes), min(b[0] for b in boxes)
    # The labels are drawn there: dark text on the white margin.
    assert margin_top > 4 and margin_left > 4
    assert (sheet[:margin_top, margin_left:] < 128).any()
    assert (sheet[margin_top:, :margin_left] < 128).any()
    parents = [
        p
        for (p,) in query(
            plot.home, "SELECT parent_id FROM artifactparent WHERE artifact_id = ?", ident
        )
    ]
    assert sorted(parents) == sorted(i for i, _, _ in images)
    assert params["stage"] == "grid"


def test_the_chains_grid_puts_seed_on_columns_and_strength_on_rows(plot: Plot) -> None:
    ((_, path, _),) = artifacts(plot, "chain", "grid")
    meta = chunk(path)
    assert meta["grid"]["axes"] == ["seed", "strength"]
    places = {
        (c["cell"]["seed"], c["cell"]["strength"]): (c["column"], c["row"]) for c in meta["cells"]
    }
    assert places == {(11, 0.5): (0, 0), (12, 0.5): (1, 0), (11, 0.9): (0, 1), (12, 0.9): (1, 1)}
    assert [c["seed"] for c in meta["cells"]] == [c["cell"]["seed"] for c in meta["cells"]]


def dry_run(home: Home, text: str) -> dict[str, Any]:
    proc = home.cli("run", str(home.pipeline("dry", text)), "--dry-run", "--json", check=True)
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def test_the_dry_run_shows_the_axes_and_multiplies_jobs_and_estimates(plot: Plot) -> None:
    big = TXT2IMG_SWEEP.replace(f"= {CELL}", "= 512").replace("[2, 3]", "[20, 30]")
    swept = dry_run(plot.home, big)
    first = swept["stages"][0]
    assert (first["jobs"], first["cells"]) == (4, 4)
    assert first["sweep"] == {"cfg": [4, 7], "steps": [20, 30]}
    assert swept["stages"][1]["jobs"] == 1
    single = {
        steps: dry_run(
            plot.home, big.replace("sweep = { cfg = [4, 7], steps = [20, 30] }", f"steps = {steps}")
        )["stages"][0]["seconds"]
        for steps in (20, 30)
    }
    assert first["seconds"] == pytest.approx(2 * (single[20] + single[30]), rel=0.02)
    proc = plot.home.cli("run", str(plot.home.pipeline("dry", big)), "--dry-run", check=True)
    assert "stage 1 (txt2img): sweep cfg 4, 7 × steps 20, 30 = 4 cells" in proc.stdout


def _txt2img(sweep: str) -> str:
    return TXT2IMG_SWEEP.replace("sweep = { cfg = [4, 7], steps = [2, 3] }", sweep)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(
            _txt2img("sweep = { strength = [0.5] }"),
            "stage 1 (txt2img): key 'sweep': 'strength' is not a key of this stage",
            id="key-the-stage-lacks",
        ),
        pytest.param(
            _txt2img("sweep = { cfg = [] }"),
            "stage 1 (txt2img): key 'sweep.cfg' is an empty list",
            id="empty-list",
        ),
        pytest.param(
            _txt2img('sweep = { sampler = ["euler", "flow_euler"] }'),
            "key 'sweep.sampler'",
            id="sampler-the-family-lacks",
        ),
        pytest.param(
            _txt2img('sweep = { model = ["demo-sd15"] }'),
            "'model' is a key sweep cannot vary",
            id="model",
        ),
        pytest.param(
            '[inputs]\nprompts = ["a"]\n[[stages]]\ntype = "prompt_enhance"\n'
            '[[stages]]\ntype = "grid"\n',
            "stage 2 (grid) takes images but stage 1 (prompt_enhance) gives prompts",
            id="grid-after-prompts",
        ),
        pytest.param(
            '[inputs]\nimages = ["photo.png"]\n[[stages]]\ntype = "i2v"\nmodel = "demo-svd"\n'
            '[[stages]]\ntype = "grid"\n',
            "stage 2 (grid) takes images but stage 1 (i2v) gives videos",
            id="grid-after-videos",
        ),
    ],
)
def test_bad_sweeps_and_grids_are_refused_and_nothing_is_stored(
    plot: Plot, text: str, message: str
) -> None:
    before = [query(plot.home, f"SELECT COUNT(*) FROM {t}") for t in ("run", "job", "artifact")]
    proc = plot.home.cli("run", str(plot.home.pipeline("bad", text)), "--json")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    after = [query(plot.home, f"SELECT COUNT(*) FROM {t}") for t in ("run", "job", "artifact")]
    assert after == before


def test_a_swept_value_out_of_range_is_the_keys_own_error(plot: Plot) -> None:
    swept = plot.home.cli(
        "run", str(plot.home.pipeline("bad", _txt2img("sweep = { cfg = [4, 100] }")))
    )
    plain = plot.home.cli("run", str(plot.home.pipeline("bad", _txt2img("cfg = 100"))))
    assert swept.returncode == plain.returncode == 2
    assert "key 'sweep.cfg' must be at most 50 (got 100)" in swept.stderr
    assert swept.stderr.replace("sweep.cfg", "cfg") == plain.stderr


def test_the_pipeline_of_a_swept_artifact_makes_that_cell_only(plot: Plot) -> None:
    import tomllib

    (ident, _, params), *_ = [a for a in artifacts(plot, "chain", "img2img") if a[2]["seed"] == 12]
    proc = plot.home.cli("show", f"a{ident}", "--toml", check=True)
    document = tomllib.loads(proc.stdout)
    first, second = document["stages"][:2]
    assert "sweep" not in first and "sweep" not in second
    assert document["inputs"]["seeds"] == [12]
    assert second["strength"] == params["cell"]["strength"]
    path = plot.home.pipeline("again", proc.stdout)
    again = json.loads(plot.home.cli("run", str(path), "--dry-run", "--json", check=True).stdout)
    assert [s["jobs"] for s in again["stages"]] == [1, 1]


def test_a_sheet_larger_than_the_pixel_cap_has_its_cells_scaled_down_to_fit(plot: Plot) -> None:
    """`max_output_pixels` holds for the sheet too: the cells shrink, the labels do not."""
    cap = 20_000  # 2×2 cells of 64 px with their labels take about 33,000
    config = plot.home.root / "config.toml"
    before = config.read_text()
    big = TXT2IMG_SWEEP.replace(f"= {CELL}", "= 64").replace('name = "plot"', 'name = "capped"')
    config.write_text(before + f"max_output_pixels = {cap}\n")
    try:
        proc = plot.home.cli("run", str(plot.home.pipeline("capped", big)), "--json", timeout=300)
    finally:
        config.write_text(before)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    plot.runs["capped"] = int(json.loads(proc.stdout.splitlines()[-1])["run_id"].removeprefix("r"))
    ((_, path, _),) = artifacts(plot, "capped", "grid")
    meta = chunk(path)
    sheet = rgb(path)
    height, width = sheet.shape[:2]
    assert width * height <= cap
    assert 0 < meta["grid"]["scale"] < 1
    assert (meta["grid"]["columns"], meta["grid"]["rows"]) == (2, 2)
    side = meta["grid"]["cell_width"]
    assert side < 64 and meta["grid"]["cell_height"] == side
    for entry in meta["cells"]:
        left, top, right, bottom = entry["box"]
        assert (right - left, bottom - top) == (side, side)
        with Image.open(entry["image"]) as made:
            shrunk = np.asarray(made.convert("RGB").resize((side, side), Image.Resampling.LANCZOS))
        # The cell is its image made smaller, not cut.
        assert np.abs(sheet[top:bottom, left:right].astype(int) - shrunk).mean() < 2
    boxes = [c["box"] for c in meta["cells"]]
    margin_top, margin_left = min(b[1] for b in boxes), min(b[0] for b in boxes)
    # The labels keep the font's smallest readable size (12 px lines with padding).
    assert margin_top >= 24 and margin_left >= 24
    assert (sheet[:margin_top, margin_left:] < 128).any()
    assert (sheet[margin_top:, :margin_left] < 128).any()
    # Without the cap (the sheet of the same plot at 32 px) nothing is scaled.
    ((_, uncapped, _),) = artifacts(plot, "txt2img", "grid")
    assert chunk(uncapped)["grid"]["scale"] == 1


def test_a_swept_img2img_output_reads_back_as_a1111_reads_it(plot: Plot) -> None:
    """Each cell's image names its own values in its infotext (img2img names itself)."""
    from medialab_tui.interop.infotext import parse_infotext

    sha = next(m["sha256"] for m in plot.home.json("models", "list") if m["name"] == "demo-sd15")
    made = artifacts(plot, "chain", "img2img")
    assert len(made) == 4
    for _, path, params in made:
        with Image.open(path) as im:
            text = im.info["parameters"]
        assert text.splitlines()[-1].startswith("Steps: ")
        info = parse_infotext(text)
        assert info.prompt == "a harbour"
        p = info.params
        assert (p["Steps"], p["Seed"], p["Size"]) == ("2", str(params["seed"]), f"{CELL}x{CELL}")
        assert p["Denoising strength"] == str(params["cell"]["strength"])
        assert (p["Model"], p["Model hash"]) == ("demo-sd15", sha[:10])
