"""The store's tables: runs, jobs, artifacts, models (with their labels) and the audit trail.

Ids are integers in the database and shown to people with a one-letter prefix
(`r12` a run, `j40` a job, `a7` an artifact) so any id typed anywhere says what
it names.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Index
from sqlmodel import Field, SQLModel

from medialab_tui.store.values import (  # noqa: F401 - re-exported: the tables' values
    JOB_STATUSES,
    RUN_STATUSES,
    TERMINAL_JOB,
    TERMINAL_RUN,
    iso,
    utcnow,
)


class Run(SQLModel, table=True):
    """One execution of a pipeline."""

    id: int | None = Field(default=None, primary_key=True)
    name: str
    status: str = Field(default="pending", index=True)
    mode: str = "auto"
    pipeline: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    source: str = ""  # the pipeline file it came from, if any
    stage_index: int = 0  # the stage whose jobs are in the queue now
    stage_count: int = 1
    priority: int = 0
    error: str = ""
    rerun_of: int | None = None  # the artifact a re-run repeats
    user: str = ""
    created_at: datetime = Field(default_factory=utcnow, index=True)
    started_at: datetime | None = None
    finished_at: datetime | None = None

    @property
    def ref(self) -> str:
        return f"r{self.id}"


class Job(SQLModel, table=True):
    """One stage applied to one input item: one queue entry."""

    __table_args__ = (
        Index("ix_job_queue", "status", "priority", "id"),
        # Each run's next queued job, one seek per run (the engine's fair claim).
        Index("ix_job_run_queue", "status", "run_id", "priority", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="run.id", index=True)
    stage_index: int = 0
    stage: str  # the stage type, e.g. "txt2img"
    status: str = "queued"
    priority: int = 0  # higher runs first
    attempts: int = 0  # times it was started
    crashes: int = 0  # times it took the worker (or its host) down with it
    progress: float = 0.0
    step: int = 0
    total_steps: int = 0
    item: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))  # prompt, seed, parents
    params: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    error: str = ""
    error_kind: str = ""
    cancel_requested: bool = False
    load_seconds: float = 0.0
    run_seconds: float = 0.0
    # The worker that ran it last: `cpu:0`, `cuda:1`, or a Dask node's name.
    worker: str = ""
    user: str = ""
    created_at: datetime = Field(default_factory=utcnow)
    started_at: datetime | None = None
    finished_at: datetime | None = None

    @property
    def ref(self) -> str:
        return f"j{self.id}"


class Artifact(SQLModel, table=True):
    """One output file with its metadata."""

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="run.id", index=True)
    job_id: int = Field(foreign_key="job.id", index=True)
    stage: str
    kind: str = "image"  # image | video | text
    path: str
    name: str
    prompt: str = ""
    seed: int | None = None
    model: str = ""
    width: int = 0
    height: int = 0
    starred: bool = False
    params: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, index=True)

    @property
    def ref(self) -> str:
        return f"a{self.id}"


class ArtifactParent(SQLModel, table=True):
    """Lineage: an artifact and each artifact it was made from."""

    artifact_id: int = Field(foreign_key="artifact.id", primary_key=True)
    parent_id: int = Field(foreign_key="artifact.id", primary_key=True, index=True)


class Model(SQLModel, table=True):
    """A registry entry: a checkpoint, LoRA, VAE, upscaler… on local disk."""

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True, unique=True)
    kind: str
    arch: str
    format: str  # diffusers | safetensors | pickle
    # Where the model was found when last scanned. The lasting record is `root` and
    # `rel`: a copied or moved data directory keeps its models (see `registry.located`).
    path: str = Field(unique=True)
    # The root folder the model was found under: relative to the data directory when
    # inside it (`models`), else absolute; "" for a row from before roots were recorded.
    root: str = ""
    # The model's path relative to `root` (absolute when `root` is "").
    rel: str = ""
    size: int = 0
    mtime: float = 0.0
    fast_hash: str = ""
    sha256: str = ""
    safe: bool = True
    allowed: bool = False  # the operator allowed this pickle file to load
    demo: bool = False
    added_at: datetime = Field(default_factory=utcnow)
    # Hashes are computed in the background: until then `fast_hash` and `sha256` are "".
    hash_pending: bool = False


class ModelLabel(SQLModel, table=True):
    """A person's tags and note on a model, kept by the model's name: a rescan, a
    moved root or a file that goes and comes back leaves them in place."""

    name: str = Field(primary_key=True)
    tags: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    note: str = ""
    updated_at: datetime = Field(default_factory=utcnow)


class Event(SQLModel, table=True):
    """Audit record: who did what to which object, and when."""

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, index=True)
    user: str
    action: str
    object_type: str
    object_id: int | None = None
    details: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class Setting(SQLModel, table=True):
    """Small shared state, e.g. whether the queue is paused."""

    key: str = Field(primary_key=True)
    value: str
