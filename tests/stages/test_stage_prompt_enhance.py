"""prompt_enhance: one prompt → many variants, offline and repeatable, feeding txt2img."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from conftest import Home, query, run_status, wait_for
from medialab_tui.cli import main
from medialab_tui.engine.pipeline import parse_stage
from medialab_tui.engine.stages.prompt_enhance.prompts import (
    BANKS,
    MAX_DEPTH,
    PromptError,
    enhance,
    variants,
)
from medialab_tui.engine.stages.prompt_enhance.spec import (
    PLACEHOLDERS,
    SETS,
    PromptEnhanceParams,
)
from medialab_tui.errors import InputError
from medialab_tui.store.artifacts import read_png_meta

WILDCARDS = {
    "animal": ["__colour__ fox", "__colour__ owl", "hare"],
    "colour": ["red", "silver", "amber"],
}


def _params(**values: object) -> PromptEnhanceParams:
    return PromptEnhanceParams.model_validate({"type": "prompt_enhance", **values})


# -- the enhancement itself ---------------------------------------------------------


def test_the_same_input_and_seed_give_the_same_variants_in_another_process() -> None:
    params = _params(count=6, style="oil painting", sets=["expressions"])
    here = enhance("a __animal__ at dawn", params, 42, WILDCARDS)
    code = (
        "import json, sys\n"
        "from medialab_tui.engine.stages.prompt_enhance.prompts import enhance\n"
        "from medialab_tui.engine.stages.prompt_enhance.spec import PromptEnhanceParams\n"
        "p = PromptEnhanceParams.model_validate(json.loads(sys.argv[1]))\n"
        "print(json.dumps(enhance('a __animal__ at dawn', p, 42, json.loads(sys.argv[2]))))\n"
    )
    for hash_seed in ("1", "2"):
        proc = subprocess.run(
            [sys.executable, "-c", code, json.dumps(params.model_dump()), json.dumps(WILDCARDS)],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "PYTHONHASHSEED": hash_seed},
            check=True,
        )
        assert json.loads(proc.stdout) == here


def test_different_seeds_give_different_variants() -> None:
    params = _params(count=4)
    by_seed = [enhance("a lighthouse", params, seed, {}) for seed in range(10)]
    assert len({tuple(v) for v in by_seed}) == 10
    # Mostly different one by one, not merely reordered.
    assert len({text for v in by_seed for text in v}) >= 35


def test_variants_of_one_job_are_distinct_and_keep_the_prompt() -> None:
    texts = enhance("a lighthouse on a cliff", _params(count=64), 3, {})
    assert len(texts) == 64
    assert len(set(texts)) == 64
    assert all(t.startswith("a lighthouse on a cliff, ") for t in texts)
    phrases = {p for t in texts for p in t.split(", ")[1:]}
    assert phrases <= {p for bank in BANKS.values() for p in ", ".join(bank).split(", ")}


def test_a_template_with_nothing_to_vary_repeats_the_prompt() -> None:
    assert (
        enhance("a lighthouse", _params(count=3, template="{prompt}"), 1, {})
        == ["a lighthouse"] * 3
    )


def test_sets_multiply_the_variants_in_sets_order() -> None:
    params = _params(count=2, sets=["lighting", "angles"])
    made = variants("a knight", params, 9, {})

    assert len(made) == params.outputs_per_job() == 2 * 6 * 5
    combos = [tuple(v.choices.items()) for v in made[::2]]
    assert combos == [
        (("angles", a), ("lighting", li)) for a in SETS["angles"] for li in SETS["lighting"]
    ]
    for v in made:
        assert v.text.startswith(f"a knight, {v.choices['angles']}, {v.choices['lighting']}, ")
    # A set shows the same two variants in every combination: only the set phrases change.
    rests = {
        v.number: v.text.removeprefix(f"a knight, {v.choices['angles']}, {v.choices['lighting']}, ")
        for v in made[:2]
    }
    assert rests[0] != rests[1]
    for v in made:
        assert v.text.endswith(rests[v.number])


def test_placeholders_style_and_theme_land_where_the_template_says() -> None:
    template = "{sets}: {prompt} as a {style}, {mood}, {detail}"
    params = _params(count=1, template=template, style="woodcut", theme="winter", sets=["angles"])
    first = enhance("a fox", params, 5, {})[0]
    head, _, rest = first.partition(": ")
    assert head == "front view"
    assert rest.startswith("a fox as a woodcut, ")
    assert rest.endswith(", winter")  # no {theme} in the template: at the end
    mood = rest.split(", ")[1]
    assert mood in BANKS["mood"]
    # {detail} takes the banks the template does not name: four phrases, no second mood.
    detail = rest.split(", ")[2:-1]
    assert len(detail) == 4
    assert not set(detail) & set(BANKS["mood"])


def test_wildcards_pick_lines_and_nested_wildcards_expand() -> None:
    texts = enhance("a __animal__ in snow", _params(count=30), 11, WILDCARDS)
    subjects = {t.split(" in snow")[0].removeprefix("a ") for t in texts}
    allowed = {f"{c} {a}" for c in WILDCARDS["colour"] for a in ("fox", "owl")} | {"hare"}
    assert subjects <= allowed
    assert len(subjects) >= 4
    assert not any("__" in t for t in texts)


def test_a_wildcard_cycle_is_an_error_not_a_hang() -> None:
    lists = {"a": ["x __b__"], "b": ["y __a__"]}
    with pytest.raises(PromptError, match=f"more than {MAX_DEPTH} levels"):
        enhance("__a__", _params(count=1), 1, lists)


def test_a_wildcard_without_a_list_is_an_error() -> None:
    with pytest.raises(PromptError, match="__colour__"):
        enhance("a __colour__ fox", _params(count=1), 1, {})


@pytest.mark.parametrize(
    ("template", "words"),
    [
        ("{prompt}, {colour}", ["unknown placeholder {colour}", "{detail}"]),
        ("{prompt}, {", ["not a valid template"]),
        ("{prompt!r}", ["format or conversion"]),
    ],
)
def test_a_bad_template_is_refused_when_the_stage_is_parsed(
    template: str, words: list[str]
) -> None:
    raw = {"type": "prompt_enhance", "template": template}
    with pytest.raises(InputError) as err:
        parse_stage(raw, 1, "p.toml")
    message = str(err.value)
    assert message.startswith("p.toml: stage 1 (prompt_enhance): key 'template' ")
    for word in words:
        assert word in message


def test_every_placeholder_has_a_value() -> None:
    template = ", ".join("{" + name + "}" for name in PLACEHOLDERS) + " {{literal}}"
    params = _params(count=1, template=template, style="ink", theme="sea", sets=["poses"])
    text = enhance("a boat", params, 2, {})[0]
    assert text.startswith("a boat, standing, ink, sea, ")
    assert text.endswith(" {literal}")
    assert set(BANKS) | {"prompt", "sets", "style", "theme", "detail"} == set(PLACEHOLDERS)


def test_a_set_named_twice_or_too_many_variants_is_refused() -> None:
    with pytest.raises(InputError, match="key 'sets' lists 'angles' twice"):
        parse_stage({"type": "prompt_enhance", "sets": ["angles", "angles"]}, 1, "p.toml")
    with pytest.raises(InputError, match="at most 1000"):
        parse_stage(
            {"type": "prompt_enhance", "count": 64, "sets": ["angles", "poses"]}, 1, "p.toml"
        )


# -- through the command line ---------------------------------------------------------

PIPELINE = """
name = "enhanced"
[inputs]
prompts = ["a __animal__ in the snow"]
negative = "blurry"
seeds = [77]
[[stages]]
type = "prompt_enhance"
count = 5
style = "watercolour"
[[stages]]
type = "txt2img"
model = "demo-sd15"
steps = 4
width = 64
height = 64
per_input = 2
"""


def _write_wildcards(root: Path) -> None:
    folder = root / "wildcards"
    folder.mkdir(exist_ok=True)
    (folder / "animal.txt").write_text("# animals\n__colour__ fox\n__colour__ owl\n\nhare\n")
    (folder / "colour.txt").write_text("red\nsilver\namber\n")


def _runs(home: Home) -> int:
    return query(home, "SELECT count(*) FROM run")[0][0]


def test_enhanced_prompts_flow_into_txt2img_with_lineage(home) -> None:
    _write_wildcards(home.root)
    path = home.pipeline("enhanced", PIPELINE)

    proc = home.cli("run", str(path), "--json", check=True)

    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["status"] == "succeeded"
    assert len(summary["artifacts"]) == 10
    texts = query(
        home, "SELECT id, path, prompt, seed, params FROM artifact WHERE kind='text' ORDER BY id"
    )
    assert len(texts) == 5
    expected = enhance(
        "a __animal__ in the snow",
        _params(count=5, style="watercolour"),
        77,
        WILDCARDS,  # what _write_wildcards puts in the files
    )
    assert [t[2] for t in texts] == expected  # the worker's process made the same variants
    for number, (_, text_path, prompt, seed, params) in enumerate(texts):
        assert Path(text_path).name.startswith(f"{number:02d}-a-")
        assert Path(text_path).read_text(encoding="utf-8") == prompt + "\n"
        sidecar = json.loads(Path(text_path).with_suffix(".json").read_text())
        assert sidecar["prompt"] == prompt
        assert sidecar["source_prompt"] == "a __animal__ in the snow"
        assert sidecar["params"]["count"] == 5
        assert seed == 77
        assert json.loads(params)["negative"] == "blurry"
        assert "__" not in prompt and "watercolour" in prompt
    assert summary["all_artifacts"][:5] == [t[1] for t in texts]

    images = query(home, "SELECT id, path, prompt, seed FROM artifact WHERE kind='image'")
    assert len(images) == 10
    by_id = {t[0]: t[2] for t in texts}
    parents = dict(query(home, "SELECT artifact_id, parent_id FROM artifactparent"))
    for image_id, image_path, prompt, seed in images:
        assert by_id[parents[image_id]] == prompt
        assert seed in (77, 78)
        meta = read_png_meta(Path(image_path))
        assert meta["prompt"] == prompt
        assert meta["negative"] == "blurry"
        with Image.open(image_path) as im:
            assert im.info["parameters"].startswith(prompt + "\nNegative prompt: blurry\n")
    assert sorted(p for _, _, p, _ in images) == sorted(expected * 2)


def test_a_missing_wildcard_file_is_refused_and_stores_nothing(
    home, capsys: pytest.CaptureFixture[str]
) -> None:
    path = home.pipeline("enhanced", PIPELINE)
    before = _runs(home)

    code = main(["--data-dir", str(home.root), "run", str(path)])

    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1, err
    assert "enhanced.toml: stage 1 (prompt_enhance): wildcard __animal__" in err
    assert str(home.root / "wildcards" / "animal.txt") in err
    assert _runs(home) == before
    assert not [p for p in (home.root / "artifacts").rglob("*") if p.is_file()]


def test_an_unknown_template_placeholder_exits_2(home, capsys: pytest.CaptureFixture[str]) -> None:
    path = home.pipeline("tpl", PIPELINE.replace("count = 5", 'template = "{prompt} {colour}"'))

    code = main(["--data-dir", str(home.root), "run", str(path)])

    err = capsys.readouterr().err.strip()
    assert code == 2
    assert "tpl.toml: stage 1 (prompt_enhance): key 'template' has an unknown placeholder" in err
    assert _runs(home) == 0


def test_set_mode_makes_count_times_the_set_size(home, capsys: pytest.CaptureFixture[str]) -> None:
    _write_wildcards(home.root)
    text = PIPELINE.replace("count = 5", 'count = 2\nsets = ["angles"]')
    path = home.pipeline("sets", text)

    assert main(["--data-dir", str(home.root), "--json", "run", str(path), "--dry-run"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert [(s["type"], s["jobs"], s["outputs"]) for s in plan["stages"]] == [
        ("prompt_enhance", 1, 12),
        ("txt2img", 12, 24),
    ]

    only_enhance = home.pipeline("sets-only", text.split('[[stages]]\ntype = "txt2img"')[0])
    proc = home.cli("run", str(only_enhance), "--json", check=True)
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["status"] == "succeeded"
    assert len(summary["artifacts"]) == 12
    rows = query(home, "SELECT params FROM artifact WHERE kind='text' ORDER BY id")
    choices = [json.loads(p)["set_choices"]["angles"] for (p,) in rows]
    assert choices == [a for a in SETS["angles"] for _ in range(2)]
    gallery = home.json("gallery", "--kind", "text")
    assert len(gallery) == 12
    assert {g["kind"] for g in gallery} == {"text"}
    as_toml = home.cli("show", gallery[0]["id"], "--toml")
    assert as_toml.returncode == 2 and "text artifact" in as_toml.stderr


def test_a_wildcard_cycle_in_the_files_is_refused_at_submit(
    home, capsys: pytest.CaptureFixture[str]
) -> None:
    _write_wildcards(home.root)
    (home.root / "wildcards" / "colour.txt").write_text("red\n__animal__ brown\n")
    path = home.pipeline("loop", PIPELINE)

    code = main(["--data-dir", str(home.root), "run", str(path)])

    err = capsys.readouterr().err.strip()
    assert code == 2
    assert "cycle: __animal__ → __colour__ → __animal__" in err
    assert _runs(home) == 0


def test_review_picks_and_edits_enhanced_prompts_before_the_images(home, serve) -> None:
    """checkpoint: the run stops after the variants; two are approved, one of them
    edited by hand, and only those two become images (the edit is what they show)."""
    text = (
        PIPELINE.replace('name = "enhanced"', 'name = "pick"\nmode = "checkpoint"')
        .replace("a __animal__ in the snow", "a fox in the snow")
        .replace("count = 5", "count = 3\nreview = true")
        .replace("per_input = 2", "per_input = 1")
    )
    proc = home.cli("run", str(home.pipeline("pick", text)), "--json", check=True)
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["status"] == "review"
    run_ref = summary["run_id"]
    texts = query(home, "SELECT id, prompt FROM artifact WHERE kind='text' ORDER BY id")
    assert len(texts) == 3
    (first, _), (second, second_prompt), (third, third_prompt) = texts

    wrong = home.cli(
        "approve",
        run_ref,
        "--edit",
        f"a{first}=edited but not selected",
        "--select",
        f"a{second}",
        f"a{third}",
    )
    assert wrong.returncode == 2 and "not an approved output" in wrong.stderr
    edit = f"a{third}=a fox in the snow, drawn by hand"
    home.cli("approve", run_ref, "--select", f"a{second}", f"a{third}", "--edit", edit, check=True)
    wait_for(lambda: run_status(home, int(run_ref[1:])) == "succeeded", timeout=120)
    images = query(
        home,
        "SELECT a.prompt, p.parent_id FROM artifact a JOIN artifactparent p "
        "ON p.artifact_id = a.id WHERE a.kind='image' ORDER BY a.id",
    )
    assert sorted(images) == sorted(
        [(second_prompt, second), ("a fox in the snow, drawn by hand", third)]
    )
    assert third_prompt != "a fox in the snow, drawn by hand"
    # The text artifact itself is untouched.
    assert query(home, "SELECT prompt FROM artifact WHERE id=?", third)[0][0] == third_prompt
