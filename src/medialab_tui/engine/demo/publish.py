"""Publishing demo models: written beside their place, then renamed into it.

Same filesystem, so the rename is atomic; the leading dot keeps model scanners
away from half-written files and folders. A demo model that is already complete
is left as it is: every writer makes byte-identical files.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from diffusers import DiffusionPipeline

# The marker file is written last inside the temporary folder, so a folder that
# has it was renamed into place complete.
MARKER_FILE = "medialab.json"
NOTE = "random weights: output is abstract noise"


def write_marker(folder: Path, marker: dict[str, object]) -> None:
    (folder / MARKER_FILE).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")


def publish_folder(
    target: Path, is_complete: Callable[[Path], bool], write: Callable[[Path], None]
) -> Path:
    """Write a demo folder with `write` beside `target`, then rename it into place.

    Nothing is done when `target` is complete.
    """
    if is_complete(target):
        return target
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
    try:
        write(tmp)
        relax_permissions(tmp)
        # Another process may have finished first while this one was building;
        # its copy is byte-identical, so keep it.
        if is_complete(target):
            return target
        if target.exists():
            shutil.rmtree(target)
        try:
            os.rename(tmp, target)
        except OSError:
            if not is_complete(target):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def publish_pipeline(
    target: Path,
    is_complete: Callable[[Path], bool],
    build: Callable[[], tuple[DiffusionPipeline, str]],
    after_save: Callable[[Path], None] | None = None,
) -> Path:
    """Build a demo pipeline (with its arch) and publish it as the folder `target` with its
    marker; `after_save` may add files to the saved folder first."""

    def write(tmp: Path) -> None:
        pipe, arch = build()
        with quiet_transformers():
            pipe.save_pretrained(tmp, safe_serialization=True)
        if after_save is not None:
            after_save(tmp)
        write_marker(tmp, {"demo": True, "arch": arch, "note": NOTE})

    return publish_folder(target, is_complete, write)


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Hide transformers' "Writing model shards" bar while saving the demo models."""
    from transformers.utils import logging as transformers_logging

    was_enabled = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            transformers_logging.enable_progress_bar()


def publish_safetensors(
    target: Path, state: Callable[[], dict[str, torch.Tensor]], metadata: dict[str, str]
) -> Path:
    """Write the tensors `state()` gives as `target` (a .safetensors file), unless it exists.

    Keep `metadata` to one key: safetensors writes it as a map, whose order differs
    from process to process, and the demo files must come out byte-identical.
    """
    if target.is_file():
        return target
    from safetensors.torch import save_file

    tensors = state()
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp_name, metadata=metadata)
        relax_permissions(Path(tmp_name))
        os.replace(tmp_name, target)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return target


def relax_permissions(root: Path) -> None:
    """Give ``root`` and everything under it the permissions a plain mkdir/open would.

    mkdtemp, mkstemp and the safetensors writer create private (0700/0600)
    entries, which would stay private after the rename.
    """
    # The only portable way to read the umask is to set it and set it back.
    umask = os.umask(0o077)
    os.umask(umask)
    for entry in (root, *root.rglob("*")):
        mode = 0o777 if entry.is_dir() else 0o666
        entry.chmod(mode & ~umask)
