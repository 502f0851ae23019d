"""Queue requests from the command line: review and approve, retry, pause, priorities, rerun."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from conftest import (
    Home,
    job_row,
    query,
    run_status,
    stop_engine_host,
    submit,
    txt2img_toml,
    wait_for,
)
from medialab_tui.config import DataDir, load_config
from medialab_tui.engine import daemon, queue
from medialab_tui.engine.pipeline import parse_pipeline
from medialab_tui.engine.scheduler import Engine
from medialab_tui.store.db import Store

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def warm(tmp_path_factory: pytest.TempPathFactory, scanned_home: Path) -> Iterator[Home]:
    """One data directory for the tests that only add runs of their own and look at
    those: the host the first `run` starts stays warm (keep-alive) for the next, as it
    does for a user, so they share one worker and its model cache."""
    root = tmp_path_factory.mktemp("warm") / "home"
    shutil.copytree(scanned_home, root)
    yield Home(root)
    stop_engine_host(root)


def outputs(home: Home, run_ref: str, stage: str) -> list[dict]:
    """A run's artifacts of one stage, newest first."""
    return [a for a in home.json("gallery") if a["run_id"] == run_ref and a["stage"] == stage]


CHECKPOINT = """
name = "pick"
mode = "checkpoint"
[inputs]
prompts = ["three candidates"]
seeds = [11]
[[stages]]
type = "txt2img"
model = "demo-sd15"
steps = 4
width = 64
height = 64
per_input = 3
review = true
[[stages]]
type = "upscale"
scale = 2
"""


def test_checkpoint_run_pauses_in_review_and_continues_with_the_selection(warm: Home) -> None:
    home = warm
    path = home.pipeline("pick", CHECKPOINT)
    proc = home.cli("run", str(path), "--json", timeout=300)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.splitlines()[-1])
    assert summary["status"] == "review"
    assert len(summary["artifacts"]) == 3
    run_ref = summary["run_id"]
    candidates = outputs(home, run_ref, "txt2img")
    assert len(candidates) == 3
    chosen = candidates[1]["id"]

    other = submit(home, txt2img_toml(prompts=["other"], seeds=[1]), "other")
    wrong = home.cli("approve", f"r{other}")
    assert wrong.returncode == 2 and "not waiting in review" in wrong.stderr
    foreign = home.cli("approve", run_ref, "--select", "a999")
    assert foreign.returncode == 2 and "not an output" in foreign.stderr

    # The host that `run` started is still up (keep-alive): it continues the run.
    home.cli("approve", run_ref, "--select", chosen, check=True)
    wait_for(lambda: run_status(home, int(run_ref[1:])) == "succeeded", timeout=90)
    shown = home.json("show", run_ref)
    upscales = [j for j in shown["jobs"] if j["stage"] == "upscale"]
    assert len(upscales) == 1
    final = outputs(home, run_ref, "upscale")
    assert len(final) == 1
    assert home.json("show", final[0]["id"])["parents"] == [chosen]
    # The candidates that were not picked stay in the gallery.
    assert len(outputs(home, run_ref, "txt2img")) == 3
    wait_for(lambda: run_status(home, other) == "succeeded", timeout=90)


def test_a_job_whose_model_vanished_fails_as_missing_model_and_retry_recovers(
    home: Home, demo_models_dir: Path
) -> None:
    model = home.root / "models" / "mine"
    shutil.copytree(demo_models_dir / "demo-sd15", model)
    home.cli("models", "scan", check=True)
    path = home.pipeline("mine", txt2img_toml(prompts=["x"], seeds=[3], model="mine"))
    # Held until the model is gone: a warm worker would run a demo job at once.
    home.cli("pause", check=True)
    run_id = json.loads(home.cli("run", str(path), "--no-wait", "--json", check=True).stdout)[
        "run_id"
    ]
    shutil.rmtree(model)
    home.cli("resume", check=True)

    wait_for(lambda: run_status(home, int(str(run_id).lstrip("r"))) == "failed", timeout=300)
    job = home.json("jobs", "--run", run_id)[0]
    assert job["status"] == "failed" and job["error_kind"] == "missing_model"
    assert "\n" not in job["error"] and "Traceback" not in job["error"]
    # The host's watch has dropped the model from the registry: a new run is refused.
    wait_for(lambda: not query(home, "SELECT 1 FROM model WHERE name='mine'"), timeout=10)
    proc = home.cli("run", str(path), "--json")
    assert proc.returncode == 2 and "unknown model 'mine'" in proc.stderr

    shutil.copytree(demo_models_dir / "demo-sd15", model)
    wait_for(lambda: query(home, "SELECT 1 FROM model WHERE name='mine'"), timeout=10)
    assert "mine" in {m["name"] for m in home.json("models", "list")}
    home.cli("pause", check=True)  # the warm host would run the retry at once
    home.cli("retry", job["id"], check=True)
    assert home.json("show", run_id)["status"] == "running"
    again = home.cli("retry", job["id"])
    assert again.returncode == 2 and "queued" in again.stderr


def _host_card(home: Home) -> dict | None:
    return daemon.host_info(Store(DataDir(home.root).db_path))


def test_pause_holds_new_jobs_and_resume_releases_them(home: Home, serve) -> None:
    serve()
    home.cli("pause", check=True)

    def idle() -> bool:
        """the host to find its queue empty"""
        card = _host_card(home)
        return card is not None and card["idle_since"] is not None

    wait_for(idle, timeout=30)
    run_id = submit(home, txt2img_toml(prompts=["held"], seeds=[1]))

    def busy() -> bool:
        """the host to see the held job (it is no longer idle)"""
        card = _host_card(home)
        return card is not None and card["idle_since"] is None

    # The look that saw the job also decided not to start it; the stop is seen on a
    # later look, so once the host has left, that decision is on record.
    wait_for(busy, timeout=30)
    home.cli("stop", check=True, timeout=60)
    assert query(home, "SELECT status, attempts FROM job WHERE run_id=?", run_id) == [("queued", 0)]
    home.cli("resume", check=True)
    serve()
    wait_for(lambda: run_status(home, run_id) == "succeeded", timeout=60)


def test_a_raised_run_is_claimed_first(home: Home) -> None:
    data = DataDir(home.root)
    store = Store(data.db_path)
    doc = {
        "inputs": {"prompts": ["p"], "seeds": [1]},
        "stages": [
            {"type": "txt2img", "model": "demo-sd15", "steps": 1, "width": 64, "height": 64}
        ],
    }
    first = queue.submit(
        store, data, queue.prepare(store, parse_pipeline(doc, "a"), "a", home.root)
    )
    second = queue.submit(
        store, data, queue.prepare(store, parse_pipeline(doc, "b"), "b", home.root)
    )
    assert queue.set_priority(store, second.ref, +1) == 1
    engine = Engine(data, store, load_config(data))
    job = engine.claim_next()
    assert job is not None and job.run_id == second.id
    assert run_status(home, second.id) == "running"
    assert run_status(home, first.id) == "pending"


def test_rerun_reproduces_the_pixels_exactly(warm: Home) -> None:
    home = warm
    path = home.pipeline("orig", txt2img_toml(prompts=["same every time"], seeds=[42], per_input=2))
    proc = home.cli("run", str(path), "--json", check=True, timeout=300)
    original = json.loads(proc.stdout.splitlines()[-1])["artifacts"][1]
    art_id = next(a["id"] for a in home.json("gallery") if a["path"] == original)

    proc = home.cli("rerun", art_id, "--json", check=True, timeout=300)
    summary = json.loads(proc.stdout.splitlines()[-1])
    assert summary["status"] == "succeeded" and len(summary["artifacts"]) == 1
    copy = summary["artifacts"][0]
    assert copy != original
    with Image.open(original) as a, Image.open(copy) as b:
        assert a.tobytes() == b.tobytes()
    assert home.json("show", summary["run_id"])["rerun_of"] == art_id


@pytest.mark.parametrize(("model", "size"), [("demo-sdxl", 64), ("demo-sd15-single", 64)])
def test_sdxl_and_single_file_checkpoints_generate(warm: Home, model: str, size: int) -> None:
    home = warm
    path = home.pipeline(model, txt2img_toml(prompts=["arch"], seeds=[7], model=model, size=size))
    proc = home.cli("run", str(path), "--json", timeout=300)
    assert proc.returncode == 0, proc.stderr
    (image,) = json.loads(proc.stdout.splitlines()[-1])["artifacts"]
    with Image.open(image) as im:
        assert im.size == (size, size)
        assert f"Model: {model}" in im.info["parameters"]


def test_run_exits_3_when_its_run_is_cancelled_from_elsewhere(home: Home) -> None:
    path = home.pipeline("long", txt2img_toml(prompts=["long"], seeds=[1], steps=300))
    proc = home.spawn("run", str(path), "--json")
    wait_for(
        lambda: query(home, "SELECT 1 FROM job WHERE status='running' AND step > 0"), timeout=90
    )
    home.cli("cancel", "r1", check=True)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 3, err
    assert json.loads(out.splitlines()[-1])["status"] == "cancelled"
    # `run` returns once the host has stopped the running job, not before.
    assert job_row(home, 1)["status"] == "cancelled"


MANUAL = """
name = "manual"
mode = "manual"
[inputs]
images = ["ref.png"]
prompts = ["a cottage"]
seeds = [21]
[[stages]]
type = "img2img"
model = "demo-sd15"
strength = 0.6
steps = 4
per_input = 2
loras = [{ model = "demo-sd15-lora", weight = 0.7 }]
control = { model = "demo-sd15-controlnet", image = "edges.png", kind = "canny" }
[[stages]]
type = "upscale"
model = "demo-esrgan-x4"
scale = 2
"""


def test_manual_mode_waits_after_each_stage_and_reruns_repeat_lora_controlnet_and_esrgan(
    warm: Home,
) -> None:
    """manual: every stage but the last waits for approval. A re-run of an output made
    with a LoRA and a ControlNet, and of an ESRGAN upscale, gives the same pixels."""
    home = warm
    Image.radial_gradient("L").convert("RGB").resize((64, 64)).save(home.root.parent / "ref.png")
    edges = Image.new("RGB", (64, 64), "white")
    edges.paste((0, 0, 0), (16, 16, 48, 48))
    edges.save(home.root.parent / "edges.png")
    proc = home.cli("run", str(home.pipeline("manual", MANUAL)), "--json", check=True)
    summary = json.loads(proc.stdout.splitlines()[-1])
    assert summary["status"] == "review" and len(summary["artifacts"]) == 2
    run_ref = summary["run_id"]
    firsts = outputs(home, run_ref, "img2img")
    assert len(firsts) == 2
    # The host that `run` started continues the run once it is approved.
    home.cli("approve", run_ref, "--select", firsts[0]["id"], check=True)
    wait_for(lambda: run_status(home, int(run_ref[1:])) == "succeeded", timeout=60)
    upscaled = outputs(home, run_ref, "upscale")
    assert len(upscaled) == 1 and home.json("show", upscaled[0]["id"])["parents"] == [
        firsts[0]["id"]
    ]
    for original in (firsts[0], upscaled[0]):
        proc = home.cli("rerun", original["id"], "--json", check=True, timeout=300)
        copy = json.loads(proc.stdout.splitlines()[-1])["artifacts"][0]
        with Image.open(original["path"]) as a, Image.open(copy) as b:
            assert a.size == b.size
            assert a.tobytes() == b.tobytes(), original["stage"]
