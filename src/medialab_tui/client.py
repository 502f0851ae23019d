"""The TUI's single door to the store and the queue: plain dataclasses in, plain out.

Screens never touch the database or the worker; they call a `StudioClient` from a
thread worker and render the dataclasses it returns. Every method is blocking and
short (one or two SQL statements), and safe to call from any thread.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlmodel import col, func, select

from medialab_tui.config import Config, DataDir
from medialab_tui.engine import control, registry
from medialab_tui.engine.pipeline import Pipeline, parse_pipeline
from medialab_tui.errors import InputError
from medialab_tui.store.db import Store
from medialab_tui.store.tables import Artifact, ArtifactParent, Event, Job, Model, Run, Setting


@dataclass(frozen=True)
class JobView:
    id: int
    ref: str
    run_id: int
    stage: str
    stage_index: int
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

    @classmethod
    def of(cls, job: Job) -> JobView:
        return cls(
            id=job.id or 0,
            ref=job.ref,
            run_id=job.run_id,
            stage=job.stage,
            stage_index=job.stage_index,
            status=job.status,
            progress=job.progress,
            step=job.step,
            total_steps=job.total_steps,
            attempts=job.attempts,
            priority=job.priority,
            error=job.error,
            prompt=str(job.item.get("prompt", "")),
            seed=job.item.get("seed"),
            started_at=job.started_at,
            run_seconds=job.run_seconds,
        )


@dataclass(frozen=True)
class RunView:
    id: int
    ref: str
    name: str
    status: str
    mode: str
    stage: int
    stages: int
    priority: int
    error: str
    created_at: datetime
    jobs_total: int = 0
    jobs_done: int = 0

    @classmethod
    def of(cls, run: Run, total: int = 0, done: int = 0) -> RunView:
        return cls(
            id=run.id or 0,
            ref=run.ref,
            name=run.name,
            status=run.status,
            mode=run.mode,
            stage=run.stage_index + 1,
            stages=run.stage_count,
            priority=run.priority,
            error=run.error,
            created_at=run.created_at,
            jobs_total=total,
            jobs_done=done,
        )


@dataclass(frozen=True)
class ArtifactView:
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
    def of(cls, a: Artifact, parents: tuple[int, ...] = ()) -> ArtifactView:
        return cls(
            id=a.id or 0,
            ref=a.ref,
            run_id=a.run_id,
            job_id=a.job_id,
            stage=a.stage,
            kind=a.kind,
            path=a.path,
            prompt=a.prompt,
            seed=a.seed,
            model=a.model,
            width=a.width,
            height=a.height,
            starred=a.starred,
            created_at=a.created_at,
            params=dict(a.params or {}),
            parents=parents,
        )


@dataclass(frozen=True)
class ModelView:
    name: str
    kind: str
    arch: str
    format: str
    path: str
    size: int
    sha256: str
    safe: bool
    demo: bool

    @property
    def short_hash(self) -> str:
        return self.sha256[:10]

    @classmethod
    def of(cls, m: Model) -> ModelView:
        return cls(m.name, m.kind, m.arch, m.format, m.path, m.size, m.sha256, m.safe, m.demo)


@dataclass(frozen=True)
class QueueSummary:
    state: str  # active | paused
    counts: dict[str, int]  # queued and running jobs
    worker: dict[str, Any]
    finished: int = 0  # jobs that succeeded since the previous summary
    failed: int = 0  # jobs that failed since the previous summary
    last_event: int = 0  # pass it back as `after_event` next time


@dataclass(frozen=True)
class GalleryQuery:
    search: str = ""
    kind: str = ""
    stage: str = ""
    model: str = ""
    starred: bool = False
    newest_first: bool = True
    days: int = 0  # only what was made in the last `days` days; 0: any time


# The date ranges the gallery cycles through, in days (0: any time).
GALLERY_DAYS = (0, 1, 7, 30)


class StudioClient:
    """What the TUI may ask for and ask to be done."""

    def __init__(self, data: DataDir, config: Config, store: Store) -> None:
        self.data = data
        self.config = config
        self.store = store

    # -- queue -----------------------------------------------------------------------

    def summary(self, after_event: int | None = None) -> QueueSummary:
        """Queue state, queued/running counts, and jobs ended since event `after_event`.

        Cheap at any size: the counts read the queue index, the endings read only
        the events newer than the last summary (none on the first call).
        """
        import json

        with self.store.read() as s:
            rows = s.exec(
                select(Job.status, func.count())
                .where(col(Job.status).in_(("queued", "running")))
                .group_by(col(Job.status))
            ).all()
            worker = s.get(Setting, control.WORKER_KEY)
            state = s.get(Setting, control.QUEUE_KEY)
            last = s.exec(select(func.max(Event.id))).one() or 0
            ended: dict[str, int] = {}
            if after_event is not None:
                ended = dict(
                    s.exec(
                        select(Event.action, func.count())
                        .where(
                            col(Event.id) > after_event,
                            col(Event.id) <= last,
                            col(Event.action).in_(("job.succeeded", "job.failed")),
                        )
                        .group_by(col(Event.action))
                    ).all()
                )
        return QueueSummary(
            state=state.value if state else "active",
            counts={status: n for status, n in rows},
            worker=json.loads(worker.value) if worker else {},
            finished=ended.get("job.succeeded", 0),
            failed=ended.get("job.failed", 0),
            last_event=last,
        )

    def runs(self, *, limit: int = 200, offset: int = 0) -> list[RunView]:
        """Runs, newest first, with how many of their jobs are done."""
        with self.store.read() as s:
            runs = s.exec(
                select(Run).order_by(col(Run.id).desc()).offset(offset).limit(limit)
            ).all()
            ids = [r.id for r in runs]
            counts: dict[int, tuple[int, int]] = {}
            if ids:
                rows = s.exec(
                    select(Job.run_id, Job.status, func.count())
                    .where(col(Job.run_id).in_(ids))
                    .group_by(col(Job.run_id), col(Job.status))
                ).all()
                for run_id, status, n in rows:
                    total, done = counts.get(run_id, (0, 0))
                    counts[run_id] = (total + n, done + (n if status == "succeeded" else 0))
        return [RunView.of(r, *counts.get(r.id or 0, (0, 0))) for r in runs]

    def jobs(self, run_id: int) -> list[JobView]:
        with self.store.read() as s:
            jobs = s.exec(select(Job).where(Job.run_id == run_id).order_by(col(Job.id))).all()
        return [JobView.of(j) for j in jobs]

    def running_job(self) -> JobView | None:
        with self.store.read() as s:
            job = s.exec(select(Job).where(Job.status == "running").limit(1)).first()
        return JobView.of(job) if job else None

    def preview_path(self, job_id: int) -> Path:
        return self.data.root / "cache" / "previews" / f"j{job_id}.png"

    def log_tail(self, lines: int = 8) -> list[str]:
        path = self.data.logs / "worker.log"
        if not path.exists():
            return []
        with path.open("rb") as fh:
            fh.seek(0, 2)
            fh.seek(max(0, fh.tell() - 8192))
            text = fh.read().decode("utf-8", "replace")
        return text.splitlines()[-lines:]

    def cancel(self, ref: str) -> str:
        return control.cancel(self.store, ref)

    def retry(self, ref: str) -> str:
        return control.retry(self.store, ref)

    def move(self, ref: str, delta: int) -> int:
        return control.set_priority(self.store, ref, delta)

    def set_paused(self, paused: bool) -> None:
        control.set_queue_state(self.store, "paused" if paused else "active")

    def approve(
        self,
        run_ref: str,
        artifact_refs: list[str] | None = None,
        edits: dict[str, str] | None = None,
    ) -> str:
        return control.approve(self.store, run_ref, artifact_refs, edits=edits)

    def review_outputs(self, run_id: int) -> list[ArtifactView]:
        """The outputs of a run's current stage: what its review picks from."""
        with self.store.read() as s:
            run = s.get(Run, run_id)
            if run is None:
                return []
            rows = s.exec(
                select(Artifact)
                .join(Job, col(Job.id) == Artifact.job_id)
                .where(Artifact.run_id == run_id, Job.stage_index == run.stage_index)
                .order_by(col(Artifact.id))
            ).all()
        return [ArtifactView.of(a) for a in rows]

    # -- pipelines -------------------------------------------------------------------

    def validate(self, document: dict[str, Any], source: str) -> Pipeline:
        """Parse a pipeline given as data; raises `InputError` with one sentence."""
        return parse_pipeline(document, source)

    def prepare(self, pipeline: Pipeline, source: str, base_dir: Path) -> control.Prepared:
        return control.prepare(self.store, pipeline, source, base_dir)

    def submit(self, prepared: control.Prepared) -> str:
        return control.submit(self.store, self.data, prepared).ref

    def rerun(self, artifact_ref: str) -> str:
        from medialab_tui.engine.rerun import prepare_rerun

        artifact = control.get(self.store, artifact_ref)
        if not isinstance(artifact, Artifact):
            raise InputError(f"{artifact_ref} is not an artifact")
        return control.submit(
            self.store, self.data, prepare_rerun(self.store, artifact), rerun_of=artifact.id
        ).ref

    # -- gallery ---------------------------------------------------------------------

    def _gallery_select(self, query: GalleryQuery) -> Any:
        stmt = select(Artifact)
        if query.search:
            stmt = stmt.where(func.lower(Artifact.prompt).contains(query.search.lower()))
        if query.kind:
            stmt = stmt.where(Artifact.kind == query.kind)
        if query.stage:
            stmt = stmt.where(Artifact.stage == query.stage)
        if query.model:
            stmt = stmt.where(Artifact.model == query.model)
        if query.starred:
            stmt = stmt.where(col(Artifact.starred).is_(True))
        if query.days:
            since = datetime.now(UTC) - timedelta(days=query.days)
            stmt = stmt.where(col(Artifact.created_at) >= since)
        return stmt

    def gallery(
        self, query: GalleryQuery, *, limit: int = 100, offset: int = 0
    ) -> list[ArtifactView]:
        """One page of artifacts; paged in SQL so it stays fast at 100,000 rows."""
        order = col(Artifact.id).desc() if query.newest_first else col(Artifact.id)
        stmt = self._gallery_select(query).order_by(order).offset(offset).limit(limit)
        with self.store.read() as s:
            return [ArtifactView.of(a) for a in s.exec(stmt).all()]

    def gallery_count(self, query: GalleryQuery) -> int:
        stmt = self._gallery_select(query).subquery()
        with self.store.read() as s:
            return int(s.exec(select(func.count()).select_from(stmt)).one())

    def artifact(self, ref: str) -> ArtifactView:
        row = control.get(self.store, ref)
        if not isinstance(row, Artifact):
            raise InputError(f"{ref} is not an artifact")
        with self.store.read() as s:
            parents = s.exec(
                select(ArtifactParent.parent_id).where(ArtifactParent.artifact_id == row.id)
            ).all()
        return ArtifactView.of(row, tuple(parents))

    def source_images(self, job_id: int) -> list[str]:
        """The image files a job took as its input (stored copies, never modified)."""
        with self.store.read() as s:
            job = s.get(Job, job_id)
        return [str(p) for p in (job.item.get("images", []) if job else [])]

    def star(self, artifact_id: int, starred: bool) -> None:
        with self.store.write() as s:
            row = s.get(Artifact, artifact_id)
            if row is None:
                raise InputError(f"there is no artifact a{artifact_id}")
            row.starred = starred
            s.add(row)
            self.store.record(
                s, "artifact.star" if starred else "artifact.unstar", "artifact", row.id
            )

    def delete_artifact(self, artifact_id: int) -> None:
        """Remove an artifact's row, lineage links and files (the caller asked first)."""
        with self.store.write() as s:
            row = s.get(Artifact, artifact_id)
            if row is None:
                raise InputError(f"there is no artifact a{artifact_id}")
            links = s.exec(
                select(ArtifactParent).where(
                    (ArtifactParent.artifact_id == artifact_id)
                    | (ArtifactParent.parent_id == artifact_id)
                )
            ).all()
            for link in links:
                s.delete(link)
            path = Path(row.path)
            s.delete(row)
            self.store.record(s, "artifact.delete", "artifact", artifact_id, path=str(path))
        trash = self.data.root / "trash"
        trash.mkdir(exist_ok=True)
        for file in (path, path.with_suffix(".json")):
            if file.exists():
                shutil.move(str(file), trash / f"a{artifact_id}-{file.name}")

    # -- models ----------------------------------------------------------------------

    def models(self, kind: str = "") -> list[ModelView]:
        return [ModelView.of(m) for m in registry.list_models(self.store, kind or None)]

    def rescan(self) -> registry.ScanResult:
        return registry.scan(self.store, self.data, self.config)

    # -- queue screen extras ---

    def jobs_page(self, run_id: int, *, limit: int = 200, offset: int = 0) -> list[JobView]:
        """One page of a run's jobs in id order, so a run of 100,000 jobs polls fast."""
        stmt = select(Job).where(Job.run_id == run_id).order_by(col(Job.id))
        with self.store.read() as s:
            jobs = s.exec(stmt.offset(offset).limit(limit)).all()
        return [JobView.of(j) for j in jobs]

    # -- gallery extras ---

    def gallery_facets(self) -> tuple[list[str], list[str]]:
        """The distinct models and stages among the artifacts: the gallery's filter choices."""
        with self.store.read() as s:
            models = s.exec(select(Artifact.model).distinct().order_by(Artifact.model)).all()
            stages = s.exec(select(Artifact.stage).distinct().order_by(Artifact.stage)).all()
        return [m for m in models if m], [st for st in stages if st]

    def gallery_position(self, query: GalleryQuery, artifact_id: int) -> int | None:
        """Where an artifact sits in the gallery's order (0 = first), None if filtered out."""
        base = self._gallery_select(query)
        newer = col(Artifact.id) > artifact_id
        before = newer if query.newest_first else col(Artifact.id) < artifact_id
        with self.store.read() as s:
            if s.exec(base.where(Artifact.id == artifact_id)).first() is None:
                return None
            earlier = base.where(before).subquery()
            return int(s.exec(select(func.count()).select_from(earlier)).one())
