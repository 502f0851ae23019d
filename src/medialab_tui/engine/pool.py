"""The engine's worker slots: which devices get a worker, and which slot runs a job.

Config `devices` names one worker per device: `"auto"` is every GPU this host can
see (found without torch: `CUDA_VISIBLE_DEVICES`, else `nvidia-smi -L`), or one
worker on the config's `device` when there is none; a list such as
`["cuda:0", "cuda:1"]` or `["cpu", "cpu"]` is taken as given. Each GPU's worker sees
only its own GPU (`CUDA_VISIBLE_DEVICES`), so its cache budget is that GPU's memory;
CPU workers share the cores and the memory (with `threads = 0` and
`cache_budget_gb = 0` each takes its share). With config `cluster` the slots are
the Dask cluster's workers instead (`engine.cluster`).

Placement is pure and small: `pick_job` serves the highest priority first and, within
a priority, the run with the fewest running jobs (then the oldest job), so a big run
does not starve a small one; `pick_slot` sends a job to an idle slot that holds its
model, else to the least loaded one.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from medialab_tui.config import Config, DataDir
from medialab_tui.engine.worker_client import WorkerHandle, WorkerProcess
from medialab_tui.errors import InputError

# A slot's "recent" jobs, for the least-loaded choice: those that ended this long ago.
RECENT_S = 60.0
# Of the memory a CPU worker's cache takes by default (the worker's own rule).
CPU_CACHE_SHARE = 0.5


@dataclass(frozen=True)
class Placement:
    """One worker to start: its label, the `--device` it gets, and what it overrides."""

    label: str
    device: str
    env: Mapping[str, str] = field(default_factory=dict)
    threads: int | None = None
    cache_budget_gb: float | None = None


def visible_gpus(env: Mapping[str, str] | None = None) -> list[str]:
    """The CUDA devices of this host, as the ids `CUDA_VISIBLE_DEVICES` takes."""
    env = os.environ if env is None else env
    given = env.get("CUDA_VISIBLE_DEVICES")
    if given is not None:
        ids = [part.strip() for part in given.split(",")]
        return [i for i in ids if i and not i.startswith("-")]
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(ln for ln in out.splitlines() if ln.startswith("GPU "))]


def _ram_bytes() -> int:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return 0


def _unique(label: str, taken: set[str]) -> str:
    name, n = label, 2
    while name in taken:
        name, n = f"{label}/{n}", n + 1
    taken.add(name)
    return name


def plan_devices(
    config: Config,
    gpus: Sequence[str] | None = None,
    cpu_count: int | None = None,
    ram_bytes: int | None = None,
) -> list[Placement]:
    """One placement per worker of config `devices` (GPUs, cores and memory given for
    tests; found on this host otherwise)."""
    found = list(visible_gpus() if gpus is None else gpus)
    names: list[str]
    auto = config.devices == "auto"
    if not auto:
        names = list(config.devices)
    elif config.device in ("auto", "cuda") and len(found) > 1:
        names = [f"cuda:{i}" for i in range(len(found))]
    else:
        names = [config.device]
    cpus = sum(1 for n in names if n == "cpu")
    share = cpus > 1
    cores = cpu_count if cpu_count is not None else (os.cpu_count() or 1)
    ram = ram_bytes if ram_bytes is not None else _ram_bytes()
    taken: set[str] = set()
    counts: dict[str, int] = {}
    out: list[Placement] = []
    for name in names:
        kind, _, index = name.partition(":")
        if kind == "auto":
            kind = "cuda" if found else ("mps" if sys.platform == "darwin" else "cpu")
        number = int(index) if index else counts.get(kind, 0)
        counts[kind] = number + 1
        label = _unique(f"{kind}:{number}", taken)
        env: dict[str, str] = {}
        device = name
        if kind == "cuda" and index:
            # The worker sees its GPU alone, as `cuda`: its cache budget is that GPU's
            # (found by "auto", it keeps the config's device: a CPU-only torch falls back).
            env["CUDA_VISIBLE_DEVICES"] = found[number] if number < len(found) else str(number)
            device = config.device if auto else "cuda"
        threads = budget = None
        if name == "cpu" and share:
            if config.threads == 0:
                threads = max(1, cores // cpus)
            if config.cache_budget_gb == 0 and ram:
                budget = round(ram * CPU_CACHE_SHARE / cpus / 1024**3, 3)
        out.append(Placement(label, device, env, threads, budget))
    return out


def log_path(data: DataDir, index: int, label: str) -> Path:
    """The first worker logs to `worker.log`, the others to `worker-<label>.log`."""
    if index == 0:
        return data.logs / "worker.log"
    return data.logs / f"worker-{re.sub(r'[^A-Za-z0-9_.-]', '-', label)}.log"


def make_workers(config: Config, data: DataDir) -> list[WorkerHandle]:
    """The pool's workers, not started: this host's devices, or the Dask cluster's."""
    if config.cluster:
        try:
            from medialab_tui.engine.cluster import cluster_workers
        except ImportError as exc:
            raise InputError(
                f"config cluster = {config.cluster!r} cannot be used: the Dask cluster path "
                f"is not available in this install ({exc})"
            ) from None
        workers: list[WorkerHandle] = cluster_workers(config, data)
        return workers
    return [
        WorkerProcess(
            config,
            log_path(data, i, p.label),
            p.device,
            label=p.label,
            threads=p.threads,
            cache_budget_gb=p.cache_budget_gb,
            env=dict(p.env),
        )
        for i, p in enumerate(plan_devices(config))
    ]


# -- placement ---------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    """A run's next queued job: the one it would start now."""

    job_id: int
    run_id: int
    priority: int = 0


@dataclass(frozen=True)
class SlotView:
    """What placement knows of an idle slot."""

    index: int
    loaded: tuple[str, ...] = ()
    idle_since: float = 0.0
    recent: int = 0  # jobs it ended in the last RECENT_S
    alive: bool = True


def pick_job(candidates: Sequence[Candidate], running: Mapping[int, int]) -> Candidate | None:
    """The job to start: highest priority, then the run with the fewest running jobs,
    then the oldest job."""
    if not candidates:
        return None
    return min(candidates, key=lambda c: (-c.priority, running.get(c.run_id, 0), c.job_id))


def pick_slot(idle: Sequence[SlotView], model: str | None) -> int | None:
    """The index of the slot for a job on `model`: one holding it, else the least
    loaded (fewest recent jobs, then idle longest); a slot whose worker is up first."""
    if not idle:
        return None
    holding = [v for v in idle if model and model in v.loaded]
    chosen = min(holding or idle, key=lambda v: (not v.alive, v.recent, v.idle_since, v.index))
    return chosen.index
