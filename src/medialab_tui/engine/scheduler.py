"""The engine: an asyncio loop that feeds queued jobs to its pool of workers.

It owns one worker per slot (config `devices`: one per device of this host, or the
workers of a Dask cluster, `engine.pool`) and each slot runs one job at a time, all
slots at once. It is the only writer of a running job's progress and outcome.
Everyone else (CLI, TUIs) changes the queue through the store; the engine polls for
that every `POLL_S`. A job running when a host died goes back to
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
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlmodel import Session, col, select

from medialab_tui.config import Config, DataDir, current_user
from medialab_tui.engine import daemon, pool, queue, registry
from medialab_tui.engine.model_watch import ModelWatch
from medialab_tui.engine.queue import handoff
from medialab_tui.engine.stages import job_params
from medialab_tui.engine.worker.protocol import Extras, Item, ModelRef, RunCommand
from medialab_tui.engine.worker_client import WorkerDied, WorkerHandle
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
    """The job on a slot's worker now, with what the engine has heard of it."""

    job: Job
    # Who runs it: the slot's label, or the node a remote worker names in `started`.
    worker: str = ""
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


@dataclass
class Slot:
    """One worker of the pool and the job it runs (None: idle)."""

    worker: WorkerHandle
    started: bool = False
    running: Running | None = None
    task: asyncio.Task[None] | None = None
    loaded: list[str] = field(default_factory=list)  # model files its cache holds
    loads: int = 0  # models it has loaded (its `done` events say)
    failures: int = 0  # failed starts in a row, for the restart back-off
    idle_since: float = field(default_factory=time.monotonic)
    ends: deque[float] = field(default_factory=lambda: deque(maxlen=64))

    @property
    def label(self) -> str:
        return self.worker.label

    def view(self, index: int) -> pool.SlotView:
        now = time.monotonic()
        return pool.SlotView(
            index=index,
            loaded=tuple(self.loaded),
            idle_since=self.idle_since,
            recent=sum(1 for t in self.ends if now - t < pool.RECENT_S),
            alive=self.worker.alive,
        )

    def card(self) -> dict[str, Any]:
        """What the host card says of this worker (`doctor` shows it)."""
        info = self.worker.info
        return {
            "label": self.label,
            "device": info.get("device", ""),
            "pid": self.worker.pid,
            "busy": self.running is not None,
            "job": self.running.job.id if self.running is not None else None,
            "loaded": list(self.loaded),
            "loads": self.loads,
        }


class Engine:
    """Runs the queue of one data directory. Create it only while holding the host lock."""

    def __init__(
        self,
        data: DataDir,
        store: Store,
        config: Config,
        worker: WorkerHandle | None = None,
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
        # A worker may be started before the engine, so torch loads while the caller works:
        # it is the first slot. `run` adds the others of config `devices`.
        self.slots: list[Slot] = [Slot(worker, started=True)] if worker is not None else []
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        # Set whenever a job ends, so an in-process follower need not poll for it.
        self.changed = asyncio.Event()
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
        self.leave_reason = ""
        # What the store's change counter said at the last look at the queue.
        self._seen_changes: tuple[int, int] | None = None
        self._looked = 0.0
        self._woken = False
        # The signal that calls `wake` in this process, when its host installed one:
        # the card says so, and only then do clients send it.
        self.wake_signal: str | None = None

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
        self._make_slots()
        self._publish_host()
        announce: list[asyncio.Task[None]] = []
        try:
            for slot in self.slots:
                if not slot.started:
                    await self._start_worker(slot)
                announce.append(
                    asyncio.create_task(self._announce_worker(slot), name=f"announce-{slot.label}")
                )
            if self.models is not None:
                self.models.start()
            while not self._stop.is_set():
                self._reap_slots()
                if not self._store_moved():
                    await self._idle_wait()
                    continue
                await self._serve_asks()
                if self._time_to_leave():
                    if not self.busy:
                        break
                    await self._idle_wait()  # a stop waits for the running jobs
                    continue
                try:
                    if self._space_to_work():
                        self.sweep_runs()
                        if queue.queue_state(self.store) != "paused":
                            self._fill_slots()
                except Exception as exc:
                    if not is_disk_full(exc):
                        raise
                    self._out_of_space(exc)
                await self._idle_wait()
        finally:
            for task in announce:
                task.cancel()
            # Every slot hands its job back (a stop) or has ended it already.
            self._stop.set()
            await self._wait_slots()
            if self.models is not None:
                await asyncio.to_thread(self.models.stop)
            for slot in self.slots:
                if slot.started:
                    await slot.worker.shutdown()
            self._unpublish_host()

    async def _serve_asks(self) -> None:
        """Submit the pipelines that `medialab run` clients handed over (`daemon.ask_submit`);
        the queue is looked at right after, so a job of theirs starts at once."""
        if not self.store.settings(daemon.ASK_PREFIX):
            return
        for token, request in daemon.take_asks(self.store):
            reply = await asyncio.to_thread(handoff.submit_asked, self.store, self.data, request)
            daemon.put_reply(self.store, token, reply)

    @property
    def busy(self) -> int:
        """How many slots run a job now."""
        return sum(1 for slot in self.slots if slot.task is not None)

    def _make_slots(self) -> None:
        """The slots of config `devices` (or `cluster`); a worker given to the engine
        stays the first."""
        workers = pool.make_workers(self.config, self.data)
        given = len(self.slots)
        self.slots.extend(Slot(worker) for worker in workers[given:])
        labels = [slot.label for slot in self.slots]
        if len(set(labels)) != len(labels):
            raise ValueError(f"worker labels must be unique (got {labels})")

    def _reap_slots(self) -> None:
        """Free the slots whose job has ended; a bug in one ends the host, as before."""
        for slot in self.slots:
            if slot.task is not None and slot.task.done():
                task, slot.task = slot.task, None
                task.result()

    async def _wait_slots(self) -> None:
        tasks = [slot.task for slot in self.slots if slot.task is not None]
        for result in await asyncio.gather(*tasks, return_exceptions=True):
            if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                log.error("a worker slot ended with an error: %r", result)
        for slot in self.slots:
            slot.task = None

    async def _idle_wait(self) -> None:
        """Until the next poll, or until something wakes the engine (a wake that came
        since the last wait counts: the slots wake it when a job ends)."""
        try:
            await asyncio.wait_for(self._wake.wait(), POLL_S)
        except TimeoutError:
            pass
        self._wake.clear()

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
            "loaded": list(dict.fromkeys(p for slot in self.slots for p in slot.loaded)),
            "workers": [slot.card() for slot in self.slots],
            **({"wake": self.wake_signal} if self.wake_signal else {}),
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

    async def _start_worker(self, slot: Slot) -> None:
        slot.started = True
        await slot.worker.start()

    async def _ready_worker(self, slot: Slot) -> WorkerHandle:
        """The slot's worker once it has said `ready`, restarting it (with back-off) if
        it died. The other slots go on meanwhile."""
        worker = slot.worker
        while True:
            if not slot.started or not worker.alive:
                if slot.started:
                    await worker.kill()
                delay = RESTART_BACKOFF_S[min(slot.failures, len(RESTART_BACKOFF_S) - 1)]
                await asyncio.sleep(delay)
                slot.loaded = []
                await self._start_worker(slot)
            try:
                info = await worker.wait_ready()
            except WorkerDied as exc:
                slot.failures += 1
                log.error("worker %s failed to start: %s", slot.label, exc)
                if slot.failures >= len(RESTART_BACKOFF_S) + 2:
                    raise
                await worker.kill()
                continue
            slot.failures = 0
            self._publish_worker(slot, info)
            return worker

    async def _announce_worker(self, slot: Slot) -> None:
        """Say which device the worker uses as soon as it is up, not at the first job."""
        try:
            info = await slot.worker.wait_ready()
        except WorkerDied:
            return  # the first job restarts it and reports the failure
        self._publish_worker(slot, info)

    def _publish_worker(self, slot: Slot, info: dict[str, Any]) -> None:
        """The latest ready worker's `ready` line, with the pool's size (the header
        says `1/2 busy` from it), and the host card with every worker."""
        with self.store.write() as s:
            row = s.get(Setting, queue.WORKER_KEY) or Setting(key=queue.WORKER_KEY, value="")
            row.value = json.dumps({**info, "label": slot.label, "workers": len(self.slots)})
            s.add(row)
        self._publish_host()

    # -- the queue -----------------------------------------------------------------

    def _next_queued(self, s: Session) -> Job | None:
        """The job to start next: each active run's first queued job (highest priority,
        then oldest; one index seek per run), and of those `pool.pick_job`'s choice."""
        active = s.exec(select(Run.id).where(col(Run.status).in_(("pending", "running")))).all()
        candidates = []
        for run_id in active:
            first = s.exec(
                select(Job.id, Job.priority)
                .where(Job.status == "queued", Job.run_id == run_id)
                .order_by(col(Job.priority).desc(), col(Job.id))
                .limit(1)
            ).first()
            if first is not None and run_id is not None:
                candidates.append(pool.Candidate(int(first[0] or 0), run_id, first[1]))
        running = Counter(
            slot.running.job.run_id for slot in self.slots if slot.running is not None
        )
        chosen = pool.pick_job(candidates, running)
        return s.get(Job, chosen.job_id) if chosen is not None else None

    def claim_next(self) -> Job | None:
        """Mark the next queued job running: highest priority first; within a priority
        the run with the fewest running jobs, then the oldest job.

        A read first: an idle engine commits nothing, so the store's change counter
        stays still and the next look is skipped."""
        with self.store.read() as s:
            if self._next_queued(s) is None:
                return None
        with self.store.write() as s:
            job = self._next_queued(s)
            if job is None or job.status != "queued":
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

    def _resolved(self, job: Job) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """The model and extras `job`'s stage resolved to at submit (kept with the run)."""
        with self.store.read() as s:
            run = s.get(Run, job.run_id)
        document = run.pipeline if run is not None else {}
        index = job.stage_index
        models = document.get("models") or []
        extras = document.get("extras") or []
        return (
            models[index] if index < len(models) else None,
            extras[index] if index < len(extras) else None,
        )

    def _fill_slots(self) -> None:
        """Start queued jobs on the idle slots: each on a slot holding its model, else
        on the least loaded one (`pool.pick_slot`)."""
        idle = [i for i, slot in enumerate(self.slots) if slot.task is None]
        while idle:
            job = self.claim_next()
            if job is None:
                return
            model, _ = self._resolved(job)
            path = str(model.get("path", "")) if model else None
            index = pool.pick_slot([self.slots[i].view(i) for i in idle], path)
            assert index is not None
            idle.remove(index)
            slot = self.slots[index]
            slot.running = Running(job, worker=slot.label)
            slot.task = asyncio.create_task(self.execute(job, slot), name=f"job-j{job.id}")

    def _command(self, job: Job) -> RunCommand:
        """The worker's command for `job`: its typed parameters and item, and the model
        and extras its stage resolved to at submit (kept with the run)."""
        model, extra = self._resolved(job)
        index = job.stage_index
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

    async def execute(self, job: Job, slot: Slot | None = None) -> None:
        """Run one claimed job on a slot (the first if none is given) to its end:
        succeeded, failed, cancelled or back in the queue."""
        if slot is None:
            if not self.slots:
                self._make_slots()
            slot = self.slots[0]
        state = slot.running = slot.running or Running(job, worker=slot.label)
        try:
            try:
                worker = await self._ready_worker(slot)
            except WorkerDied as exc:
                error = f"the worker {slot.label} cannot start: {exc}"
                self._end_job(job, "failed", error=error, kind="internal")
                return
            self._record_worker(job, state.worker)
            self._publish_host()  # the host card says which worker runs what
            try:
                await worker.send(await self._with_hash(self._command(job)))
                await self._follow(worker, state)
            except WorkerDied as exc:
                log.warning("worker %s died during job j%s: %s", slot.label, job.id, exc)
                await worker.kill()
                self._crashed(job, str(exc))
        finally:
            slot.running = None
            slot.idle_since = time.monotonic()
            slot.ends.append(slot.idle_since)
            self._publish_host()
            self._idle_checked = 0.0  # the next look says at once whether the host idles
            self.wake()

    def _record_worker(self, job: Job, label: str) -> None:
        """Which worker runs the job (advisory, like progress: a full disk drops it)."""
        try:
            with self.store.write() as s:
                row = s.get(Job, job.id)
                if row is not None and row.worker != label:
                    row.worker = label
                    s.add(row)
        except Exception as exc:
            if not is_disk_full(exc):
                raise
            log.warning("disk full: the worker of j%s was not written", job.id)

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

    async def _follow(self, worker: WorkerHandle, state: Running) -> None:
        job = state.job
        last_poll = 0.0
        while True:
            message = await worker.next_event(POLL_S)
            now = time.monotonic()
            if message is not None:
                state.last_heard = now
                if self._handle(message, state, self._slot_of(state)):
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

    def _slot_of(self, state: Running) -> Slot | None:
        return next((slot for slot in self.slots if slot.running is state), None)

    def _handle(self, message: dict[str, Any], state: Running, slot: Slot | None = None) -> bool:
        """Apply one worker event; True when the job has ended."""
        event = message.get("event")
        job = state.job
        if message.get("job_id") not in (None, job.id):
            return False  # a late event of an earlier job
        if event == "started" and message.get("worker"):
            # A remote worker names the node and GPU that runs the job.
            state.worker = str(message["worker"])[:200]
            self._record_worker(job, state.worker)
        elif event == "progress":
            state.step, state.total = int(message["step"]), int(message["total"])
            if message.get("preview"):
                self._write_preview(job, message["preview"])
            if time.monotonic() - state.last_write >= PROGRESS_WRITE_S:
                self._write_progress(state)
        elif event == "artifact":
            state.artifacts.append(message)
        elif event == "done":
            if slot is not None:
                slot.loaded = [str(p) for p in message.get("loaded", [])]
                slot.loads = int(message.get("loads", slot.loads))
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
            row.worker = state.worker or row.worker
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
                    params={**meta, "worker": state.worker} if state.worker else meta,
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
