"""`medialab gallery` filters and `medialab show` as text, on artifacts from one real run."""

from __future__ import annotations

import json
import re
from datetime import date, timedelta
from pathlib import Path

import pytest

from conftest import Home, txt2img_toml
from medialab_tui.config import DataDir, load_config
from medialab_tui.store.db import Store
from medialab_tui.store.tables import Artifact, utcnow

pytestmark = pytest.mark.slow

UPSCALE = """
[[stages]]
type = "upscale"
model = "demo-esrgan-x4"
scale = 2
"""

# a1–a3: txt2img (demo-sd15) of the three prompts; a4–a6: their 2× upscales.
PROMPTS = ["red fox", "blue whale", "green owl"]
OLD, STARRED = "a1", "a5"


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory, demo_models_dir: Path) -> Home:
    """One run of three tiny images and their upscales; a1 made ten days ago, a5 starred."""
    root = tmp_path_factory.mktemp("gallery-cli") / "home"
    root.mkdir()
    (root / "config.toml").write_text(f'model_roots = ["{demo_models_dir}"]\nthreads = 1\n')
    home = Home(root)
    home.cli("models", "scan", check=True)
    pipeline = home.pipeline("g", txt2img_toml(prompts=PROMPTS, seeds=[3], extra=UPSCALE))
    home.cli("run", str(pipeline), "--json", check=True, timeout=300)
    home.cli("stop", check=True)  # the host `run` started: the listings need none
    store = Store(DataDir(root).db_path)
    with store.write() as s:
        old = s.get(Artifact, int(OLD[1:]))
        starred = s.get(Artifact, int(STARRED[1:]))
        assert old is not None and starred is not None
        old.created_at = utcnow() - timedelta(days=10)
        starred.starred = True
        s.add_all([old, starred])
    store.dispose()
    return home


def ids(home: Home, *flags: str) -> list[str]:
    listed = home.json("gallery", *flags)
    assert isinstance(listed, list)
    return [a["id"] for a in listed]


def fields(text: str) -> dict[str, str]:
    """The indented `key  value` lines of `show` output as a dict."""
    indented = [line.strip() for line in text.splitlines() if line.startswith("  ")]
    return dict(re.split(r"\s{2,}", line, maxsplit=1) for line in indented)


def test_gallery_stage_and_model_filters_list_what_that_stage_and_model_made(made: Home) -> None:
    upscaled = made.json("gallery", "--stage", "upscale")
    assert isinstance(upscaled, list)
    assert [a["id"] for a in upscaled] == ["a6", "a5", "a4"]
    assert {a["model"] for a in upscaled} == {"demo-esrgan-x4"}
    assert ids(made, "--model", "demo-sd15") == ["a3", "a2", "a1"]
    assert ids(made, "--model", "demo-sd15", "--search", "WHALE") == ["a2"]
    assert ids(made, "--stage", "txt2img", "--model", "demo-esrgan-x4") == []


def test_gallery_starred_lists_only_starred_artifacts(made: Home) -> None:
    assert ids(made, "--starred") == [STARRED]
    assert ids(made, "--starred", "--stage", "txt2img") == []


def test_gallery_since_takes_the_tuis_ranges_and_iso_dates(made: Home) -> None:
    everything = ["a6", "a5", "a4", "a3", "a2", "a1"]
    recent = [a for a in everything if a != OLD]
    assert ids(made) == everything
    assert ids(made, "--since", "today") == recent
    assert ids(made, "--since", "week") == recent
    assert ids(made, "--since", "month") == everything
    assert ids(made, "--since", (date.today() - timedelta(days=9)).isoformat()) == recent
    assert ids(made, "--since", (date.today() - timedelta(days=11)).isoformat()) == everything
    assert ids(made, "--since", "2099-01-01T00:00") == []


def test_gallery_limit_keeps_the_newest(made: Home) -> None:
    assert ids(made, "--limit", "2") == ["a6", "a5"]
    assert ids(made, "--stage", "txt2img", "--limit", "1") == ["a3"]


def test_the_cli_and_the_tui_read_the_gallery_through_one_query(made: Home) -> None:
    from medialab_tui.client import GalleryQuery, StudioClient

    data = DataDir(made.root).ensure()
    client = StudioClient(data, load_config(data), Store(data.db_path))
    query = GalleryQuery(stage="upscale", search="e", days=7, newest_first=True)
    views = client.gallery(query, limit=2)
    listed = made.json("gallery", "--stage", "upscale", "--search", "e", "--since", "week")
    assert isinstance(listed, list)
    assert json.loads(json.dumps([v.to_json() for v in views])) == listed[:2]
    assert client.gallery_count(query) == len(listed) == 3


@pytest.mark.parametrize(
    ("flag", "value"),
    [("--since", "yesterday"), ("--since", "2026-13-01"), ("--limit", "0"), ("--limit", "-3")],
)
def test_a_bad_since_or_limit_exits_2_with_one_sentence(made: Home, flag: str, value: str) -> None:
    proc = made.cli("gallery", flag, value)
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"medialab: {flag} must be"), proc.stderr
    assert value in lines[0]


def test_show_run_prints_its_fields_and_its_jobs_as_aligned_lines(made: Home) -> None:
    text = made.cli("show", "r1", check=True).stdout
    assert text.splitlines()[0] == "run r1: test"
    shown = fields(text)
    assert shown["status"] == "succeeded"
    assert shown["mode"] == "auto"
    assert shown["stage"] == "2 of 2"
    assert shown["artifacts"] == "6"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", shown["created"])
    jobs = [line.split() for line in text.splitlines() if re.match(r"j\d+ ", line)]
    assert [j[0] for j in jobs] == [f"j{n}" for n in range(1, 7)]
    assert [j[1] for j in jobs] == ["txt2img"] * 3 + ["upscale"] * 3
    assert all(j[2:5] == ["succeeded", "100%", "1"] for j in jobs)
    assert "{" not in text


def test_show_job_prints_stage_status_progress_attempts_error_prompt_and_seed(
    made: Home,
) -> None:
    as_json = made.json("show", "j2")
    assert isinstance(as_json, dict)
    text = made.cli("show", "j2", check=True).stdout
    assert text.splitlines()[0] == "job j2 of run r1"
    shown = fields(text)
    assert shown["stage"] == "1 (txt2img)"
    assert shown["status"] == "succeeded"
    assert shown["progress"] == f"100% (step {as_json['step']} of {as_json['total_steps']})"
    assert shown["attempts"] == "1"
    assert shown["error"] == "—"
    assert shown["prompt"] == "blue whale"
    assert shown["seed"] == "3"


def test_show_artifact_prints_path_kind_size_stage_prompt_seed_model_and_parents(
    made: Home,
) -> None:
    as_json = made.json("show", "a4")
    assert isinstance(as_json, dict)
    text = made.cli("show", "a4", check=True).stdout
    assert text.splitlines()[0] == f"artifact a4 of run r1, job {as_json['job_id']}"
    shown = fields(text)
    assert shown["path"] == as_json["path"] and Path(shown["path"]).exists()
    assert shown["kind"] == "image"
    assert shown["size"] == "128×128"
    assert shown["stage"] == "upscale"
    assert shown["prompt"] == as_json["prompt"] and shown["prompt"] in PROMPTS
    assert shown["seed"] == "3"
    assert shown["model"] == "demo-esrgan-x4"
    assert shown["parents"] == ", ".join(as_json["parents"]) and as_json["parents"]


def test_show_toml_prints_the_chain_that_makes_an_artifact_again(made: Home) -> None:
    import tomllib

    shown = made.json("show", "a4")
    assert isinstance(shown, dict)
    text = made.cli("show", "a4", "--toml", check=True).stdout
    document = tomllib.loads(text)
    assert [s["type"] for s in document["stages"]] == ["txt2img", "upscale"]
    assert document["inputs"]["prompts"] == [shown["prompt"]]
    assert document["inputs"]["seeds"] == [3]
    assert document["stages"][0]["model"] == "demo-sd15"
    dry = made.cli("run", str(made.pipeline("again", text)), "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    proc = made.cli("show", "r1", "--toml")
    assert proc.returncode == 2 and "artifact" in proc.stderr
