"""`medialab doctor`: what this machine has, asked of a real worker process."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from typing import Any

from medialab_tui import __version__
from medialab_tui.config import Config, DataDir
from medialab_tui.engine.host import HostLock, describe_holder
from medialab_tui.engine.worker_client import WorkerDied, WorkerProcess
from medialab_tui.store.db import Store


def terminal_graphics() -> str:
    """The best image protocol the terminal is likely to speak (a guess from env)."""
    term = os.environ.get("TERM", "")
    program = os.environ.get("TERM_PROGRAM", "")
    if os.environ.get("KITTY_WINDOW_ID") or "kitty" in term or program in ("ghostty", "WezTerm"):
        return "kitty"
    if program in ("iTerm.app", "mlterm") or "sixel" in term or os.environ.get("WT_SESSION"):
        return "sixel"
    return "half-cell (no Kitty or Sixel detected)"


async def _ask_worker(data: DataDir, config: Config) -> dict[str, Any]:
    worker = WorkerProcess(config, data.logs / "worker.log")
    await worker.start()
    try:
        return await worker.wait_ready()
    finally:
        await worker.shutdown()


def gather(data: DataDir, config: Config, store: Store) -> dict[str, Any]:
    """A flat report, for people and for `--json`."""
    try:
        info = asyncio.run(_ask_worker(data, config))
    except (WorkerDied, OSError) as exc:
        info = {"device": f"unavailable ({exc}; see {data.logs / 'worker.log'})"}
    holder = HostLock(data.lock_path).holder()
    disk = shutil.disk_usage(data.root)
    return {
        "medialab": __version__,
        "python": sys.version.split()[0],
        "device": info.get("device"),
        "dtype": info.get("dtype"),
        "torch": info.get("torch"),
        "cuda": info.get("cuda"),
        "threads": info.get("threads"),
        "data_dir": str(data.root),
        "database": f"{data.db_path} (schema {store.schema_version()})",
        "disk_free": f"{disk.free / 1024**3:.1f} GB",
        "engine": describe_holder(holder) if holder else "not running",
        "terminal": os.environ.get("TERM", "unknown"),
        "tmux": bool(os.environ.get("TMUX")),
        "graphics": config.graphics if config.graphics != "auto" else terminal_graphics(),
    }
