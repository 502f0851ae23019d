"""Tags and notes on models: cleaned at the edge, kept by name, read with the registry."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from medialab_tui.errors import InputError
from medialab_tui.store.db import Store
from medialab_tui.store.labels import clean_note, clean_tags, label_model, tags_in_use
from medialab_tui.store.queries import list_models
from medialab_tui.store.tables import Model

FIXTURES = Path(__file__).parent.parent / "fixtures"


def registry(tmp_path: Path, *names: str) -> Store:
    store = Store(tmp_path / "m.db")
    with store.write() as s:
        for name in names:
            s.add(Model(name=name, kind="checkpoint", arch="sd15", format="diffusers", path=name))
    return store


def columns(db: Path, table: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(f"PRAGMA table_info({table})").fetchall()
    finally:
        conn.close()


def test_a_schema_1_database_gains_the_labels_table_as_a_new_one_has_it(tmp_path: Path) -> None:
    old = tmp_path / "old.db"
    shutil.copyfile(FIXTURES / "medialab-v1.db", old)
    Store(old)
    Store(tmp_path / "new.db")
    assert columns(old, "modellabel") == columns(tmp_path / "new.db", "modellabel")
    assert [c[1] for c in columns(old, "modellabel")] == ["name", "tags", "note", "updated_at"]


def test_tags_are_split_at_commas_lowercased_and_kept_once_without_control_characters() -> None:
    assert clean_tags(["Portrait, anime   Style", "fast", "FAST", " ,", "a\x1b]0;x\x07b"]) == (
        "portrait",
        "anime style",
        "fast",
        "a ]0;x b",
    )
    assert clean_note("one\nline\x9b2J\ttabbed  ") == "one line 2J tabbed"


def test_a_tag_too_long_or_too_many_tags_are_refused() -> None:
    with pytest.raises(InputError, match="longer than 32 characters"):
        clean_tags(["x" * 33])
    with pytest.raises(InputError, match="at most 16 tags"):
        clean_tags([",".join(f"t{i}" for i in range(17))])
    with pytest.raises(InputError, match="at most 500 characters"):
        clean_note("n" * 501)


def test_labels_are_stored_by_name_listed_with_the_model_and_filtered_by_tag(
    tmp_path: Path,
) -> None:
    store = registry(tmp_path, "alpha", "beta", "gamma")
    label_model(store, "alpha", add=["portrait", "fast"], note="good faces")
    label_model(store, "beta", add=["fast"])
    labels = label_model(store, "alpha", remove=["portrait"], add=["anime"])
    assert (labels.tags, labels.note) == (("fast", "anime"), "good faces")
    by_name = {m.name: m for m in list_models(store)}
    assert by_name["alpha"].tags == ("fast", "anime") and by_name["alpha"].note == "good faces"
    assert by_name["gamma"].tags == () and by_name["gamma"].note == ""
    assert [m.name for m in list_models(store, tag="fast")] == ["alpha", "beta"]
    assert [m.name for m in list_models(store, "checkpoint", tag="anime")] == ["alpha"]
    assert tags_in_use(store) == [("anime", 1), ("fast", 2)]
    assert by_name["alpha"].to_json()["tags"] == ["fast", "anime"]


def test_clearing_every_label_removes_the_row_and_each_change_is_audited(tmp_path: Path) -> None:
    store = registry(tmp_path, "alpha")
    label_model(store, "alpha", add=["x"], note="n")
    label_model(store, "alpha", tags=[], note="")
    conn = sqlite3.connect(tmp_path / "m.db")
    assert conn.execute("SELECT count(*) FROM modellabel").fetchone()[0] == 0
    actions = conn.execute("SELECT action FROM event ORDER BY id").fetchall()
    assert actions == [("model.label",), ("model.label",)]


def test_an_unknown_model_or_a_bad_tag_stores_nothing(tmp_path: Path) -> None:
    store = registry(tmp_path, "alpha")
    with pytest.raises(InputError, match="no model named 'ghost\\^\\['"):
        label_model(store, "ghost\x1b", add=["x"])
    with pytest.raises(InputError, match="longer than"):
        label_model(store, "alpha", add=["ok", "y" * 40])
    conn = sqlite3.connect(tmp_path / "m.db")
    assert conn.execute("SELECT count(*) FROM modellabel").fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM event").fetchone()[0] == 0


def test_labels_stay_when_the_model_leaves_the_registry_and_return_with_it(
    tmp_path: Path,
) -> None:
    store = registry(tmp_path, "alpha")
    label_model(store, "alpha", add=["keep"])
    conn = sqlite3.connect(tmp_path / "m.db")
    with conn:
        conn.execute("DELETE FROM model")
    assert tags_in_use(store) == []  # only registered models' tags are offered
    with store.write() as s:
        s.add(Model(name="alpha", kind="lora", arch="sd15", format="safetensors", path="a"))
    assert [m.tags for m in list_models(store)] == [("keep",)]
