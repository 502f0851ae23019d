"""`medialab doctor`: what this machine has, asked of a real worker process.

It also checks the whole database (SQLite's quick_check) and lists its backups;
a damaged store is reported, not refused, so the report is there when it is needed.
"""

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
from medialab_tui.store import backup
from medialab_tui.store.db import Store, StoreDamaged, damage_of


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
    worker = WorkerProcess(config, data.logs / "worker.log", probe=True)
    await worker.start()
    try:
        return await worker.wait_ready()
    finally:
        await worker.shutdown()


def open_store(data: DataDir) -> tuple[Store | None, StoreDamaged | None]:
    """The store after the full check, or why it cannot be used."""
    try:
        store = Store(data.db_path)
        store.verify()
    except Exception as exc:
        damage = damage_of(exc, data.db_path)
        if damage is None:
            raise
        return None, damage
    return store, None


def describe_backups(data: DataDir) -> str:
    """`3 in <data>/backups, newest 2026-12-01 20:38:12 UTC`."""
    found = backup.list_backups(data.db_path)
    if not found:
        return "none yet (the engine host takes one when it starts)"
    return f"{len(found)} in {data.backups}, newest {found[0].label}"


def describe_host(store: Store | None, holder: dict[str, Any] | None) -> dict[str, Any]:
    """The running host's pid, user, uptime, loaded models and keep-alive left."""
    import time
    from pathlib import Path

    from medialab_tui.engine import daemon
    from medialab_tui.text import human_seconds

    if holder is None or store is None:
        return {}
    info = daemon.host_info(store)
    if info is None or info.get("pid") != holder.get("pid"):
        return {"engine_pid": holder.get("pid"), "engine_user": holder.get("user")}
    loaded = [Path(p).name for p in info.get("loaded", [])]
    return {
        "engine_pid": info.get("pid"),
        "engine_user": info.get("user"),
        "engine_uptime": human_seconds(time.time() - float(info.get("started_at", time.time()))),
        "engine_models": ", ".join(loaded) if loaded else "none loaded",
        "engine_workers": describe_workers(info.get("workers") or []),
        "engine_keep_alive": daemon.keep_alive_left(info, daemon.attached_clients(store)),
    }


def describe_workers(workers: list[dict[str, Any]]) -> str:
    """One line per worker of the host's pool: label, device, what it runs and holds."""
    from pathlib import Path

    lines = []
    for w in workers:
        models = [Path(str(p)).name for p in w.get("loaded") or []]
        doing = f"running j{w['job']}" if w.get("busy") and w.get("job") else "idle"
        lines.append(
            f"{w.get('label', '?')}: {w.get('device') or 'starting'} (pid {w.get('pid')}), "
            f"{doing}, {', '.join(models) if models else 'no model loaded'}"
        )
    return "\n".join(lines) if lines else "none started"


def describe_cluster_nodes(config: Config) -> dict[str, Any]:
    """The Dask cluster of config `cluster`: one line per worker with its device,
    resources and loaded models (asking starts each node's medialab worker)."""
    if not config.cluster:
        return {}
    from pathlib import Path

    from medialab_tui.engine.cluster import describe_cluster

    found = describe_cluster(config.cluster)
    if "error" in found:
        return {"cluster": f"{config.cluster}: unreachable ({found['error']})"}
    lines = [f"{config.cluster}: {found['workers']} workers, {found['gpus']} GPU units"]
    for n in found.get("nodes", []):
        models = [Path(str(p)).name for p in n.get("loaded") or []]
        gpus = n.get("resources", {}).get("GPU", 0)
        lines.append(
            f"{n['name']}: {n.get('device') or '?'}, GPU={gpus:g}, "
            f"{', '.join(models) if models else 'no model loaded'}"
        )
    return {"cluster": "\n".join(lines)}


def describe_roots(data: DataDir, config: Config) -> dict[str, Any]:
    """How many model folders are read, from where, and what could not be read."""
    from medialab_tui.engine.roots import all_roots

    found = all_roots(data, config)
    sources = [f"{len(config.model_roots)} in model_roots"] if config.model_roots else []
    if config.comfyui_model_paths:
        sources.append(f"{len(config.comfyui_model_paths)} ComfyUI yaml(s)")
    if config.a1111_roots:
        sources.append(f"{len(config.a1111_roots)} A1111/Forge install(s)")
    count = len(found.roots)
    report: dict[str, Any] = {
        "model_roots": f"{count} folder{'s' if count != 1 else ''} ("
        + ", ".join([f"{data.models}", *sources])
        + ")"
    }
    if found.problems:
        report["model_root_problems"] = "\n".join(p.sentence for p in found.problems)
    return report


def gather(
    data: DataDir, config: Config, store: Store | None, damage: StoreDamaged | None = None
) -> dict[str, Any]:
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
        "database": (
            f"{data.db_path} (schema {store.schema_version()}, checked)"
            if store is not None
            else f"DAMAGED: {data.db_path} {damage.problem if damage else 'cannot be opened'}"
        ),
        "backups": describe_backups(data),
        **describe_roots(data, config),
        "disk_free": f"{disk.free / 1024**3:.1f} GB",
        "engine": describe_holder(holder) if holder else "not running",
        **describe_host(store, holder),
        **describe_cluster_nodes(config),
        "terminal": os.environ.get("TERM", "unknown"),
        "tmux": bool(os.environ.get("TMUX")),
        "graphics": config.graphics if config.graphics != "auto" else terminal_graphics(),
    }
