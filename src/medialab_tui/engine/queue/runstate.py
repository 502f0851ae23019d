"""The run state machine: when a stage's jobs are done, pause for review, move on to
the next stage (its jobs made from this stage's outputs), or end the run.

Called inside the transaction that ended a job (by the engine) or that approved a
review (by any client), so nobody ever reads a finished job under a run that still
says it is running.
"""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, col, select

from medialab_tui.engine.planner import next_items
from medialab_tui.engine.stages import STAGES
from medialab_tui.engine.sweep import apply_cell, cells
from medialab_tui.store.db import Store
from medialab_tui.store.tables import Artifact, Job, Run, utcnow


def new_jobs(
    session: Session, store: Store, run: Run, stage_index: int, items: list[dict[str, Any]]
) -> int:
    """Queue one job of stage `stage_index` per item, once per cell of its sweep (the
    cell's values in the job's parameters, the cell in its item, added to the cell the
    item descends from); returns how many."""
    raw = run.pipeline["stages"][stage_index]
    stage = STAGES[raw["type"]].params.model_validate(raw)
    swept = [(cell, apply_cell(stage, cell).model_dump(exclude_none=True)) for cell in cells(stage)]
    count = 0
    for item in items:
        for cell, params in swept:
            made = item
            if cell:
                made = {**item, "cell": {**item.get("cell", {}), **cell}}
                if "seed" in cell:
                    made["seed"] = cell["seed"]
            session.add(
                Job(
                    run_id=run.id or 0,
                    stage_index=stage_index,
                    stage=stage.type,
                    priority=run.priority,
                    item=made,
                    params=params,
                    user=store.user,
                )
            )
            count += 1
    return count


def stage_outputs(session: Session, run: Run, stage_index: int) -> list[Artifact]:
    """The outputs of a run's stage, from its succeeded jobs, oldest first."""
    return list(
        session.exec(
            select(Artifact)
            .join(Job, col(Job.id) == Artifact.job_id)
            .where(
                Artifact.run_id == run.id, Job.stage_index == stage_index, Job.status == "succeeded"
            )
            .order_by(col(Artifact.id))
        ).all()
    )


def advance_run(
    session: Session,
    store: Store,
    run: Run,
    outputs: list[Artifact],
    prompts: dict[int, str] | None = None,
) -> None:
    """Queue the next stage's jobs from `outputs`, or finish the run after its last stage.
    `prompts` replaces the prompt that an output passes on (review edits)."""
    if run.stage_index + 1 >= run.stage_count or not outputs:
        last = run.stage_index + 1 >= run.stage_count
        run.status = "succeeded" if last else "failed"
        run.error = "" if last else f"stage {run.stage_index + 1} made no outputs"
        run.finished_at = utcnow()
        session.add(run)
        store.record(session, f"run.{run.status}", "run", run.id)
        return
    run.stage_index += 1
    run.status = "running"
    session.add(run)
    stage_type = run.pipeline["stages"][run.stage_index]["type"]
    count = new_jobs(
        session, store, run, run.stage_index, next_items(stage_type, outputs, prompts or {})
    )
    store.record(session, "run.stage", "run", run.id, stage=run.stage_index + 1, jobs=count)


def finish_stage_if_done(session: Session, store: Store, run: Run) -> None:
    """When the current stage has no work left, move the run on."""
    statuses = session.exec(
        select(Job.status).where(Job.run_id == run.id, Job.stage_index == run.stage_index)
    ).all()
    if any(st in ("queued", "running") for st in statuses):
        return
    if "failed" in statuses:
        first = session.exec(
            select(Job)
            .where(Job.run_id == run.id, Job.stage_index == run.stage_index, Job.status == "failed")
            .order_by(col(Job.id))
        ).first()
        run.status, run.finished_at = "failed", utcnow()
        run.error = f"job j{first.id} failed: {first.error}" if first else "a job failed"
        session.add(run)
        store.record(session, "run.failed", "run", run.id, error=run.error)
        return
    if statuses and all(st == "cancelled" for st in statuses):
        run.status, run.finished_at = "cancelled", utcnow()
        session.add(run)
        store.record(session, "run.cancelled", "run", run.id)
        return
    stage = run.pipeline["stages"][run.stage_index]
    # `checkpoint` pauses after stages marked `review`; `manual` after every stage
    # that has another after it (after the last there is nothing left to approve).
    more = run.stage_index + 1 < run.stage_count
    if more and (run.mode == "manual" or (run.mode == "checkpoint" and stage.get("review"))):
        run.status = "review"
        session.add(run)
        store.record(session, "run.review", "run", run.id, stage=run.stage_index + 1)
        return
    advance_run(session, store, run, stage_outputs(session, run, run.stage_index))
