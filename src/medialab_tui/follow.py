"""`medialab run`: follow a run to its end while the engine host does the work.

The follower only reads the store. If the host goes away mid-run, the follower
starts a new one and carries on: no job is left behind.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TextIO

from rich.markup import escape
from rich.text import Text

from medialab_tui.config import DataDir
from medialab_tui.store.db import Store
from medialab_tui.store.queries import run_snapshot
from medialab_tui.store.values import TERMINAL_RUN
from medialab_tui.store.views import ArtifactView, JobView
from medialab_tui.text import visible, visible_lines

# The run is read again at least this often, and as soon as the store changes
# (looked at every CHANGE_POLL_S: one cheap pragma, no query).
FOLLOW_POLL_S = 1.0
CHANGE_POLL_S = 0.02
HOST_CHECK_S = 1.0
# How long after a first Ctrl+C the run is cancelled, so that a second one can keep it.
CANCEL_GRACE_S = 2.0
# A cancelled run is followed until its running jobs have stopped (the engine stops them
# at their next step, or kills a worker that ignores the cancel after five seconds), so
# that `run` returns when the device is free; past this it returns anyway and says so.
CANCEL_SETTLE_S = 30.0
EXIT_BY_STATUS = {"succeeded": 0, "review": 0, "failed": 1, "cancelled": 3}


class Display:
    """What the follower shows: rich progress bars, or JSON event lines."""

    def __init__(self, as_json: bool, out: TextIO | None = None) -> None:
        self.as_json = as_json
        self.out = out or sys.stdout  # the stdout of now, not of when this was imported
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

    def job(self, job: JobView) -> None:
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
        prompt = job.prompt
        label = escape(visible(f"{job.ref} {job.stage:<8} {prompt[:24]}"))
        task = self._tasks.get(job.id)
        total = job.total_steps or 1
        done = job.total_steps if job.status == "succeeded" else job.step
        status = escape(visible(job.status if not job.error else f"{job.status}: {job.error[:60]}"))
        if task is None:
            task = self._progress.add_task(label, total=total, completed=done, status=status)
            self._tasks[job.id] = task
        else:
            self._progress.update(task, total=total, completed=done, status=status)

    def message(self, text: str) -> None:
        if self.as_json:
            return
        if self._progress is not None:
            self._progress.console.print(Text(visible_lines(text)))
        else:
            print(visible_lines(text), file=sys.stderr)


async def follow_run(
    data: DataDir,
    store: Store,
    run_id: int,
    display: Display,
    on_cancel: Callable[[], None],
) -> dict[str, Any]:
    """Show the run's progress until it ends (or waits in review).

    The engine host does the work; this only reads the store. If the host goes away
    mid-run (stopped, crashed), a new one is started so that no job is left behind.
    """
    from medialab_tui.hosting import current_host, ensure_host

    loop = asyncio.get_running_loop()
    interrupts = 0
    pending_cancel: asyncio.TimerHandle | None = None

    def on_sigint() -> None:
        # The first Ctrl+C cancels the run after a short grace; a second one within it
        # stops following and leaves the run to the engine (nothing is cancelled).
        nonlocal interrupts, pending_cancel
        interrupts += 1
        if interrupts == 1:
            display.message(
                f"Cancelling the run in {CANCEL_GRACE_S:g} s "
                "(Ctrl+C again to leave it running in the engine)…"
            )
            pending_cancel = loop.call_later(CANCEL_GRACE_S, on_cancel)
            return
        if pending_cancel is not None and not pending_cancel.cancelled():
            pending_cancel.cancel()
        display.message(
            f"Leaving the run to the engine: `medialab show r{run_id}` tells how it goes."
        )

    # Ctrl+C reaches only the main thread; a follower on another one has no keys to read.
    on_keys = threading.current_thread() is threading.main_thread()
    if on_keys:
        loop.add_signal_handler(signal.SIGINT, on_sigint)
    seen_jobs: dict[int, tuple[str, int, int]] = {}
    seen_artifacts: set[int] = set()
    last_host_check = time.monotonic()
    settle_since: float | None = None
    try:
        while True:
            seen = store.changes()
            run, jobs, arts = run_snapshot(store, run_id)
            for job in jobs:
                key = (job.status, job.step, job.total_steps)
                if seen_jobs.get(job.id) != key:
                    seen_jobs[job.id] = key
                    display.job(job)
            for art in arts:
                if art.id not in seen_artifacts:
                    seen_artifacts.add(art.id)
                    display.emit(
                        {
                            "event": "artifact",
                            "artifact_id": art.ref,
                            "job_id": f"j{art.job_id}",
                            "stage": art.stage,
                            "path": art.path,
                        }
                    )
            if interrupts > 1 or run.status == "review":
                break
            if run.status in TERMINAL_RUN:
                if not any(j.status == "running" for j in jobs):
                    break
                if settle_since is None:
                    settle_since = time.monotonic()
                    display.message("Waiting for the running job to stop…")
                elif time.monotonic() - settle_since > CANCEL_SETTLE_S:
                    display.message(
                        f"The run is {run.status}; its running job is still stopping "
                        "in the engine host."
                    )
                    break
            now = time.monotonic()
            if now - last_host_check >= HOST_CHECK_S:
                last_host_check = now
                if current_host(data) is None:
                    display.message("The engine host went away; starting a new one.")
                    await asyncio.to_thread(ensure_host, data)
            await _until_changed(store, seen, FOLLOW_POLL_S, lambda: interrupts > 1)
    finally:
        if on_keys:
            loop.remove_signal_handler(signal.SIGINT)
        if pending_cancel is not None and interrupts > 1:
            pending_cancel.cancel()
    last_stage = max((j.stage_index for j in jobs), default=0)
    finals = [a.path for a in arts if _stage_of(a, jobs) == last_stage]
    summary = {
        "run_id": run.ref,
        "status": run.status,
        "artifacts": finals,
        "all_artifacts": [a.path for a in arts],
        "error": run.error,
        "detached": interrupts > 1,
    }
    return summary


async def _until_changed(
    store: Store, seen: tuple[int, int], timeout: float, stop: Callable[[], bool]
) -> None:
    """Until the store's change counter differs from `seen` (somebody committed; one
    pragma per look, no query), `stop()` holds, or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not stop() and store.changes() == seen:
        await asyncio.sleep(CHANGE_POLL_S)


def _stage_of(artifact: ArtifactView, jobs: list[JobView]) -> int:
    for job in jobs:
        if job.id == artifact.job_id:
            return job.stage_index
    return -1
