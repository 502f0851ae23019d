"""Plain views of the store's rows: what the TUI renders and what `--json` prints.

Each row type has one projection. `View.of(row)` takes every field from the row's
column of the same name unless it computes it; the rows are the store's plain
`sqlite3.Row`s (`Store.reading`), so nothing here needs SQLModel. The screens read
the frozen dataclass, and `to_json()` gives the object the command line prints
(SPEC §8 names; ids as `r12`/`j40`/`a7`, times as ISO 8601 with `Z`).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field, fields
from datetime import datetime
from fractions import Fraction
from pathlib import Path
from typing import Any

from medialab_tui.store.values import iso
from medialab_tui.store.videos import as_fraction


def _same_named(view: type[Any], row: sqlite3.Row, **computed: Any) -> dict[str, Any]:
    """A view's fields: `computed` ones as given, every other from the row's same-named column."""
    return {f.name: computed[f.name] if f.name in computed else row[f.name] for f in fields(view)}


@dataclass(frozen=True)
class RunView:
    """A run, with how many of its jobs there are and how many are done (when counted)."""

    id: int
    ref: str
    name: str
    status: str
    mode: str
    stage: int  # 1-based: the stage whose jobs are in the queue now
    stages: int
    priority: int
    error: str
    created_at: datetime
    user: str = ""
    source: str = ""
    started_at: datetime | None = None
    finished_at: datetime | None = None
    rerun_of: int | None = None  # the artifact this run repeats
    jobs_total: int = 0
    jobs_done: int = 0

    @classmethod
    def of(cls, run: sqlite3.Row, total: int = 0, done: int = 0) -> RunView:
        return cls(
            **_same_named(
                cls,
                run,
                ref=f"r{run['id']}",
                stage=run["stage_index"] + 1,
                stages=run["stage_count"],
                jobs_total=total,
                jobs_done=done,
            )
        )

    def to_json(self) -> dict[str, Any]:
        """The `runs` / `show RUN` object (without its jobs)."""
        return {
            "id": self.ref,
            "name": self.name,
            "status": self.status,
            "created_at": iso(self.created_at),
            "mode": self.mode,
            "stage": self.stage,
            "stages": self.stages,
            "priority": self.priority,
            "error": self.error,
            "user": self.user,
            "source": self.source,
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
            "rerun_of": f"a{self.rerun_of}" if self.rerun_of else None,
        }


@dataclass(frozen=True)
class JobView:
    """A job: one stage applied to one input item."""

    id: int
    ref: str
    run_id: int
    stage: str
    stage_index: int  # 0-based, as stored; the JSON counts from 1
    status: str
    progress: float
    step: int
    total_steps: int
    attempts: int
    priority: int
    error: str
    prompt: str
    seed: int | None
    started_at: datetime | None
    run_seconds: float
    error_kind: str = ""
    created_at: datetime | None = None
    params: dict[str, Any] = field(default_factory=dict)  # the stage's, as stored
    worker: str = ""  # the worker that ran it: `cpu:0`, `cuda:1`, a Dask node

    @classmethod
    def of(cls, job: sqlite3.Row) -> JobView:
        item = job["item"]
        return cls(
            **_same_named(
                cls,
                job,
                ref=f"j{job['id']}",
                prompt=str(item.get("prompt", "")),
                seed=item.get("seed"),
                params=dict(job["params"] or {}),
            )
        )

    def to_json(self) -> dict[str, Any]:
        """The `jobs` / `show JOB` object."""
        return {
            "id": self.ref,
            "run_id": f"r{self.run_id}",
            "stage": self.stage,
            "status": self.status,
            "progress": round(self.progress, 4),
            "attempts": self.attempts,
            "error": self.error,
            "error_kind": self.error_kind,
            "stage_index": self.stage_index + 1,
            "step": self.step,
            "total_steps": self.total_steps,
            "priority": self.priority,
            "prompt": self.prompt,
            "seed": self.seed,
            "seconds": round(self.run_seconds, 3),
            "created_at": iso(self.created_at),
            "worker": self.worker,
        }


@dataclass(frozen=True)
class ArtifactView:
    """An output file with its metadata; `parents` is filled only where lineage was read."""

    id: int
    ref: str
    run_id: int
    job_id: int
    stage: str
    kind: str
    path: str
    prompt: str
    seed: int | None
    model: str
    width: int
    height: int
    starred: bool
    created_at: datetime
    params: dict[str, Any] = field(default_factory=dict)
    parents: tuple[int, ...] = ()

    @classmethod
    def of(cls, a: sqlite3.Row, parents: tuple[int, ...] = ()) -> ArtifactView:
        return cls(
            **_same_named(
                cls, a, ref=f"a{a['id']}", params=dict(a["params"] or {}), parents=parents
            )
        )

    def to_json(self, *, lineage: bool = False) -> dict[str, Any]:
        """The `gallery` object; `lineage=True` adds `parents` (as `show ARTIFACT` does)."""
        data: dict[str, Any] = {
            "id": self.ref,
            "run_id": f"r{self.run_id}",
            "job_id": f"j{self.job_id}",
            "stage": self.stage,
            "kind": self.kind,
            "path": self.path,
            "created_at": iso(self.created_at),
            "params": self.params,
            "prompt": self.prompt,
            "seed": self.seed,
            "model": self.model,
            "width": self.width,
            "height": self.height,
            "starred": self.starred,
        }
        if self.kind == "video":
            data.update(
                fps=self.fps,
                fps_exact=self.fps_exact,
                frames=self.frames,
                duration=self.duration,
            )
        if lineage:
            data["parents"] = [f"a{p}" for p in self.parents]
        return data

    # A video's rate and length, from the metadata written with it (None for others).

    @property
    def fps(self) -> float | None:
        """Frames per second as a number (29.97…); `fps_exact` is the rational."""
        value = self.params.get("fps")
        return float(value) if self.kind == "video" and value is not None else None

    @property
    def fps_exact(self) -> str | None:
        """The exact frame rate as a fraction, "60000/1001" (from `fps` where a video's
        metadata has only that)."""
        value = self.params.get("fps_exact")
        if self.kind != "video" or (value is None and not self.fps):
            return None
        if value is None:
            rate = as_fraction(self.fps or 0)
            value = f"{rate.numerator}/{rate.denominator}"
        return str(value)

    @property
    def frames(self) -> int | None:
        value = self.params.get("frames")
        return int(value) if self.kind == "video" and value is not None else None

    @property
    def duration(self) -> float | None:
        """Seconds: frames at the exact frame rate."""
        value = self.params.get("duration")
        exact = self.fps_exact
        if value is None and self.frames is not None and exact and Fraction(exact):
            value = float(self.frames / Fraction(exact))
        return float(value) if self.kind == "video" and value is not None else None


@dataclass(frozen=True)
class ModelView:
    """A registry entry."""

    name: str
    kind: str
    arch: str
    format: str
    path: str
    size: int
    sha256: str
    safe: bool
    demo: bool
    # A person's labels (`store.labels`): none until someone adds them.
    tags: tuple[str, ...] = ()
    note: str = ""
    # The root it was found under: `models` (the data directory's), or an absolute folder.
    root: str = ""
    # Its hashes are still being computed in the background (`sha256` is "" until then).
    hash_pending: bool = False

    @property
    def short_hash(self) -> str:
        return self.sha256[:10]

    @property
    def label(self) -> str:
        """The name as listings show it: a demo model says so."""
        return self.name + (" (demo)" if self.demo else "")

    @classmethod
    def of(cls, m: sqlite3.Row, data_root: Path | None = None) -> ModelView:
        """From a `model` row joined with its `modellabel` columns (NULL when unlabelled);
        its path is where the model is in the data directory at `data_root` (its root
        joined with its relative path), so a copied data directory lists its own."""
        path = str(Path(data_root, m["root"], m["rel"])) if data_root and m["rel"] else m["path"]
        return cls(
            **_same_named(cls, m, tags=tuple(m["tags"] or ()), note=m["note"] or "", path=path)
        )

    def to_json(self) -> dict[str, Any]:
        """The `models list` object."""
        return {
            "name": self.name,
            "kind": self.kind,
            "arch": self.arch,
            "format": self.format,
            "path": self.path,
            "size": self.size,
            "sha256": self.sha256,
            "short_hash": self.short_hash,
            "safe": self.safe,
            "demo": self.demo,
            "tags": list(self.tags),
            "note": self.note,
            "root": self.root,
            "hash_pending": self.hash_pending,
        }


@dataclass(frozen=True)
class QueueSummary:
    """The queue as every screen's header shows it, and the jobs ended since the last one."""

    state: str  # active | paused
    counts: dict[str, int]  # queued and running jobs
    worker: dict[str, Any]
    finished: int = 0  # jobs that succeeded since the previous summary
    failed: int = 0  # jobs that failed since the previous summary
    last_event: int = 0  # pass it back as `after_event` next time
    # Runs that reached review, succeeded or failed since the previous summary, in
    # order: (run id, run name, "review" | "succeeded" | "failed").
    run_endings: tuple[tuple[int, str, str], ...] = ()
