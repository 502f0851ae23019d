"""Atomic writes: a file appears whole under its name or not at all, and no temp file stays."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from medialab_tui.store.files import atomic_copy, atomic_write_bytes, atomic_write_text


def test_a_write_replaces_the_file_whole_owner_only_and_leaves_no_temp_file(
    tmp_path: Path,
) -> None:
    target = tmp_path / "sub" / "a.txt"
    atomic_write_text(target, "first\n")
    atomic_write_text(target, "second ✓\n")
    assert target.read_text(encoding="utf-8") == "second ✓\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [p.name for p in target.parent.iterdir()] == ["a.txt"]


def test_a_copy_has_the_sources_bytes_and_leaves_the_source_alone(tmp_path: Path) -> None:
    source = tmp_path / "in.png"
    source.write_bytes(bytes(range(256)) * 1000)
    target = tmp_path / "store" / "copy.png"
    atomic_copy(source, target)
    assert target.read_bytes() == source.read_bytes()
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["copy.png", "in.png", "store"]


def test_a_failed_write_keeps_the_old_file_and_removes_its_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "kept.bin"
    atomic_write_bytes(target, b"old")
    with pytest.raises(TypeError):
        atomic_write_bytes(target, "text is not bytes")  # type: ignore[arg-type]
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["kept.bin"]


def test_an_exclusive_write_never_replaces_a_file(tmp_path: Path) -> None:
    target = tmp_path / "v1.toml"
    atomic_write_text(target, "a = 1\n", exclusive=True)
    with pytest.raises(FileExistsError):
        atomic_write_text(target, "a = 2\n", exclusive=True)
    assert target.read_text() == "a = 1\n"
    assert [p.name for p in tmp_path.iterdir()] == ["v1.toml"]
