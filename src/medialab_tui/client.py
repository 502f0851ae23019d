"""The TUI's single door to the store and the queue: plain dataclasses in, plain out.

Screens never touch the database or the worker; they call a `StudioClient` from a
thread worker and render the dataclasses it returns. Every method is blocking and
short (one or two SQL statements), and safe to call from any thread.

The screens poll (the header twice a second, the queue as often); a listing asked
again while the store's change counter has not moved is answered from the last
answer, so an idle studio costs one `PRAGMA data_version` per poll, not its queries.
Reads go through the store's plain `sqlite3` connections; the engine's queue code
(and SQLAlchemy with it) is imported on the first request that writes.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from medialab_tui.config import Config, DataDir
from medialab_tui.errors import InputError
from medialab_tui.store import queries
from medialab_tui.store.db import Store
from medialab_tui.store.queries import GALLERY_DAYS, GALLERY_SOURCES, GalleryQuery
from medialab_tui.store.views import ArtifactView, JobView, ModelView, QueueSummary, RunView

if TYPE_CHECKING:
    from medialab_tui.engine import queue, registry, roots
    from medialab_tui.engine.pipeline import Pipeline
    from medialab_tui.interop.exporting import Exported
    from medialab_tui.interop.importing import Imported
    from medialab_tui.store.labels import Labels

__all__ = [
    "GALLERY_DAYS",
    "GALLERY_SOURCES",
    "ArtifactView",
    "GalleryQuery",
    "JobView",
    "ModelView",
    "QueueSummary",
    "RunView",
    "StudioClient",
]

T = TypeVar("T")
# Answers kept for polls (pages of runs, jobs, the gallery); more are forgotten at once.
KEPT_ANSWERS = 64


def _minute(query: GalleryQuery) -> int:
    """A query of the last N days changes as time passes: its answer is kept a minute."""
    return int(time.time() // 60) if query.days else 0


class StudioClient:
    """What the TUI may ask for and ask to be done."""

    def __init__(self, data: DataDir, config: Config, store: Store) -> None:
        self.data = data
        self.config = config
        self.store = store
        self._answers: dict[tuple[Any, ...], tuple[tuple[int, int], Any]] = {}
        self._log: tuple[tuple[int, int], list[str]] | None = None

    def _unless_changed(self, key: tuple[Any, ...], read: Callable[[], T]) -> T:
        """`read()`, or its last answer for `key` when nothing was committed since.

        The counter is read before the query, so a commit during the query is seen
        by the next call. Lists come back as copies: a caller may change its own.
        """
        changes = self.store.changes()
        kept = self._answers.get(key)
        if kept is not None and kept[0] == changes:
            answer = kept[1]
        else:
            answer = read()
            if len(self._answers) >= KEPT_ANSWERS:
                self._answers.clear()
            self._answers[key] = (changes, answer)
        return list(answer) if isinstance(answer, list) else answer  # type: ignore[return-value]

    # -- queue -----------------------------------------------------------------------

    def summary(self, after_event: int | None = None) -> QueueSummary:
        """Queue state, queued/running counts, and jobs ended since event `after_event`."""
        return self._unless_changed(
            ("summary", after_event), lambda: queries.queue_summary(self.store, after_event)
        )

    def runs(self, *, limit: int = 200, offset: int = 0) -> list[RunView]:
        """Runs, newest first, with how many of their jobs are done."""
        return self._unless_changed(
            ("runs", limit, offset),
            lambda: queries.list_runs(self.store, limit=limit, offset=offset),
        )

    def jobs(self, run_id: int) -> list[JobView]:
        return self._unless_changed(("jobs", run_id), lambda: queries.run_jobs(self.store, run_id))

    def running_job(self) -> JobView | None:
        running = self._unless_changed(
            ("running",), lambda: queries.list_jobs(self.store, status="running", limit=1)
        )
        return running[0] if running else None

    def preview_path(self, job_id: int) -> Path:
        return self.data.root / "cache" / "previews" / f"j{job_id}.png"

    def log_tail(self, lines: int = 8) -> list[str]:
        """The worker log's last lines; read again only when the file changed."""
        path = self.data.logs / "worker.log"
        try:
            st = path.stat()
        except OSError:
            return []
        stamp = (st.st_size, st.st_mtime_ns)
        if self._log is None or self._log[0] != stamp:
            with path.open("rb") as fh:
                fh.seek(max(0, st.st_size - 8192))
                text = fh.read(8192).decode("utf-8", "replace")
            self._log = (stamp, text.splitlines())
        return self._log[1][-lines:]

    def cancel(self, ref: str) -> str:
        from medialab_tui.engine import queue

        return queue.cancel(self.store, ref)

    def retry(self, ref: str) -> str:
        from medialab_tui.engine import queue

        return queue.retry(self.store, ref)

    def move(self, ref: str, delta: int) -> int:
        from medialab_tui.engine import queue

        return queue.set_priority(self.store, ref, delta)

    def set_paused(self, paused: bool) -> None:
        from medialab_tui.engine import queue

        queue.set_queue_state(self.store, "paused" if paused else "active")

    def approve(
        self,
        run_ref: str,
        artifact_refs: list[str] | None = None,
        edits: dict[str, str] | None = None,
    ) -> str:
        from medialab_tui.engine import queue

        return queue.approve(self.store, run_ref, artifact_refs, edits=edits)

    def review_outputs(self, run_id: int) -> list[ArtifactView]:
        """The outputs of a run's current stage: what its review picks from."""
        return queries.review_outputs(self.store, run_id)

    # -- pipelines -------------------------------------------------------------------

    def validate(self, document: dict[str, Any], source: str) -> Pipeline:
        """Parse a pipeline given as data; raises `InputError` with one sentence."""
        from medialab_tui.engine.pipeline import parse_pipeline

        return parse_pipeline(document, source)

    def prepare(self, pipeline: Pipeline, source: str, base_dir: Path) -> queue.Prepared:
        from medialab_tui.engine import queue

        return queue.prepare(self.store, pipeline, source, base_dir)

    def submit(self, prepared: queue.Prepared) -> str:
        from medialab_tui.engine import queue

        return queue.submit(self.store, self.data, prepared).ref

    def rerun(self, artifact_ref: str) -> str:
        from medialab_tui.engine import queue
        from medialab_tui.engine.queue.rerun import prepare_rerun
        from medialab_tui.store.tables import Artifact

        artifact = queue.get(self.store, artifact_ref)
        if not isinstance(artifact, Artifact):
            raise InputError(f"{artifact_ref} is not an artifact")
        return queue.submit(
            self.store, self.data, prepare_rerun(self.store, artifact), rerun_of=artifact.id
        ).ref

    def settings(self, artifact_ref: str) -> dict[str, Any]:
        """The pipeline document that makes an artifact again (for the builder)."""
        from medialab_tui.engine import queue
        from medialab_tui.engine.queue.rerun import pipeline_settings
        from medialab_tui.store.tables import Artifact

        artifact = queue.get(self.store, artifact_ref)
        if not isinstance(artifact, Artifact):
            raise InputError(f"{artifact_ref} is not an artifact")
        return pipeline_settings(self.store, artifact)

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
        return self._unless_changed(
            ("gallery", page, _minute(page)), lambda: queries.gallery(self.store, page)
        )

    def gallery_count(self, query: GalleryQuery) -> int:
        return self._unless_changed(
            ("gallery_count", replace(query, limit=0, offset=0), _minute(query)),
            lambda: queries.gallery_count(self.store, query),
        )

    def artifact(self, ref: str) -> ArtifactView:
        """An artifact with its lineage; `InputError` when `ref` names something else."""
        found = queries.find(self.store, ref)
        if not isinstance(found.view, ArtifactView):
            raise InputError(f"{ref} is not an artifact")
        return found.view

    def source_images(self, job_id: int) -> list[str]:
        """The image files a job took as its input (stored copies, never modified)."""
        return queries.job_images(self.store, job_id)

    def source_videos(self, job_id: int) -> list[str]:
        """The video files a job took as its input (stored copies, never modified)."""
        return queries.job_videos(self.store, job_id)

    def star(self, artifact_id: int, starred: bool) -> None:
        from medialab_tui.store.tables import Artifact

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
        """Remove an artifact's row and lineage links, and move its files (the file, its
        sidecar and a video's first-frame thumbnail) to the trash (the caller asked first)."""
        from sqlmodel import select

        from medialab_tui.store.tables import Artifact, ArtifactParent

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
            files = [path, path.with_suffix(".json")]
            if row.kind == "video":
                files.append(path.with_suffix(".thumb.png"))  # its first frame (the gallery's)
            s.delete(row)
            self.store.record(s, "artifact.delete", "artifact", artifact_id, path=str(path))
        trash = self.data.root / "trash"
        trash.mkdir(exist_ok=True)
        for file in files:
            if file.exists():
                shutil.move(str(file), trash / f"a{artifact_id}-{file.name}")

    def import_images(
        self, paths: list[Path], progress: Callable[[int, int], None] | None = None
    ) -> list[Imported]:
        """Copy the images under `paths` into the gallery (`interop.importing`); an
        `InputError` for a path that does not exist or a file that is no image."""
        from medialab_tui.interop.importing import import_images

        return import_images(self.store, self.data, paths, progress)

    def export(self, refs: list[str], target: Path, *, strip: bool = False) -> list[Exported]:
        """Copy artifacts, with their metadata and sidecars (`strip`: without any), into
        the folder or the zip `target` (`interop.exporting`); nothing there is replaced."""
        from medialab_tui.interop.exporting import artifacts_of, export_artifacts

        return export_artifacts(artifacts_of(self.store, refs), target, strip=strip)

    # -- models ----------------------------------------------------------------------

    def models(self, kind: str = "", tag: str = "") -> list[ModelView]:
        """The registry with each model's tags and note; one kind, one tag when given."""
        return self._unless_changed(
            ("models", kind, tag),
            lambda: queries.list_models(self.store, kind or None, tag or None),
        )

    def model_tags(self) -> list[tuple[str, int]]:
        """Every tag on a registered model, with how many models carry it."""
        from medialab_tui.store.labels import tags_in_use

        return self._unless_changed(("model-tags",), lambda: tags_in_use(self.store))

    def model_roots(self) -> list[roots.Root]:
        """The folders models are read from, with where each comes from (config, a
        ComfyUI yaml, an A1111 install); reads the yaml files, so not for every poll."""
        from medialab_tui.engine.roots import all_roots

        return all_roots(self.data, self.config).roots

    def label_model(
        self, name: str, *, tags: list[str] | None = None, note: str | None = None
    ) -> Labels:
        """Replace a model's tags and/or note (`store.labels`); `InputError` if the
        model is gone or a value is refused, and then nothing is stored."""
        from medialab_tui.store.labels import label_model

        return label_model(self.store, name, tags=tags, note=note)

    def rescan(self) -> registry.ScanResult:
        from medialab_tui.engine import registry

        return registry.scan(self.store, self.data, self.config)

    # -- queue screen extras ---

    def jobs_page(self, run_id: int, *, limit: int = 200, offset: int = 0) -> list[JobView]:
        """One page of a run's jobs in id order, so a run of 100,000 jobs polls fast."""
        return self._unless_changed(
            ("jobs", run_id, limit, offset),
            lambda: queries.run_jobs(self.store, run_id, limit=limit, offset=offset),
        )

    # -- gallery extras ---

    def gallery_facets(self) -> tuple[list[str], list[str]]:
        """The distinct models and stages among the artifacts: the gallery's filter choices."""
        return self._unless_changed(("facets",), lambda: queries.gallery_facets(self.store))

    def gallery_shown(self, query: GalleryQuery, ids: Iterable[int]) -> set[int]:
        """Which of the artifacts `ids` the gallery shows with these filters."""
        return queries.gallery_shown(self.store, query, ids)

    def gallery_position(self, query: GalleryQuery, artifact_id: int) -> int | None:
        """Where an artifact sits in the gallery's order (0 = first), None if filtered out."""
        return queries.gallery_position(self.store, query, artifact_id)
