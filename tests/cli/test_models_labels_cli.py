"""`models tag`, `models note` and `models list --tag` through the real command line."""

from __future__ import annotations

from typing import Any

from conftest import Home


def listed(home: Home, *args: str) -> dict[str, Any]:
    models = home.json("models", "list", *args)
    assert isinstance(models, list)
    return {m["name"]: m for m in models}


def test_tags_and_a_note_set_from_the_command_line_are_listed_and_filter_models(
    home: Home,
) -> None:
    tagged = home.json("models", "tag", "demo-sd15", "Portrait, fast", "style")
    assert tagged == {"name": "demo-sd15", "tags": ["portrait", "fast", "style"], "note": ""}
    home.cli("models", "tag", "demo-sdxl", "FAST", check=True)
    home.cli("models", "tag", "demo-sd15", "--remove", "style", check=True)
    noted = home.cli("models", "note", "demo-sd15", "faces \x1b]52;c;aGk=\x07ok", check=True)
    assert "\x1b" not in noted.stdout and "note faces ]52;c;aGk= ok" in noted.stdout
    fast = listed(home, "--tag", "Fast")
    assert sorted(fast) == ["demo-sd15", "demo-sdxl"]
    assert fast["demo-sd15"]["tags"] == ["portrait", "fast"]
    assert fast["demo-sd15"]["note"] == "faces ]52;c;aGk= ok"
    assert listed(home, "--tag", "portrait", "--kind", "checkpoint").keys() == {"demo-sd15"}
    table = home.cli("models", "list", "--tag", "fast", check=True).stdout
    assert "demo-sdxl" in table and "upscaler" not in table and "lora" not in table
    home.cli("models", "note", "demo-sd15", "", check=True)
    assert listed(home)["demo-sd15"]["note"] == ""


def test_an_unknown_model_or_a_tag_too_long_exits_2_and_stores_nothing(home: Home) -> None:
    ghost = home.cli("models", "tag", "ghost", "x")
    assert ghost.returncode == 2
    assert ghost.stderr.strip().splitlines() == [
        "medialab: there is no model named 'ghost' (`medialab models list` shows their names)"
    ]
    long = home.cli("models", "tag", "demo-sd15", "ok", "y" * 33)
    assert long.returncode == 2 and "longer than 32 characters" in long.stderr
    assert "Traceback" not in long.stderr
    assert all(not m["tags"] for m in listed(home).values())
