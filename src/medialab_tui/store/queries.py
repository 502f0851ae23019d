"""Read-side queries: the listings of the command line and the TUI.

Listings are paged in SQL so they stay fast with 100,000 rows, and read through the
store's plain read-only connections (`Store.reading`), so a listing command never
imports SQLAlchemy. The gallery has one query (`GalleryQuery`) that `medialab
gallery` and the gallery screen both use; rows become views (`store.views`) before
they leave the store.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from medialab_tui.errors import NotFound
from medialab_tui.store.db import Store
from medialab_tui.store.ids import parse_ref
from medialab_tui.store.values import QUEUE_KEY, WORKER_KEY, utcnow
from medialab_tui.store.views import ArtifactView, JobView, ModelView, QueueSummary, RunView


def _stored(ts: datetime) -> str:
    """A time as the store keeps it (UTC, SQLAlchemy's text form), for comparisons in SQL."""
    return ts.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def list_runs(store: Store, *, limit: int = 50, offset: int = 0) -> list[RunView]:
    """Runs, newest first, with how many of their jobs there are and how many succeeded."""
    with store.reading() as conn:
        runs = conn.execute(
            "SELECT * FROM run ORDER BY id DESC LIMIT ? OFFSET ?", (limit, offset)
        ).fetchall()
        counts: dict[int, tuple[int, int]] = {}
        if runs:
            # A page of runs in id order holds every run between its first and last id.
            rows = conn.execute(
                "SELECT run_id, status, count(*) FROM job WHERE run_id BETWEEN ? AND ?"
                " GROUP BY run_id, status",
                (runs[-1]["id"], runs[0]["id"]),
            ).fetchall()
            for run_id, status, n in rows:
                total, done = counts.get(run_id, (0, 0))
                counts[run_id] = (total + n, done + (n if status == "succeeded" else 0))
    return [RunView.of(r, *counts.get(r["id"], (0, 0))) for r in runs]


def list_jobs(
    store: Store,
    *,
    status: str | None = None,
    run_id: int | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[JobView]:
    """Jobs, newest first."""
    where: list[str] = []
    args: list[Any] = []
    if status:
        where.append("status = ?")
        args.append(status)
    if run_id is not None:
        where.append("run_id = ?")
        args.append(run_id)
    sql = "SELECT * FROM job"
    if where:
        sql += " WHERE " + " AND ".join(where)
    with store.reading() as conn:
        rows = conn.execute(f"{sql} ORDER BY id DESC LIMIT ? OFFSET ?", (*args, limit, offset))
        return [JobView.of(j) for j in rows]


def run_jobs(
    store: Store, run_id: int, *, limit: int | None = None, offset: int = 0
) -> list[JobView]:
    """A run's jobs in id order (the order they were planned), optionally one page."""
    with store.reading() as conn:
        rows = conn.execute(
            "SELECT * FROM job WHERE run_id = ? ORDER BY id LIMIT ? OFFSET ?",
            (run_id, -1 if limit is None else limit, offset),
        )
        return [JobView.of(j) for j in rows]


def run_artifacts(store: Store, run_id: int) -> list[ArtifactView]:
    """A run's artifacts in the order they were made."""
    with store.reading() as conn:
        rows = conn.execute("SELECT * FROM artifact WHERE run_id = ? ORDER BY id", (run_id,))
        return [ArtifactView.of(a) for a in rows]


def run_snapshot(store: Store, run_id: int) -> tuple[RunView, list[JobView], list[ArtifactView]]:
    """A run with its jobs and artifacts, read in one snapshot (what `run` follows)."""
    with store.reading() as conn:
        row = conn.execute("SELECT * FROM run WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise NotFound(f"there is no run r{run_id}")
        jobs = conn.execute("SELECT * FROM job WHERE run_id = ? ORDER BY id", (run_id,))
        job_views = [JobView.of(j) for j in jobs]
        arts = conn.execute("SELECT * FROM artifact WHERE run_id = ? ORDER BY id", (run_id,))
        return RunView.of(row), job_views, [ArtifactView.of(a) for a in arts]


def _artifact_view(conn: sqlite3.Connection, row: sqlite3.Row) -> ArtifactView:
    parents = conn.execute(
        "SELECT parent_id FROM artifactparent WHERE artifact_id = ?", (row["id"],)
    ).fetchall()
    return ArtifactView.of(row, tuple(p[0] for p in parents))


def artifact_view(store: Store, artifact_id: int) -> ArtifactView | None:
    """An artifact with its lineage (the artifacts it was made from), None if there is none."""
    with store.reading() as conn:
        row = conn.execute("SELECT * FROM artifact WHERE id = ?", (artifact_id,)).fetchone()
        return None if row is None else _artifact_view(conn, row)


@dataclass(frozen=True)
class Found:
    """What an id names: its view, and its row (for the documents a view leaves out)."""

    view: RunView | JobView | ArtifactView
    row: sqlite3.Row


def find(store: Store, ref: str) -> Found:
    """The run, job or artifact `ref` names (`r12`, `j40`, `a7`), or NotFound."""
    kind, ident = parse_ref(ref)
    with store.reading() as conn:
        row = conn.execute(f"SELECT * FROM {kind} WHERE id = ?", (ident,)).fetchone()
        if row is None:
            raise NotFound(f"there is no {kind} {ref}")
        view: RunView | JobView | ArtifactView
        if kind == "run":
            view = RunView.of(row)
        elif kind == "job":
            view = JobView.of(row)
        else:
            view = _artifact_view(conn, row)
    return Found(view, row)


def list_models(store: Store, kind: str | None = None, tag: str | None = None) -> list[ModelView]:
    """Registry entries with their tags and note, by kind, then name; only one kind
    when `kind` is given, only those tagged `tag` (as `labels.clean_tags` gives it)."""
    where: list[str] = []
    args: list[str] = []
    if kind:
        where.append("model.kind = ?")
        args.append(kind)
    if tag:
        where.append("EXISTS (SELECT 1 FROM json_each(label.tags) WHERE value = ?)")
        args.append(tag)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    with store.reading() as conn:
        rows = conn.execute(
            "SELECT model.*, label.tags AS tags, label.note AS note FROM model"
            f" LEFT JOIN modellabel AS label ON label.name = model.name {clause}"
            " ORDER BY model.kind, model.name",
            args,
        )
        return [ModelView.of(m, store.path.parent) for m in rows]


def queue_summary(store: Store, after_event: int | None = None) -> QueueSummary:
    """Queue state, queued/running counts, and jobs ended since event `after_event`.

    Cheap at any size: the counts read the queue index, the endings read only the
    events newer than the last summary (none on the first call).
    """
    with store.reading() as conn:
        counts = dict(
            conn.execute(
                "SELECT status, count(*) FROM job WHERE status IN ('queued', 'running')"
                " GROUP BY status"
            ).fetchall()
        )
        settings = dict(
            conn.execute(
                "SELECT key, value FROM setting WHERE key IN (?, ?)", (QUEUE_KEY, WORKER_KEY)
            ).fetchall()
        )
        last = conn.execute("SELECT max(id) FROM event").fetchone()[0] or 0
        ended: dict[str, int] = {}
        run_endings: list[tuple[int, str, str]] = []
        if after_event is not None:
            ended = dict(
                conn.execute(
                    "SELECT action, count(*) FROM event WHERE id > ? AND id <= ?"
                    " AND action IN ('job.succeeded', 'job.failed') GROUP BY action",
                    (after_event, last),
                ).fetchall()
            )
            run_endings = [
                (run_id, name, action.removeprefix("run."))
                for run_id, name, action in conn.execute(
                    "SELECT event.object_id, run.name, event.action FROM event"
                    " JOIN run ON run.id = event.object_id"
                    " WHERE event.id > ? AND event.id <= ?"
                    " AND event.action IN ('run.review', 'run.succeeded', 'run.failed')"
                    " ORDER BY event.id LIMIT 20",
                    (after_event, last),
                ).fetchall()
            ]
    worker = settings.get(WORKER_KEY)
    return QueueSummary(
        state=settings.get(QUEUE_KEY, "active"),
        counts=counts,
        worker=json.loads(worker) if worker else {},
        finished=ended.get("job.succeeded", 0),
        failed=ended.get("job.failed", 0),
        last_event=last,
        run_endings=tuple(run_endings),
    )


def review_outputs(store: Store, run_id: int) -> list[ArtifactView]:
    """The outputs of a run's current stage: what its review picks from."""
    with store.reading() as conn:
        rows = conn.execute(
            "SELECT artifact.* FROM artifact JOIN job ON job.id = artifact.job_id"
            " JOIN run ON run.id = artifact.run_id"
            " WHERE artifact.run_id = ? AND job.stage_index = run.stage_index"
            " ORDER BY artifact.id",
            (run_id,),
        )
        return [ArtifactView.of(a) for a in rows]


def job_images(store: Store, job_id: int) -> list[str]:
    """The image files a job took as its input (stored copies)."""
    return _job_inputs(store, job_id, "images")


def job_videos(store: Store, job_id: int) -> list[str]:
    """The video files a job took as its input (stored copies of `inputs.videos`, or
    the previous stage's videos)."""
    return _job_inputs(store, job_id, "videos")


def _job_inputs(store: Store, job_id: int, kind: str) -> list[str]:
    with store.reading() as conn:
        row = conn.execute("SELECT item FROM job WHERE id = ?", (job_id,)).fetchone()
    return [str(p) for p in (row["item"].get(kind, []) if row else [])]


@dataclass(frozen=True)
class GalleryQuery:
    """What the gallery shows: filters, order and one page (the CLI's and the TUI's)."""

    search: str = ""  # in the prompt, case-insensitive
    kind: str = ""  # image | video | text
    stage: str = ""
    model: str = ""
    starred: bool = False
    # Where it came from: a tool's name (`a1111`, `comfyui`… : images imported from it),
    # `imported` (every imported image), `here` (made by this studio); "": everything.
    source: str = ""
    newest_first: bool = True
    days: int = 0  # only what was made in the last `days` days; 0: any time
    since: datetime | None = None  # only what was made at or after this time
    limit: int = 100
    offset: int = 0


# The gallery's source filter: what `GalleryQuery.source` takes, in the TUI's order.
IMPORT_SOURCES = ("a1111", "comfyui", "invokeai", "swarmui", "medialab", "none")
GALLERY_SOURCES = ("", "here", "imported", *IMPORT_SOURCES)

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


def _gallery_where(query: GalleryQuery) -> tuple[list[str], list[Any]]:
    """The query's filters as SQL conditions on `artifact` and their arguments."""
    where: list[str] = []
    args: list[Any] = []
    if query.search:
        # As SQLAlchemy's `contains`: % and _ in the search are LIKE's wildcards.
        where.append("lower(prompt) LIKE '%' || ? || '%'")
        args.append(query.search.lower())
    for column in ("kind", "stage", "model"):
        value = getattr(query, column)
        if value:
            where.append(f"{column} = ?")
            args.append(value)
    if query.starred:
        where.append("starred = 1")
    if query.source == "here":
        where.append("stage != 'import'")
    elif query.source == "imported":
        where.append("stage = 'import'")
    elif query.source:
        where.append("stage = 'import' AND json_extract(params, '$.source') = ?")
        args.append(query.source)
    if query.days:
        where.append("created_at >= ?")
        args.append(_stored(utcnow() - timedelta(days=query.days)))
    if query.since is not None:
        where.append("created_at >= ?")
        args.append(_stored(query.since))
    return where, args


def _gallery_sql(query: GalleryQuery, select: str, *more: str) -> tuple[str, list[Any]]:
    where, args = _gallery_where(query)
    conditions = [*where, *more]
    sql = f"SELECT {select} FROM artifact"
    return (sql + " WHERE " + " AND ".join(conditions) if conditions else sql), args


def gallery(store: Store, query: GalleryQuery) -> list[ArtifactView]:
    """One page of artifacts in the query's order; paged in SQL, fast at 100,000 rows."""
    sql, args = _gallery_sql(query, "*")
    order = "DESC" if query.newest_first else "ASC"
    with store.reading() as conn:
        rows = conn.execute(
            f"{sql} ORDER BY id {order} LIMIT ? OFFSET ?", (*args, query.limit, query.offset)
        )
        return [ArtifactView.of(a) for a in rows]


def gallery_count(store: Store, query: GalleryQuery) -> int:
    """How many artifacts pass the query's filters (its page is ignored)."""
    sql, args = _gallery_sql(query, "count(*)")
    with store.reading() as conn:
        return int(conn.execute(sql, args).fetchone()[0])


def gallery_position(store: Store, query: GalleryQuery, artifact_id: int) -> int | None:
    """Where an artifact sits in the query's order (0 = first), None if filtered out."""
    shown, shown_args = _gallery_sql(query, "1", "id = ?")
    earlier, args = _gallery_sql(query, "count(*)", "id > ?" if query.newest_first else "id < ?")
    with store.reading() as conn:
        if conn.execute(shown, (*shown_args, artifact_id)).fetchone() is None:
            return None
        return int(conn.execute(earlier, (*args, artifact_id)).fetchone()[0])


def gallery_shown(store: Store, query: GalleryQuery, ids: Iterable[int]) -> set[int]:
    """Which of `ids` pass the query's filters (the rest are hidden by them)."""
    wanted = sorted(set(ids))
    found: set[int] = set()
    with store.reading() as conn:
        for start in range(0, len(wanted), 500):  # SQLite's bound-parameter limit
            chunk = wanted[start : start + 500]
            sql, args = _gallery_sql(query, "id", f"id IN ({', '.join('?' * len(chunk))})")
            found.update(int(r[0]) for r in conn.execute(sql, (*args, *chunk)))
    return found


def gallery_facets(store: Store) -> tuple[list[str], list[str]]:
    """The distinct models and stages among the artifacts: the gallery's filter choices."""
    with store.reading() as conn:
        models = conn.execute("SELECT DISTINCT model FROM artifact ORDER BY model").fetchall()
        stages = conn.execute("SELECT DISTINCT stage FROM artifact ORDER BY stage").fetchall()
    return [m[0] for m in models if m[0]], [s[0] for s in stages if s[0]]
