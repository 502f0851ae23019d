"""Read-side queries: the listings of the command line and the TUI.

Listings are paged in SQL so they stay fast with 100,000 rows. The gallery has one
query (`GalleryQuery`) that `medialab gallery` and the gallery screen both use; rows
become views (`store.views`) before they leave the store.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlmodel import col, func, select

from medialab_tui.store.db import Store
from medialab_tui.store.tables import Artifact, ArtifactParent, Job, Run, utcnow
from medialab_tui.store.views import ArtifactView, JobView, RunView


def list_runs(store: Store, *, limit: int = 50, offset: int = 0) -> list[RunView]:
    """Runs, newest first, with how many of their jobs there are and how many succeeded."""
    with store.read() as s:
        runs = s.exec(select(Run).order_by(col(Run.id).desc()).offset(offset).limit(limit)).all()
        counts: dict[int, tuple[int, int]] = {}
        if runs:
            rows = s.exec(
                select(Job.run_id, Job.status, func.count())
                .where(col(Job.run_id).in_([r.id for r in runs]))
                .group_by(col(Job.run_id), col(Job.status))
            ).all()
            for run_id, status, n in rows:
                total, done = counts.get(run_id, (0, 0))
                counts[run_id] = (total + n, done + (n if status == "succeeded" else 0))
    return [RunView.of(r, *counts.get(r.id or 0, (0, 0))) for r in runs]


def list_jobs(
    store: Store,
    *,
    status: str | None = None,
    run_id: int | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[JobView]:
    """Jobs, newest first."""
    with store.read() as s:
        query = select(Job)
        if status:
            query = query.where(Job.status == status)
        if run_id is not None:
            query = query.where(Job.run_id == run_id)
        query = query.order_by(col(Job.id).desc()).offset(offset).limit(limit)
        return [JobView.of(j) for j in s.exec(query).all()]


def run_jobs(
    store: Store, run_id: int, *, limit: int | None = None, offset: int = 0
) -> list[JobView]:
    """A run's jobs in id order (the order they were planned), optionally one page."""
    query = select(Job).where(Job.run_id == run_id).order_by(col(Job.id)).offset(offset)
    if limit is not None:
        query = query.limit(limit)
    with store.read() as s:
        return [JobView.of(j) for j in s.exec(query).all()]


def run_artifacts(store: Store, run_id: int) -> list[ArtifactView]:
    """A run's artifacts in the order they were made."""
    with store.read() as s:
        query = select(Artifact).where(Artifact.run_id == run_id).order_by(col(Artifact.id))
        return [ArtifactView.of(a) for a in s.exec(query).all()]


def artifact_view(store: Store, artifact: Artifact) -> ArtifactView:
    """An artifact with its lineage: the artifacts it was made from."""
    with store.read() as s:
        query = select(ArtifactParent.parent_id).where(ArtifactParent.artifact_id == artifact.id)
        return ArtifactView.of(artifact, tuple(s.exec(query).all()))


@dataclass(frozen=True)
class GalleryQuery:
    """What the gallery shows: filters, order and one page (the CLI's and the TUI's)."""

    search: str = ""  # in the prompt, case-insensitive
    kind: str = ""  # image | video | text
    stage: str = ""
    model: str = ""
    starred: bool = False
    newest_first: bool = True
    days: int = 0  # only what was made in the last `days` days; 0: any time
    since: datetime | None = None  # only what was made at or after this time
    limit: int = 100
    offset: int = 0


# "When it was made" in the TUI's and the CLI's words, in days (0: any time).
SINCE_WORDS = {"today": 1, "week": 7, "month": 30}
GALLERY_DAYS = (0, *SINCE_WORDS.values())


def parse_since(text: str) -> tuple[int, datetime | None]:
    """`today`, `week`, `month` or an ISO date/time as a query's `(days, since)`.

    A date or time without a zone is local time. Raises `ValueError` for anything else.
    """
    word = text.strip().lower()
    if word in SINCE_WORDS:
        return SINCE_WORDS[word], None
    return 0, datetime.fromisoformat(text.strip()).astimezone(UTC)


def _gallery_select(query: GalleryQuery) -> Any:
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
        stmt = stmt.where(col(Artifact.created_at) >= utcnow() - timedelta(days=query.days))
    if query.since is not None:
        stmt = stmt.where(col(Artifact.created_at) >= query.since.astimezone(UTC))
    return stmt


def gallery(store: Store, query: GalleryQuery) -> list[ArtifactView]:
    """One page of artifacts in the query's order; paged in SQL, fast at 100,000 rows."""
    order = col(Artifact.id).desc() if query.newest_first else col(Artifact.id)
    stmt = _gallery_select(query).order_by(order).offset(query.offset).limit(query.limit)
    with store.read() as s:
        return [ArtifactView.of(a) for a in s.exec(stmt).all()]


def gallery_count(store: Store, query: GalleryQuery) -> int:
    """How many artifacts pass the query's filters (its page is ignored)."""
    stmt = _gallery_select(query).subquery()
    with store.read() as s:
        return int(s.exec(select(func.count()).select_from(stmt)).one())


def gallery_position(store: Store, query: GalleryQuery, artifact_id: int) -> int | None:
    """Where an artifact sits in the query's order (0 = first), None if filtered out."""
    base = _gallery_select(query)
    newer = col(Artifact.id) > artifact_id
    before = newer if query.newest_first else col(Artifact.id) < artifact_id
    with store.read() as s:
        if s.exec(base.where(Artifact.id == artifact_id)).first() is None:
            return None
        earlier = base.where(before).subquery()
        return int(s.exec(select(func.count()).select_from(earlier)).one())


def gallery_facets(store: Store) -> tuple[list[str], list[str]]:
    """The distinct models and stages among the artifacts: the gallery's filter choices."""
    with store.read() as s:
        models = s.exec(select(Artifact.model).distinct().order_by(Artifact.model)).all()
        stages = s.exec(select(Artifact.stage).distinct().order_by(Artifact.stage)).all()
    return [m for m in models if m], [st for st in stages if st]
