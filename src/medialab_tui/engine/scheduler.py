"""The engine: an asyncio loop that feeds queued jobs to the worker, one at a time.

It owns the worker process and is the only writer of a running job's progress
and outcome. Everyone else (CLI, TUIs) changes the queue through the store; the
engine polls for that every `POLL_S`. A job running when a host died goes back to
the queue at the next start, unless it has taken down a worker or host
`max_attempts` times already: then it fails, so a poison job cannot crash-loop
the box. Only such crashes count as attempts: a job handed back by a stop, a
SIGTERM or a full disk starts again as if it had never started.

The engine leaves by itself after `keep_alive` idle seconds (an empty queue and no
TUI attached), or when `medialab stop` asks it to (see `engine.daemon`).
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlmodel import Session, col, select

from medialab_tui.config import Config, DataDir, current_user
from medialab_tui.engine import daemon, queue, registry
from medialab_tui.engine.model_watch import ModelWatch
from medialab_tui.engine.stages import job_params
from medialab_tui.engine.worker.protocol import Extras, Item, ModelRef, RunCommand
from medialab_tui.engine.worker_client import WorkerDied, WorkerProcess
from medialab_tui.store import backup
from medialab_tui.store.artifacts import artifact_dir
from medialab_tui.store.db import Store
from medialab_tui.store.files import free_bytes, is_disk_full
from medialab_tui.store.tables import Artifact, ArtifactParent, Job, Run, Setting, utcnow
from medialab_tui.text import human_seconds, human_size

log = logging.getLogger("medialab.engine")

POLL_S = 0.2  # how often the store is checked for requests from other processes
PROGRESS_WRITE_S = 0.5  # the most often a job's progress is written to the store
CANCEL_GRACE_S = 5.0  # a worker that does not acknowledge a cancel by then is killed
# A worker silent this long during a job (no event, no heartbeat: stopped, hung) is
# killed and restarted, and its job retried.
STALL_S = 20.0
RESTART_BACKOFF_S = (0.0, 1.0, 5.0, 15.0)
# Below this much free space in the data directory no new job starts; the queue
# waits (and says so in the log) until space is back.
MIN_FREE_BYTES = 16 * 1024 * 1024
SPACE_CHECK_S = 2.0
# How often an idle host looks whether its keep-alive is over.
IDLE_CHECK_S = 1.0
# An idle engine looks at the queue when the store changed, and at least this often.
LOOK_S = 5.0


@dataclass
class Running:
    """The job on the worker now, with what the engine has heard of it."""

    job: Job
    artifacts: list[dict[str, Any]] = field(default_factory=list)
    step: int = 0
    total: int = 0
    last_write: float = 0.0
    last_heard: float = field(default_factory=time.monotonic)
    cancel_sent_at: float | None = None
    cancelled_by_user: bool = False

    @property
    def outcome_if_stopped(self) -> str:
        """A job stopped by a user is cancelled; one stopped by a shutdown waits its turn."""
        return "cancelled" if self.cancelled_by_user else "queued"


class Engine:
    """Runs the queue of one data directory. Create it only while holding the host lock."""

    def __init__(
        self,
        data: DataDir,
        store: Store,
        config: Config,
        worker: WorkerProcess | None = None,
        *,
        previews: bool = True,
        watch_models: bool = True,
    ) -> None:
        self.data = data
        # The live registry: the roots watched and new models hashed, in threads.
        self.models = ModelWatch(data, store, config) if watch_models else None
        # Live previews cost the worker a little per step; only hosts with a UI want them.
        self.previews = previews
        self.store = store
        self.config = config
        # A worker may be started before the engine, so torch loads while the caller works.
        self.worker = worker
        self.running: Running | None = None
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        # Set whenever a job ends, so an in-process follower need not poll for it.
        self.changed = asyncio.Event()
        self._worker_failures = 0
        # Disk full: jobs whose end could not be written yet (retried when space is
        # back), and when free space was last checked.
        self._unwritten: list[Job] = []
        self._space_checked = 0.0
        self._space_ok = True
        # The host's card (`engine.daemon`): since when it idles, what its worker holds.
        self.pid = os.getpid()
        self._started = time.time()
        self._idle_since: float | None = None
        self._idle_checked = 0.0
        self._loaded: list[str] = []
        self.leave_reason = ""
        # What the store's change counter said at the last look at the queue.
        self._seen_changes: tuple[int, int] | None = None
        self._looked = 0.0
        self._woken = False

    # -- lifecycle -----------------------------------------------------------------

    def request_stop(self) -> None:
        """Stop after handing the running job back to the queue."""
        self._stop.set()
        self._wake.set()

    def wake(self) -> None:
        """Look at the queue now instead of at the next poll."""
        self._woken = True
        self._wake.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    async def run(self) -> None:
        """The engine's main loop, until `request_stop`, `medialab stop` or the keep-alive."""
        self.recover()
        daemon.clear_stop(self.store)  # a request for an earlier host is not for us
        self._publish_host()
        if self.worker is None:
            await self._start_worker()
        announce = asyncio.create_task(self._announce_worker(), name="announce-worker")
        try:
            if self.models is not None:
                self.models.start()
            while not self._stop.is_set():
                job = None
                if not self._store_moved():
                    await self._idle_wait()
                    continue
                if self._time_to_leave():
                    break
                try:
                    if self._space_to_work():
                        self.sweep_runs()
                        paused = queue.queue_state(self.store) == "paused"
                        job = None if paused else self.claim_next()
                except Exception as exc:
                    if not is_disk_full(exc):
                        raise
                    self._out_of_space(exc)
                if job is not None:
                    await self.execute(job)
                    continue
                await self._idle_wait()
        finally:
            announce.cancel()
            if self.models is not None:
                await asyncio.to_thread(self.models.stop)
            if self.worker is not None:
                await self.worker.shutdown()
                self.worker = None
            self._unpublish_host()

    async def _idle_wait(self) -> None:
        """Until the next poll, or until something wakes the engine."""
        self._wake.clear()
        try:
            await asyncio.wait_for(self._wake.wait(), POLL_S)
        except TimeoutError:
            pass

    def _store_moved(self) -> bool:
        """Whether the queue needs a look: somebody committed to the store since the
        last look (one pragma, no query), or LOOK_S has passed (the keep-alive and the
        disk space are checked at least that often), or the engine was woken."""
        changes = self.store.changes()
        now = time.monotonic()
        if changes == self._seen_changes and now - self._looked < LOOK_S and not self._woken:
            return False
        self._seen_changes, self._looked, self._woken = changes, now, False
        return True

    def recover(self) -> None:
        """At start: jobs left `running` by a dead host go back to the queue, or fail."""
        with self.store.write() as s:
            for job in s.exec(select(Job).where(Job.status == "running")).all():
                job.crashes += 1
                if job.crashes >= self.config.max_attempts:
                    self._fail_poison(job)
                else:
                    job.status, job.progress, job.step = "queued", 0.0, 0
                    job.cancel_requested = False
                s.add(job)
                self.store.record(s, "job.recover", "job", job.id, status=job.status)

    # -- leaving: `medialab stop` and the keep-alive ---------------------------------------

    def _time_to_leave(self) -> bool:
        """Between jobs: True when a stop was asked for, or the keep-alive is over."""
        request = daemon.stop_requested(self.store, self.pid)
        if request is not None:
            self.leave_reason = f"stopped by {request.by}"
            return True
        now = time.monotonic()
        if now - self._idle_checked < IDLE_CHECK_S:
            return False
        self._idle_checked = now
        if not self._queue_is_empty():
            self._set_idle(None)
            return False
        if self._idle_since is None:
            self._set_idle(time.time())
        idle = time.time() - (self._idle_since or time.time())
        keep_alive = self.config.keep_alive
        if idle < keep_alive or daemon.attached_clients(self.store):
            return False
        self.leave_reason = f"idle for {human_seconds(idle)} with no TUI attached"
        return True

    def _queue_is_empty(self) -> bool:
        """No job waits or runs in an active run (a paused queue with jobs is not empty)."""
        if self._unwritten:
            return False
        with self.store.read() as s:
            waiting = s.exec(
                select(Job.id)
                .join(Run, col(Run.id) == Job.run_id)
                .where(
                    col(Job.status).in_(("queued", "running")),
                    col(Run.status).in_(("pending", "running")),
                )
                .limit(1)
            ).first()
        return waiting is None

    def _set_idle(self, since: float | None) -> None:
        if (since is None) != (self._idle_since is None):
            self._idle_since = since
            self._publish_host()

    def _host_card(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "user": current_user(),
            "started_at": self._started,
            "keep_alive": self.config.keep_alive,
            "idle_since": self._idle_since,
            "loaded": self._loaded,
        }

    def _publish_host(self) -> None:
        """Advisory, like progress: a full disk drops it."""
        try:
            daemon.publish_host(self.store, self._host_card())
        except Exception as exc:
            if not is_disk_full(exc):
                raise
            log.warning("disk full: the host card was not written")

    def _unpublish_host(self) -> None:
        try:
            # The stop request stays: open TUIs read it as "stopped on purpose".
            daemon.forget_host(self.store, self.pid)
        except Exception as exc:
            if not is_disk_full(exc):
                raise

    def _fail_poison(self, job: Job) -> None:
        job.status, job.finished_at = "failed", utcnow()
        job.error_kind = "internal"
        job.error = (
            f"took the worker down {job.crashes} times (attempt limit {self.config.max_attempts}); "
            "not retried again"
        )

    # -- the worker ----------------------------------------------------------------

    async def _start_worker(self) -> None:
        self.worker = WorkerProcess(self.config, self.data.logs / "worker.log")
        await self.worker.start()

    async def _ready_worker(self) -> WorkerProcess:
        """A worker that has said `ready`, restarting it (with back-off) if it died."""
        while True:
            if self.worker is None or not self.worker.alive:
                if self.worker is not None:
                    await self.worker.kill()
                delay = RESTART_BACKOFF_S[min(self._worker_failures, len(RESTART_BACKOFF_S) - 1)]
                await asyncio.sleep(delay)
                await self._start_worker()
            assert self.worker is not None
            try:
                info = await self.worker.wait_ready()
            except WorkerDied as exc:
                self._worker_failures += 1
                log.error("worker failed to start: %s", exc)
                if self._worker_failures >= len(RESTART_BACKOFF_S) + 2:
                    raise
                await self.worker.kill()
                continue
            self._worker_failures = 0
            self._publish_worker(info)
            return self.worker

    async def _announce_worker(self) -> None:
        """Say which device the worker uses as soon as it is up, not at the first job."""
        if self.worker is None:
            return
        try:
            info = await self.worker.wait_ready()
        except WorkerDied:
            return  # the first job restarts it and reports the failure
        self._publish_worker(info)

    def _publish_worker(self, info: dict[str, Any]) -> None:
        with self.store.write() as s:
            row = s.get(Setting, queue.WORKER_KEY) or Setting(key=queue.WORKER_KEY, value="")
            row.value = json.dumps(info)
            s.add(row)

    # -- the queue -----------------------------------------------------------------

    def _next_queued(self, s: Session) -> Job | None:
        return s.exec(
            select(Job)
            .join(Run, col(Run.id) == Job.run_id)
            .where(Job.status == "queued", col(Run.status).in_(("pending", "running")))
            .order_by(col(Job.priority).desc(), col(Job.id))
            .limit(1)
        ).first()

    def claim_next(self) -> Job | None:
        """Mark the next queued job running: highest priority first, then oldest.

        A read first: an idle engine commits nothing, so the store's change counter
        stays still and the next look is skipped."""
        with self.store.read() as s:
            if self._next_queued(s) is None:
                return None
        with self.store.write() as s:
            job = self._next_queued(s)
            if job is None:
                return None
            job.status, job.started_at = "running", utcnow()
            job.attempts += 1
            job.progress, job.step, job.error, job.error_kind = 0.0, 0, "", ""
            s.add(job)
            run = s.get(Run, job.run_id)
            if run is not None and run.status == "pending":
                run.status, run.started_at = "running", utcnow()
                s.add(run)
            self.store.record(s, "job.start", "job", job.id, attempt=job.attempts)
        return job

    def sweep_runs(self) -> None:
        """Move on every active run whose current stage has no work left."""
        with self.store.read() as s:
            active = s.exec(
                select(Run.id).where(col(Run.status).in_(("pending", "running"))).limit(1)
            ).first()
        if active is None:
            return
        with self.store.write() as s:
            runs = s.exec(select(Run).where(col(Run.status).in_(("pending", "running")))).all()
            for run in runs:
                queue.finish_stage_if_done(s, self.store, run)

    def _finish_run_stage(self, s: Session, run_id: int) -> None:
        """Move the run on in the same transaction that ended its job, so that nobody
        ever reads a finished job under a run that still says it is running."""
        self.changed.set()
        s.flush()
        run = s.get(Run, run_id)
        if run is not None and run.status in ("pending", "running"):
            queue.finish_stage_if_done(s, self.store, run)

    # -- one job -------------------------------------------------------------------

    def _command(self, job: Job) -> RunCommand:
        """The worker's command for `job`: its typed parameters and item, and the model
        and extras its stage resolved to at submit (kept with the run)."""
        with self.store.read() as s:
            run = s.get(Run, job.run_id)
        document = run.pipeline if run is not None else {}
        index = job.stage_index
        models = document.get("models") or []
        extras = document.get("extras") or []
        model = models[index] if index < len(models) else None
        extra = extras[index] if index < len(extras) else None
        return RunCommand(
            job_id=job.id or 0,
            run_id=job.run_id,
            stage=job.stage,
            stage_index=index,
            params=job_params(job.stage, job.params).model_dump(exclude_none=True),
            model=ModelRef.model_validate(model) if model else None,
            extras=Extras.model_validate(extra or {}),
            item=Item.model_validate(job.item),
            out_dir=str(artifact_dir(self.data.artifacts, job.run_id, job.id or 0)),
            preview=self.previews,
        )

    async def execute(self, job: Job) -> None:
        """Run one claimed job to its end: succeeded, failed, cancelled or back in the queue."""
        try:
            worker = await self._ready_worker()
        except WorkerDied as exc:
            self._end_job(job, "failed", error=f"the worker cannot start: {exc}", kind="internal")
            return
        self.running = state = Running(job)
        try:
            await worker.send(await self._with_hash(self._command(job)))
            await self._follow(worker, state)
        except WorkerDied as exc:
            log.warning("worker died during job j%s: %s", job.id, exc)
            await worker.kill()
            self._crashed(job, str(exc))
        finally:
            self.running = None

    async def _with_hash(self, command: RunCommand) -> RunCommand:
        """The command with the sha256 of its model, LoRAs, ControlNet and detector,
        hashed now (off the loop) for those submitted before their background hash was
        done: outputs name the hashes of what made them."""
        extras = command.extras
        refs: list[ModelRef | None] = [
            command.model,
            *extras.loras,
            extras.control,
            extras.detector,
        ]
        wanted = [r.name for r in refs if r is not None and not r.sha256]
        if not wanted:
            return command
        hashes = await asyncio.to_thread(self._hashes_now, wanted)

        def hashed(ref: Any) -> Any:
            sha = hashes.get(ref.name) if ref is not None and not ref.sha256 else None
            return ref.model_copy(update={"sha256": sha}) if sha else ref

        return command.model_copy(
            update={
                "model": hashed(command.model),
                "extras": extras.model_copy(
                    update={
                        "loras": [hashed(lora) for lora in extras.loras],
                        "control": hashed(extras.control),
                        "detector": hashed(extras.detector),
                    }
                ),
            }
        )

    def _hashes_now(self, names: list[str]) -> dict[str, str]:
        return {name: registry.sha256_now(self.store, self.config, name) for name in names}

    async def _follow(self, worker: WorkerProcess, state: Running) -> None:
        job = state.job
        last_poll = 0.0
        while True:
            message = await worker.next_event(POLL_S)
            now = time.monotonic()
            if message is not None:
                state.last_heard = now
                if self._handle(message, state):
                    return
            if now - last_poll >= POLL_S:
                last_poll = now
                if state.cancel_sent_at is None and self._cancel_wanted(job):
                    state.cancelled_by_user = True
                if state.cancel_sent_at is None and self._stop_now_wanted():
                    self.request_stop()
                if state.cancel_sent_at is None and (
                    self._stop.is_set() or state.cancelled_by_user
                ):
                    state.cancel_sent_at = now
                    await worker.send({"cmd": "cancel", "job_id": job.id})
                    self._note(job, "job.cancel_sent", step=state.step)
                if state.cancel_sent_at is not None and now - state.cancel_sent_at > CANCEL_GRACE_S:
                    log.warning(
                        "worker ignored cancel of j%s for %.0f s: killing it",
                        job.id,
                        CANCEL_GRACE_S,
                    )
                    await worker.kill()
                    self._end_job(job, state.outcome_if_stopped)
                    return
                if now - max(state.last_heard, worker.last_heard) > STALL_S:
                    raise WorkerDied(f"the worker was silent for {STALL_S:.0f} s")
                if state.step and now - state.last_write >= PROGRESS_WRITE_S:
                    self._write_progress(state)

    def _stop_now_wanted(self) -> bool:
        request = daemon.stop_requested(self.store, self.pid)
        if request is None or not request.now:
            return False
        self.leave_reason = f"stopped at once by {request.by}"
        return True

    def _cancel_wanted(self, job: Job) -> bool:
        with self.store.read() as s:
            row = s.get(Job, job.id)
        return row is None or row.cancel_requested

    def _handle(self, message: dict[str, Any], state: Running) -> bool:
        """Apply one worker event; True when the job has ended."""
        event = message.get("event")
        job = state.job
        if message.get("job_id") not in (None, job.id):
            return False  # a late event of an earlier job
        if event == "progress":
            state.step, state.total = int(message["step"]), int(message["total"])
            if message.get("preview"):
                self._write_preview(job, message["preview"])
            if time.monotonic() - state.last_write >= PROGRESS_WRITE_S:
                self._write_progress(state)
        elif event == "artifact":
            state.artifacts.append(message)
        elif event == "done":
            loaded = [str(p) for p in message.get("loaded", [])]
            if loaded != self._loaded:
                self._loaded = loaded
                self._publish_host()
            self._succeed(state, message)
            backup.job_completed(self.store.path)
            return True
        elif event == "failed":
            self._end_job(
                job,
                "failed",
                error=message.get("message", ""),
                kind=message.get("kind", "internal"),
            )
            return True
        elif event == "cancelled":
            state.step = int(message.get("step", state.step))
            self._note(job, "job.stopped", step=state.step)
            self._end_job(job, state.outcome_if_stopped)
            return True
        return False

    def _note(self, job: Job, action: str, **details: Any) -> None:
        """An audit note; dropped (and logged) when the disk is full."""
        try:
            with self.store.write() as s:
                self.store.record(s, action, "job", job.id, **details)
        except Exception as exc:
            if not is_disk_full(exc):
                raise
            log.warning("disk full: the note %s of j%s was not written", action, job.id)

    def _write_progress(self, state: Running) -> None:
        """Progress is advisory: when the disk is full it is dropped, never fatal."""
        state.last_write = time.monotonic()
        try:
            with self.store.write() as s:
                row = s.get(Job, state.job.id)
                if row is None:
                    return
                row.step, row.total_steps = state.step, state.total
                row.progress = state.step / state.total if state.total else 0.0
                s.add(row)
        except Exception as exc:
            if not is_disk_full(exc):
                raise
            log.warning("disk full: progress of j%s not written", state.job.id)

    # -- a full disk -------------------------------------------------------------------

    def _space_sentence(self) -> str:
        return f"{human_size(free_bytes(self.data.root))} free in {self.data.root}"

    def _space_to_work(self) -> bool:
        """False while the data directory is (nearly) full: nothing new starts. When
        space is back, the job ends that could not be written are written first."""
        now = time.monotonic()
        if now - self._space_checked < SPACE_CHECK_S and (self._space_ok or not self._unwritten):
            return self._space_ok
        self._space_checked = now
        free = free_bytes(self.data.root)
        was_ok, self._space_ok = self._space_ok, free >= MIN_FREE_BYTES
        if not self._space_ok:
            if was_ok:
                log.warning("waiting for disk space: %s", self._space_sentence())
            return False
        while self._unwritten:
            self._requeue_for_space(self._unwritten[0])
            self._unwritten.pop(0)
        if not was_ok:
            log.info("disk space is back (%s): the queue goes on", self._space_sentence())
        return True

    def _out_of_space(self, exc: BaseException, job: Job | None = None) -> None:
        """The store or a file could not be written for lack of space: the job (if any)
        goes back to the queue with its files removed, and nothing new starts until
        there is space again. The host stays up."""
        log.warning("disk full (%s): %s", self._space_sentence(), exc)
        self._space_ok = False
        self._space_checked = time.monotonic()
        if job is not None:
            self._discard_outputs(job)
            try:
                self._requeue_for_space(job)
            except Exception as again:
                if not is_disk_full(again):
                    raise
                self._unwritten.append(job)

    def _requeue_for_space(self, job: Job) -> None:
        """Back to `queued`, the attempt not counted: the job did nothing wrong."""
        with self.store.write() as s:
            row = s.get(Job, job.id)
            if row is None or row.status in ("succeeded", "failed", "cancelled"):
                return
            row.status, row.progress, row.step = "queued", 0.0, 0
            row.attempts = max(0, row.attempts - 1)
            row.cancel_requested = False
            row.error = f"waited for disk space ({self._space_sentence()})"
            s.add(row)
            self.store.record(s, "job.requeue", "job", row.id, reason="disk full")

    def _discard_outputs(self, job: Job) -> None:
        """Remove what a job that did not succeed wrote: nothing there is indexed (a
        job's files are indexed only when it succeeds), so nothing is left unindexed."""
        folder = artifact_dir(self.data.artifacts, job.run_id, job.id or 0)
        shutil.rmtree(folder, ignore_errors=True)

    def _write_preview(self, job: Job, b64: str) -> None:
        import base64

        from medialab_tui.store.artifacts import atomic_write_bytes

        path = self.data.root / "cache" / "previews" / f"j{job.id}.png"
        try:
            atomic_write_bytes(path, base64.b64decode(b64))
        except (OSError, ValueError):
            log.debug("could not write the preview of j%s", job.id)

    def _succeed(self, state: Running, message: dict[str, Any]) -> None:
        try:
            self._index_outputs(state, message)
        except Exception as exc:
            if not is_disk_full(exc):
                raise
            self._out_of_space(exc, state.job)

    def _index_outputs(self, state: Running, message: dict[str, Any]) -> None:
        job = state.job
        with self.store.write() as s:
            row = s.get(Job, job.id)
            assert row is not None
            row.status, row.finished_at = "succeeded", utcnow()
            row.progress, row.step = 1.0, state.total or row.step
            row.run_seconds = float(message.get("run_seconds", 0.0))
            row.load_seconds = float(message.get("load_seconds", 0.0))
            s.add(row)
            for art in state.artifacts:
                meta = art.get("meta", {})
                artifact = Artifact(
                    run_id=row.run_id,
                    job_id=row.id,  # type: ignore[arg-type]
                    stage=row.stage,
                    kind=art.get("kind", "image"),
                    path=art["path"],
                    name=art.get("name", Path(art["path"]).stem),
                    prompt=meta.get("prompt", ""),
                    seed=meta.get("seed"),
                    model=meta.get("model", ""),
                    width=int(art.get("width", 0)),
                    height=int(art.get("height", 0)),
                    params=meta,
                )
                s.add(artifact)
                s.flush()
                for parent in row.item.get("parents", []):
                    s.add(ArtifactParent(artifact_id=artifact.id, parent_id=parent))  # type: ignore[arg-type]
            self.store.record(
                s,
                "job.succeeded",
                "job",
                row.id,
                artifacts=len(state.artifacts),
                seconds=row.run_seconds,
            )
            self._finish_run_stage(s, job.run_id)

    def _end_job(self, job: Job, status: str, *, error: str = "", kind: str = "") -> None:
        if status != "succeeded":
            self._discard_outputs(job)
        if kind == "disk_full":
            error = f"no space left on the disk: {self._space_sentence()}"
            self._space_ok = False
            self._space_checked = time.monotonic()
        try:
            self._write_end(job, status, error=error, kind=kind)
        except Exception as exc:
            if not is_disk_full(exc):
                raise
            self._out_of_space(exc, job)

    def _write_end(self, job: Job, status: str, *, error: str, kind: str) -> None:
        with self.store.write() as s:
            row = s.get(Job, job.id)
            assert row is not None
            row.status, row.error, row.error_kind = status, error, kind
            row.cancel_requested = False
            row.finished_at = utcnow() if status != "queued" else None
            if status == "queued":
                # Handed back by a stop: the job did nothing wrong, so no attempt counts.
                row.progress, row.step = 0.0, 0
                row.attempts = max(0, row.attempts - 1)
            s.add(row)
            self.store.record(
                s,
                f"job.{'requeue' if status == 'queued' else status}",
                "job",
                row.id,
                error=error,
                kind=kind,
            )
            if status != "queued":
                self._finish_run_stage(s, job.run_id)

    def _crashed(self, job: Job, reason: str) -> None:
        """The worker died under this job: retry it, unless it keeps doing that. A
        worker that died on a full disk (it cannot even write its log) is no fault of
        the job's: it waits for space without an attempt counted."""
        self._discard_outputs(job)
        if free_bytes(self.data.root) < MIN_FREE_BYTES:
            self._out_of_space(OSError(errno.ENOSPC, f"the worker died ({reason})"), job)
            return
        try:
            self._write_crash(job, reason)
        except Exception as exc:
            if not is_disk_full(exc):
                raise
            self._out_of_space(exc, job)

    def _write_crash(self, job: Job, reason: str) -> None:
        with self.store.write() as s:
            row = s.get(Job, job.id)
            assert row is not None
            row.crashes += 1
            if row.cancel_requested:
                row.status, row.finished_at, row.cancel_requested = "cancelled", utcnow(), False
            elif row.crashes >= self.config.max_attempts:
                self._fail_poison(row)
            else:
                row.status, row.progress, row.step = "queued", 0.0, 0
                row.error = f"worker crashed ({reason}); retrying"
            s.add(row)
            self.store.record(
                s, "job.crash", "job", row.id, reason=reason, crashes=row.crashes, status=row.status
            )
            self._finish_run_stage(s, job.run_id)
