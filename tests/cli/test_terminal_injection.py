"""User text never drives the terminal: control characters in names, prompts, paths,
model files and typed ids are shown (`^[`, `^G`, `<U+009B>`), while `--json` keeps them
exact."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from conftest import Home, submit, txt2img_toml
from medialab_tui.cli import main
from medialab_tui.config import DataDir
from medialab_tui.store.db import Store
from medialab_tui.store.tables import Artifact, Job, Run
from medialab_tui.text import visible, visible_lines

# What a hostile prompt, name or file name can carry, and how each is shown instead.
PAYLOADS = {
    "osc52-clipboard": "\x1b]52;c;aGVsbG8=\x07",
    "osc0-title": "\x1b]0;pwned\x07",
    "csi-clear": "\x1b[2J",
    "c1-csi": "\x9b31m",
    "bel": "\x07",
}
SHOWN = {
    "osc52-clipboard": "^[]52;c;aGVsbG8=^G",
    "osc0-title": "^[]0;pwned^G",
    "csi-clear": "^[[2J",
    "c1-csi": "<U+009B>31m",
    "bel": "^G",
}
RAW = ("\x1b", "\x07", "\x9b")


@dataclass(frozen=True)
class Planted:
    """One payload's run, job, artifact and model, all named with it."""

    name: str
    prompt: str
    run: str
    job: str
    artifact: str
    model: str
    pipeline: Path


def planted_text(key: str) -> tuple[str, str, str]:
    """The run name, prompt and model name that carry `key`'s payload."""
    payload = PAYLOADS[key]
    return f"run{payload}end", f"a fox{payload}in snow", f"model{payload}x"


@pytest.fixture(scope="module")
def planted(
    tmp_path_factory: pytest.TempPathFactory, demo_models_dir: Path
) -> tuple[Home, dict[str, Planted]]:
    """A data dir with, per payload, a queued run (no worker: `--no-wait`), its job
    failed with an error quoting the payload, an artifact row and a model file.

    A pipeline file holding control characters is refused at submit, so the run's
    name and prompt get theirs through the store: text written by an older medialab,
    or read from another tool's image."""
    base = tmp_path_factory.mktemp("injection")
    root, evil_models = base / "home", base / "evil-models"
    root.mkdir()
    evil_models.mkdir()
    roots = json.dumps([str(demo_models_dir), str(evil_models)])
    (root / "config.toml").write_text(f"model_roots = {roots}\nthreads = 1\n")
    lora = demo_models_dir / "demo-sd15-lora.safetensors"  # small: one copy per payload
    for key in PAYLOADS:
        shutil.copy(lora, evil_models / f"{planted_text(key)[2]}.safetensors")
    home = Home(root)
    home.cli("models", "scan", check=True)
    store = Store(DataDir(root).db_path)
    planted: dict[str, Planted] = {}
    for key, payload in PAYLOADS.items():
        name, prompt, model = planted_text(key)
        text = txt2img_toml(prompts=[prompt], seeds=[1]).replace(
            'name = "test"', f"name = {json.dumps(name)}"
        )
        (home.root.parent / f"{key}.toml").write_text(text)
        run_id = submit(home, txt2img_toml(prompts=["a fox"], seeds=[1]), name=f"clean-{key}")
        with store.write() as s:
            run = s.get(Run, run_id)
            assert run is not None
            run.name = name
            job = s.exec(select(Job).where(Job.run_id == run_id)).one()
            job.item = {**job.item, "prompt": prompt}
            job.status, job.error = "failed", f"it broke{payload}here"
            s.add(run)
            art = Artifact(
                run_id=run_id,
                job_id=job.id or 0,
                stage="txt2img",
                path=str(root / f"out{payload}.png"),
                name=f"out{payload}.png",
                prompt=prompt,
                seed=1,
                model=model,
                width=64,
                height=64,
                params={},
            )
            s.add_all([job, art])
            s.flush()
            refs = (f"r{run_id}", job.ref, art.ref)
        planted[key] = Planted(name, prompt, *refs, model, home.root.parent / f"{key}.toml")
    store.dispose()
    return home, planted


_outputs: dict[tuple[str, ...], subprocess.CompletedProcess[str]] = {}


def medialab(home: Home, *args: str) -> subprocess.CompletedProcess[str]:
    """A command's result on a wide terminal (no table folds a caret form in two), run
    in this process (the real `main`, its real output); each command once per module."""
    key = (str(home.root), *args)
    if key not in _outputs:
        out, err = io.StringIO(), io.StringIO()
        columns = os.environ.get("COLUMNS")
        os.environ["COLUMNS"] = "400"
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = main(["--data-dir", str(home.root), *args])
        finally:
            if columns is None:
                os.environ.pop("COLUMNS", None)
            else:
                os.environ["COLUMNS"] = columns
        _outputs[key] = subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())
    return _outputs[key]


# Each text output and how to ask for it about one payload's things.
TEXT_OUTPUTS: dict[str, Any] = {
    "runs": lambda p: ["runs"],
    "jobs": lambda p: ["jobs"],
    "show-run": lambda p: ["show", p.run],
    "show-job": lambda p: ["show", p.job],
    "show-artifact": lambda p: ["show", p.artifact],
    "gallery": lambda p: ["gallery"],
    "models-list": lambda p: ["models", "list"],
}


@pytest.mark.parametrize("output", TEXT_OUTPUTS)
@pytest.mark.parametrize("key", PAYLOADS)
def test_text_output_shows_control_characters_instead_of_sending_them(
    planted: tuple[Home, dict[str, Planted]], key: str, output: str
) -> None:
    home, things = planted
    proc = medialab(home, *TEXT_OUTPUTS[output](things[key]))
    assert proc.returncode == 0, proc.stderr
    for raw in RAW:
        assert raw not in proc.stdout + proc.stderr
    assert SHOWN[key] in proc.stdout


@pytest.mark.parametrize("command", [["show"], ["cancel"], ["retry"], ["jobs", "--run"]])
@pytest.mark.parametrize("key", PAYLOADS)
def test_an_id_typed_with_escapes_is_shown_in_the_error_sentence(
    planted: tuple[Home, dict[str, Planted]], key: str, command: list[str]
) -> None:
    home, _ = planted
    proc = medialab(home, *command, f"r1{PAYLOADS[key]}")
    assert proc.returncode == 2
    assert proc.stderr.startswith("medialab: ")
    for raw in RAW:
        assert raw not in proc.stdout + proc.stderr
    assert f"r1{SHOWN[key]}" in proc.stderr


def exact_values(home: Home, output: str, p: Planted) -> list[str]:
    """The strings `--json` gives for `p`'s things in `output`."""
    listed: Any = json.loads(medialab(home, *TEXT_OUTPUTS[output](p), "--json").stdout)
    if output == "runs":
        return [r["name"] for r in listed]
    if output == "jobs":
        return [v for j in listed for v in (j["prompt"], j["error"])]
    if output == "show-run":
        return [listed["name"], *(j["prompt"] for j in listed["jobs"])]
    if output == "show-job":
        return [listed["prompt"], listed["error"]]
    if output == "show-artifact":
        return [listed["prompt"], listed["model"], listed["path"]]
    if output == "gallery":
        return [v for a in listed for v in (a["prompt"], a["model"])]
    if output == "models-list":
        return [m["name"] for m in listed]
    return [listed["name"]]


# What each output holds for a payload, exactly as it was written.
EXPECTED_JSON = {
    "runs": lambda p: [p.name],
    "jobs": lambda p: [p.prompt],
    "show-run": lambda p: [p.name, p.prompt],
    "show-job": lambda p: [p.prompt],
    "show-artifact": lambda p: [p.prompt, p.model],
    "gallery": lambda p: [p.prompt, p.model],
    "models-list": lambda p: [p.model],
}


@pytest.mark.parametrize("output", EXPECTED_JSON)
@pytest.mark.parametrize("key", PAYLOADS)
def test_json_output_keeps_the_exact_strings(
    planted: tuple[Home, dict[str, Planted]], key: str, output: str
) -> None:
    home, things = planted
    p = things[key]
    values = exact_values(home, output, p)
    for expected in EXPECTED_JSON[output](p):
        assert expected in values
    assert medialab(home, *TEXT_OUTPUTS[output](p), "--json").stdout.isascii()


@pytest.mark.parametrize("key", PAYLOADS)
def test_a_pipeline_file_holding_control_characters_is_refused_showing_them(
    planted: tuple[Home, dict[str, Planted]], key: str
) -> None:
    home, things = planted
    proc = medialab(home, "run", str(things[key].pipeline), "--dry-run")
    assert proc.returncode == 2
    for raw in RAW:
        assert raw not in proc.stdout + proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    # The name is `run<payload>end`: its first control character is the 4th.
    shown = visible(PAYLOADS[key][0])
    assert f"key 'name' holds a control character ({shown} at character 4)" in proc.stderr


def test_every_control_character_is_shown_and_nothing_else_changes() -> None:
    controls = [chr(c) for c in (*range(0x20), *range(0x7F, 0xA0))]
    for char in controls:
        shown = visible(char)
        assert shown != char and shown.isprintable(), repr(char)
    assert visible("\x00\x1f\x7f\x80\x9f") == "^@^_^?<U+0080><U+009F>"
    assert visible("ünïcödé · → ★ [b]x[/b] ^[") == "ünïcödé · → ★ [b]x[/b] ^["
    # One-line fields show a newline; multi-line text keeps its lines (and tabs).
    assert visible("a fox\nin snow\t") == "a fox⏎in snow^I"
    assert visible_lines("one\r\ntwo\tthree\rfour\n\x1b[2J") == "one\ntwo\tthree^Mfour\n^[[2J"


@pytest.mark.parametrize("key", PAYLOADS)
def test_run_progress_shows_the_prompt_and_error_of_a_job(
    key: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from medialab_tui.follow import Display
    from medialab_tui.store.views import JobView

    payload = PAYLOADS[key]
    job = JobView(
        id=1,
        ref="j1",
        run_id=1,
        stage="txt2img",
        stage_index=0,
        status="failed",
        progress=0.0,
        step=0,
        total_steps=4,
        attempts=1,
        priority=0,
        error=f"e{payload}",
        prompt=f"p{payload}",
        seed=1,
        started_at=None,
        run_seconds=0.0,
    )
    with Display(as_json=False) as display:
        display.job(job)
        display.message(f"note{payload}")
    out = capsys.readouterr()
    for raw in RAW:
        assert raw not in out.out + out.err
    assert f"p{SHOWN[key]}" in out.out
    assert f"e{SHOWN[key]}" in out.out
