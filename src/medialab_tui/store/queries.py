"""Read-side queries and the JSON shapes of SPEC §8.

Listings are paged in SQL (newest first) so they stay fast with 100,000 rows.
"""

from __future__ import annotations

from typing import Any

from sqlmodel import col, func, select

from medialab_tui.store.db import Store
from medialab_tui.store.tables import Artifact, ArtifactParent, Job, Model, Run, iso


def run_json(run: Run) -> dict[str, Any]:
    return {
        "id": run.ref,
        "name": run.name,
        "status": run.status,
        "created_at": iso(run.created_at),
        "mode": run.mode,
        "stage": run.stage_index + 1,
        "stages": run.stage_count,
        "priority": run.priority,
        "error": run.error,
        "user": run.user,
        "source": run.source,
        "started_at": iso(run.started_at),
        "finished_at": iso(run.finished_at),
        "rerun_of": f"a{run.rerun_of}" if run.rerun_of else None,
    }


def job_json(job: Job) -> dict[str, Any]:
    return {
        "id": job.ref,
        "run_id": f"r{job.run_id}",
        "stage": job.stage,
        "status": job.status,
        "progress": round(job.progress, 4),
        "attempts": job.attempts,
        "error": job.error,
        "error_kind": job.error_kind,
        "stage_index": job.stage_index + 1,
        "step": job.step,
        "total_steps": job.total_steps,
        "priority": job.priority,
        "prompt": job.item.get("prompt", ""),
        "seed": job.item.get("seed"),
        "seconds": round(job.run_seconds, 3),
        "created_at": iso(job.created_at),
    }


def artifact_json(artifact: Artifact, parents: list[int] | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": artifact.ref,
        "run_id": f"r{artifact.run_id}",
        "job_id": f"j{artifact.job_id}",
        "stage": artifact.stage,
        "kind": artifact.kind,
        "path": artifact.path,
        "created_at": iso(artifact.created_at),
        "params": artifact.params,
        "prompt": artifact.prompt,
        "seed": artifact.seed,
        "model": artifact.model,
        "width": artifact.width,
        "height": artifact.height,
        "starred": artifact.starred,
    }
    if parents is not None:
        data["parents"] = [f"a{p}" for p in parents]
    return data


def model_json(model: Model) -> dict[str, Any]:
    return {
        "name": model.name,
        "kind": model.kind,
        "arch": model.arch,
        "format": model.format,
        "path": model.path,
        "size": model.size,
        "sha256": model.sha256,
        "short_hash": model.sha256[:10],
        "safe": model.safe,
        "demo": model.demo,
    }


def list_runs(store: Store, *, limit: int = 50, offset: int = 0) -> list[Run]:
    with store.read() as s:
        query = select(Run).order_by(col(Run.id).desc()).offset(offset).limit(limit)
        return list(s.exec(query).all())


def list_jobs(
    store: Store,
    *,
    status: str | None = None,
    run_id: int | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[Job]:
    with store.read() as s:
        query = select(Job)
        if status:
            query = query.where(Job.status == status)
        if run_id is not None:
            query = query.where(Job.run_id == run_id)
        query = query.order_by(col(Job.id).desc()).offset(offset).limit(limit)
        return list(s.exec(query).all())


def run_jobs(store: Store, run_id: int) -> list[Job]:
    with store.read() as s:
        return list(s.exec(select(Job).where(Job.run_id == run_id).order_by(col(Job.id))).all())


def run_artifacts(store: Store, run_id: int) -> list[Artifact]:
    with store.read() as s:
        query = select(Artifact).where(Artifact.run_id == run_id).order_by(col(Artifact.id))
        return list(s.exec(query).all())


def parents_of(store: Store, artifact_id: int) -> list[int]:
    with store.read() as s:
        query = select(ArtifactParent.parent_id).where(ArtifactParent.artifact_id == artifact_id)
        return list(s.exec(query).all())


def gallery(
    store: Store,
    *,
    search: str | None = None,
    kind: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[Artifact]:
    """Artifacts, newest first; `search` matches prompts (case-insensitive)."""
    with store.read() as s:
        query = select(Artifact)
        if kind:
            query = query.where(Artifact.kind == kind)
        if search:
            query = query.where(func.lower(Artifact.prompt).contains(search.lower()))
        query = query.order_by(col(Artifact.id).desc()).offset(offset).limit(limit)
        return list(s.exec(query).all())


def count_jobs_by_status(store: Store) -> dict[str, int]:
    with store.read() as s:
        rows = s.exec(select(Job.status, func.count()).group_by(Job.status)).all()
    return {status: n for status, n in rows}
