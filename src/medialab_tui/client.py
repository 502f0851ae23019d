"""The TUI's single door to the store and the queue: plain dataclasses in, plain out.

Screens never touch the database or the worker; they call a `StudioClient` from a
thread worker and render the dataclasses it returns. Every method is blocking and
short (one or two SQL statements), and safe to call from any thread.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sqlmodel import col, func, select

from medialab_tui.config import Config, DataDir
from medialab_tui.engine import queue, registry
from medialab_tui.engine.pipeline import Pipeline, parse_pipeline
from medialab_tui.errors import InputError
from medialab_tui.store import queries
from medialab_tui.store.db import Store
from medialab_tui.store.queries import GALLERY_DAYS, GalleryQuery
from medialab_tui.store.tables import Artifact, ArtifactParent, Event, Job, Run, Setting
from medialab_tui.store.views import ArtifactView, JobView, ModelView, RunView

__all__ = [
    "GALLERY_DAYS",
    "ArtifactView",
    "GalleryQuery",
    "JobView",
    "ModelView",
    "QueueSummary",
    "RunView",
    "StudioClient",
]


@dataclass(frozen=True)
class QueueSummary:
    state: str  # active | paused
    counts: dict[str, int]  # queued and running jobs
    worker: dict[str, Any]
    finished: int = 0  # jobs that succeeded since the previous summary
    failed: int = 0  # jobs that failed since the previous summary
    last_event: int = 0  # pass it back as `after_event` next time


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
            worker = s.get(Setting, queue.WORKER_KEY)
            state = s.get(Setting, queue.QUEUE_KEY)
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
        return queries.list_runs(self.store, limit=limit, offset=offset)

    def jobs(self, run_id: int) -> list[JobView]:
        return queries.run_jobs(self.store, run_id)

    def running_job(self) -> JobView | None:
        running = queries.list_jobs(self.store, status="running", limit=1)
        return running[0] if running else None

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
        return queue.cancel(self.store, ref)

    def retry(self, ref: str) -> str:
        return queue.retry(self.store, ref)

    def move(self, ref: str, delta: int) -> int:
        return queue.set_priority(self.store, ref, delta)

    def set_paused(self, paused: bool) -> None:
        queue.set_queue_state(self.store, "paused" if paused else "active")

    def approve(
        self,
        run_ref: str,
        artifact_refs: list[str] | None = None,
        edits: dict[str, str] | None = None,
    ) -> str:
        return queue.approve(self.store, run_ref, artifact_refs, edits=edits)

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

    def prepare(self, pipeline: Pipeline, source: str, base_dir: Path) -> queue.Prepared:
        return queue.prepare(self.store, pipeline, source, base_dir)

    def submit(self, prepared: queue.Prepared) -> str:
        return queue.submit(self.store, self.data, prepared).ref

    def rerun(self, artifact_ref: str) -> str:
        from medialab_tui.engine.queue.rerun import prepare_rerun

        artifact = queue.get(self.store, artifact_ref)
        if not isinstance(artifact, Artifact):
            raise InputError(f"{artifact_ref} is not an artifact")
        return queue.submit(
            self.store, self.data, prepare_rerun(self.store, artifact), rerun_of=artifact.id
        ).ref

    # -- gallery ---------------------------------------------------------------------

    def gallery(
        self, query: GalleryQuery, *, limit: int | None = None, offset: int | None = None
    ) -> list[ArtifactView]:
        """One page of artifacts; `limit`/`offset`, when given, replace the query's page."""
        page = replace(
            query,
            limit=query.limit if limit is None else limit,
            offset=query.offset if offset is None else offset,
        )
        return queries.gallery(self.store, page)

    def gallery_count(self, query: GalleryQuery) -> int:
        return queries.gallery_count(self.store, query)

    def artifact(self, ref: str) -> ArtifactView:
        row = queue.get(self.store, ref)
        if not isinstance(row, Artifact):
            raise InputError(f"{ref} is not an artifact")
        return queries.artifact_view(self.store, row)

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
        return queries.run_jobs(self.store, run_id, limit=limit, offset=offset)

    # -- gallery extras ---

    def gallery_facets(self) -> tuple[list[str], list[str]]:
        """The distinct models and stages among the artifacts: the gallery's filter choices."""
        return queries.gallery_facets(self.store)

    def gallery_position(self, query: GalleryQuery, artifact_id: int) -> int | None:
        """Where an artifact sits in the gallery's order (0 = first), None if filtered out."""
        return queries.gallery_position(self.store, query, artifact_id)
