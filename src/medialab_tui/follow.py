"""`medialab run`: follow a run to its end, hosting the engine when nobody else does.

The follower only reads the store, so it works the same whether the engine runs
in this process or in another one. If the host goes away mid-run, the follower
takes the host lock itself and carries on: no job is left behind.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from rich.markup import escape
from rich.text import Text

from medialab_tui.config import Config, DataDir
from medialab_tui.engine.host import HostLock
from medialab_tui.engine.worker_client import WorkerProcess
from medialab_tui.store.db import Store
from medialab_tui.store.tables import TERMINAL_RUN, Artifact, Job, Run
from medialab_tui.text import visible, visible_lines

FOLLOW_POLL_S = 0.5
TAKEOVER_CHECK_S = 1.0
# How long after a first Ctrl+C the run is cancelled, so that a second one can keep it.
CANCEL_GRACE_S = 2.0
EXIT_BY_STATUS = {"succeeded": 0, "review": 0, "failed": 1, "cancelled": 3}


class Display:
    """What the follower shows: rich progress bars, or JSON event lines."""

    def __init__(self, as_json: bool, out: TextIO = sys.stdout) -> None:
        self.as_json = as_json
        self.out = out
        self._progress: Any = None
        self._tasks: dict[int, Any] = {}

    def __enter__(self) -> Display:
        if not self.as_json:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(bar_width=20),
                MofNCompleteColumn(),
                TimeRemainingColumn(compact=True),
                TextColumn("{task.fields[status]}"),
            )
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def emit(self, event: dict[str, Any]) -> None:
        if self.as_json:
            self.out.write(json.dumps(event) + "\n")
            self.out.flush()

    def job(self, job: Job) -> None:
        self.emit(
            {
                "event": "job",
                "job_id": job.ref,
                "run_id": f"r{job.run_id}",
                "stage": job.stage,
                "status": job.status,
                "progress": round(job.progress, 4),
                "step": job.step,
                "total": job.total_steps,
                "attempts": job.attempts,
                "error": job.error,
            }
        )
        if self._progress is None:
            return
        # The prompt and the error are user text: shown, not obeyed, and never markup.
        prompt = str(job.item.get("prompt", ""))
        label = escape(visible(f"{job.ref} {job.stage:<8} {prompt[:24]}"))
        task = self._tasks.get(job.id or 0)
        total = job.total_steps or 1
        done = job.total_steps if job.status == "succeeded" else job.step
        status = escape(visible(job.status if not job.error else f"{job.status}: {job.error[:60]}"))
        if task is None:
            task = self._progress.add_task(label, total=total, completed=done, status=status)
            self._tasks[job.id or 0] = task
        else:
            self._progress.update(task, total=total, completed=done, status=status)

    def message(self, text: str) -> None:
        if self.as_json:
            return
        if self._progress is not None:
            self._progress.console.print(Text(visible_lines(text)))
        else:
            print(visible_lines(text), file=sys.stderr)


def _snapshot(store: Store, run_id: int) -> tuple[Run, list[Job], list[Artifact]]:
    from sqlmodel import col, select

    with store.read() as s:
        run = s.get(Run, run_id)
        assert run is not None
        jobs = list(s.exec(select(Job).where(Job.run_id == run_id).order_by(col(Job.id))).all())
        arts = list(
            s.exec(
                select(Artifact).where(Artifact.run_id == run_id).order_by(col(Artifact.id))
            ).all()
        )
    return run, jobs, arts


async def follow_run(
    data: DataDir,
    store: Store,
    config: Config,
    run_id: int,
    display: Display,
    lock: HostLock,
    worker: WorkerProcess | None,
    on_cancel: Callable[[], None],
) -> dict[str, Any]:
    """Show the run's progress until it ends (or waits in review); host when needed."""
    from medialab_tui.engine.scheduler import Engine

    engine: Engine | None = None
    engine_task: asyncio.Task[None] | None = None

    def host() -> None:
        nonlocal engine, engine_task
        engine = Engine(data, store, config, worker=worker, previews=False)
        engine_task = asyncio.create_task(engine.run(), name="engine")

    if lock.held:
        host()
    loop = asyncio.get_running_loop()
    interrupts = 0
    pending_cancel: asyncio.TimerHandle | None = None

    def on_sigint() -> None:
        # The first Ctrl+C cancels the run after a short grace; a second one within it
        # leaves the unfinished jobs queued for the next engine (nothing is cancelled).
        nonlocal interrupts, pending_cancel
        interrupts += 1
        if interrupts == 1:
            display.message(
                f"Cancelling the run in {CANCEL_GRACE_S:g} s "
                "(Ctrl+C again to leave it queued for the next engine)…"
            )
            pending_cancel = loop.call_later(CANCEL_GRACE_S, on_cancel)
            return
        if pending_cancel is not None and not pending_cancel.cancelled():
            pending_cancel.cancel()
            display.message("Leaving the run queued for the next engine.")
        if engine is not None:
            engine.request_stop()

    loop.add_signal_handler(signal.SIGINT, on_sigint)
    seen_jobs: dict[int, tuple[str, int, int]] = {}
    seen_artifacts: set[int] = set()
    last_takeover = time.monotonic()
    try:
        while True:
            run, jobs, arts = _snapshot(store, run_id)
            for job in jobs:
                key = (job.status, job.step, job.total_steps)
                if seen_jobs.get(job.id or 0) != key:
                    seen_jobs[job.id or 0] = key
                    display.job(job)
            for art in arts:
                if art.id not in seen_artifacts:
                    seen_artifacts.add(art.id or 0)
                    display.emit(
                        {
                            "event": "artifact",
                            "artifact_id": art.ref,
                            "job_id": f"j{art.job_id}",
                            "stage": art.stage,
                            "path": art.path,
                        }
                    )
            if run.status in TERMINAL_RUN or run.status == "review":
                break
            if engine_task is not None and engine_task.done():
                engine_task.result()  # surface an engine crash
                break
            if interrupts > 1:
                break
            now = time.monotonic()
            if engine is None and now - last_takeover >= TAKEOVER_CHECK_S:
                last_takeover = now
                if lock.try_acquire("run"):
                    display.message("The engine host went away; this process takes over.")
                    host()
            await _pause(engine)
    finally:
        loop.remove_signal_handler(signal.SIGINT)
        if pending_cancel is not None and interrupts > 1:
            pending_cancel.cancel()
        if engine is not None and engine_task is not None:
            engine.request_stop()
            await engine_task
    last_stage = max((j.stage_index for j in jobs), default=0)
    finals = [a.path for a in arts if _stage_of(a, jobs) == last_stage]
    summary = {
        "run_id": run.ref,
        "status": run.status,
        "artifacts": finals,
        "all_artifacts": [a.path for a in arts],
        "error": run.error,
    }
    return summary


async def _pause(engine: Any) -> None:
    """Until the next poll, or until the in-process engine says a job ended."""
    if engine is None:
        await asyncio.sleep(FOLLOW_POLL_S)
        return
    try:
        await asyncio.wait_for(engine.changed.wait(), FOLLOW_POLL_S)
    except TimeoutError:
        return
    engine.changed.clear()


def _stage_of(artifact: Artifact, jobs: list[Job]) -> int:
    for job in jobs:
        if job.id == artifact.job_id:
            return job.stage_index
    return -1
