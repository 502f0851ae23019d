"""What any medialab process may ask of the queue: submit, cancel, retry, reorder,
pause, resume, approve. The CLI and the TUI both go through here.

Requests are writes to the store, checked and recorded as events in the same
transaction; the engine host notices them on its next poll (≤ 0.2 s). Nothing
here talks to the worker, so a client needs no engine to be running.
"""

from __future__ import annotations

from pathlib import Path

from sqlmodel import Session, col, select

from medialab_tui.config import DataDir
from medialab_tui.engine.queue.refs import get_row, parse_ref
from medialab_tui.engine.queue.resolve import Prepared, store_input_file
from medialab_tui.engine.queue.runstate import (
    advance_run,
    finish_stage_if_done,
    new_jobs,
    stage_outputs,
)
from medialab_tui.errors import InputError
from medialab_tui.store.db import Store
from medialab_tui.store.tables import (
    TERMINAL_JOB,
    TERMINAL_RUN,
    Artifact,
    Job,
    Run,
    Setting,
    utcnow,
)
from medialab_tui.store.values import QUEUE_KEY


def submit(store: Store, data: DataDir, prepared: Prepared, *, rerun_of: int | None = None) -> Run:
    """Write the run and its first stage's jobs in one transaction."""
    sources = [*prepared.image_sources, *prepared.video_sources]
    stored = {str(p): store_input_file(data.inputs, p) for p in sources}
    items = [
        {
            **item,
            "images": [stored.get(i, i) for i in item["images"]],
            **({"videos": [stored.get(v, v) for v in item["videos"]]} if "videos" in item else {}),
        }
        for item in prepared.items
    ]
    document = prepared.pipeline.to_dict()
    # The run keeps what each stage resolved to: the engine builds its jobs' commands
    # from these, and a re-run repeats them.
    document["models"] = [m.model_dump() if m else None for m in prepared.models]
    extras = []
    for stage, extra in zip(document["stages"], prepared.extras, strict=True):
        if extra.control is not None:
            # The run keeps its own copy of the control image, like its input images.
            stored_image = store_input_file(data.inputs, Path(extra.control.image))
            extra = extra.model_copy(
                update={"control": extra.control.model_copy(update={"image": stored_image})}
            )
            stage["control"] = {**stage["control"], "image": stored_image}
        extras.append(extra.model_dump(exclude_none=True))
    document["extras"] = extras
    with store.write() as s:
        run = Run(
            name=prepared.pipeline.name,
            mode=prepared.pipeline.mode,
            pipeline=document,
            source=prepared.source,
            stage_count=len(prepared.pipeline.stages),
            rerun_of=rerun_of,
            user=store.user,
        )
        s.add(run)
        s.flush()
        count = new_jobs(s, store, run, 0, items)
        store.record(s, "run.submit", "run", run.id, name=run.name, jobs=count, source=run.source)
    return run


def queue_state(store: Store) -> str:
    with store.read() as s:
        row = s.get(Setting, QUEUE_KEY)
    return row.value if row else "active"


def set_queue_state(store: Store, state: str) -> None:
    """Pause or resume the whole queue (a running job finishes first)."""
    with store.write() as s:
        row = s.get(Setting, QUEUE_KEY) or Setting(key=QUEUE_KEY, value=state)
        row.value = state
        s.add(row)
        store.record(s, f"queue.{'pause' if state == 'paused' else 'resume'}", "queue", None)


def cancel(store: Store, ref: str) -> str:
    """Cancel a run (all its unfinished jobs) or one job; returns what happened."""
    with store.write() as s:
        row = get_row(s, ref)
        if isinstance(row, Artifact):
            raise InputError(f"{ref} is an artifact; cancel takes a run or a job")
        if isinstance(row, Job):
            if row.status in TERMINAL_JOB:
                raise InputError(f"job {ref} has already finished ({row.status})")
            _cancel_job(s, row)
            store.record(s, "job.cancel", "job", row.id)
            run = s.get(Run, row.run_id)
            active = run is not None and run.status in ("pending", "running")
            if row.status == "cancelled" and run is not None and active:
                s.flush()
                finish_stage_if_done(s, store, run)
            return f"job j{row.id} {'cancelled' if row.status == 'cancelled' else 'cancelling'}"
        if row.status in TERMINAL_RUN:
            raise InputError(f"run {ref} has already finished ({row.status})")
        jobs = s.exec(
            select(Job).where(Job.run_id == row.id, col(Job.status).in_(("queued", "running")))
        ).all()
        for job in jobs:
            _cancel_job(s, job)
        row.status, row.finished_at = "cancelled", utcnow()
        s.add(row)
        store.record(s, "run.cancel", "run", row.id, jobs=len(jobs))
        return f"run r{row.id} cancelled"


def _cancel_job(session: Session, job: Job) -> None:
    if job.status == "queued":
        job.status, job.finished_at = "cancelled", utcnow()
    else:  # running: the engine stops it at the next step and records the end
        job.cancel_requested = True
    session.add(job)


def retry(store: Store, ref: str) -> str:
    """Put a failed or cancelled job (or every such job of a run) back in the queue."""
    with store.write() as s:
        row = get_row(s, ref)
        if isinstance(row, Artifact):
            raise InputError(
                f"{ref} is an artifact; retry takes a run or a job (rerun repeats artifacts)"
            )
        if isinstance(row, Job):
            if row.status not in ("failed", "cancelled"):
                raise InputError(
                    f"job {ref} is {row.status}; only failed or cancelled jobs can be retried"
                )
            run = s.get(Run, row.run_id)
            assert run is not None
            if row.stage_index != run.stage_index:
                raise InputError(f"job {ref} belongs to an earlier stage of run r{run.id}")
            jobs = [row]
        else:
            run = row
            jobs = list(
                s.exec(
                    select(Job).where(
                        Job.run_id == run.id,
                        Job.stage_index == run.stage_index,
                        col(Job.status).in_(("failed", "cancelled")),
                    )
                ).all()
            )
            if not jobs:
                raise InputError(f"run {ref} has no failed or cancelled jobs to retry")
        for job in jobs:
            job.status, job.error, job.error_kind = "queued", "", ""
            job.cancel_requested, job.crashes, job.progress, job.step = False, 0, 0.0, 0
            job.finished_at = None
            s.add(job)
            store.record(s, "job.retry", "job", job.id, attempt=job.attempts + 1)
        if run.status in TERMINAL_RUN:
            run.status, run.finished_at, run.error = "running", None, ""
            s.add(run)
        return f"{len(jobs)} job{'s' if len(jobs) != 1 else ''} of run r{run.id} queued again"


def set_priority(store: Store, ref: str, delta: int) -> int:
    """Move a run's (or a job's) queued work up (+) or down (−); returns the new priority."""
    with store.write() as s:
        row = get_row(s, ref)
        if isinstance(row, Artifact):
            raise InputError(f"{ref} is an artifact; priorities belong to runs and jobs")
        row.priority += delta
        s.add(row)
        if isinstance(row, Run):
            for job in s.exec(
                select(Job).where(Job.run_id == row.id, Job.status == "queued")
            ).all():
                job.priority = row.priority
                s.add(job)
        store.record(
            s, "priority", "run" if isinstance(row, Run) else "job", row.id, priority=row.priority
        )
        return row.priority


def approve(
    store: Store,
    ref: str,
    select_refs: list[str] | None = None,
    *,
    edits: dict[str, str] | None = None,
) -> str:
    """Continue a run waiting in review with all, or the selected, outputs of its stage.

    `edits` maps an output (`a12`) to the prompt the next stage should use instead
    of the output's own: an enhanced prompt corrected by hand. The output's file is
    left as it was; the edit is recorded in the approve event and the next job's item.
    """
    with store.write() as s:
        run = get_row(s, ref)
        if not isinstance(run, Run):
            raise InputError(f"{ref} is not a run")
        if run.status != "review":
            raise InputError(f"run {ref} is {run.status}, not waiting in review")
        outputs = stage_outputs(s, run, run.stage_index)
        if select_refs:
            wanted = []
            for sel in select_refs:
                kind, ident = parse_ref(sel if sel[:1].isalpha() else f"a{sel}")
                match = [a for a in outputs if a.id == ident]
                if kind != "artifact" or not match:
                    raise InputError(f"{sel} is not an output of run {ref}'s current stage")
                wanted.extend(match)
            outputs = wanted
        prompts: dict[int, str] = {}
        for edit_ref, prompt in (edits or {}).items():
            kind, ident = parse_ref(edit_ref if edit_ref[:1].isalpha() else f"a{edit_ref}")
            if kind != "artifact" or ident not in {a.id for a in outputs}:
                raise InputError(f"{edit_ref} is not an approved output of run {ref}'s stage")
            prompts[ident] = prompt
        store.record(
            s,
            "run.approve",
            "run",
            run.id,
            selected=[a.id for a in outputs],
            edits={str(k): v for k, v in prompts.items()},
        )
        advance_run(s, store, run, outputs, prompts)
        return (
            f"run r{run.id} approved with {len(outputs)} output{'s' if len(outputs) != 1 else ''}"
        )
