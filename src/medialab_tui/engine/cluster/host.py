"""The host side of the Dask path: `RemoteWorker`, one slot per GPU of the cluster.

A `RemoteWorker` looks to the engine like a local worker process (`WorkerHandle`):
`send` of a run command packs the command with the bytes of every input file it
reads and submits ONE Dask task (`resources={"GPU": 1}`, never pure, never retried by
us) that runs the job on a node's warm medialab worker (`node.run_job`). The node's
events come back on the slot's topic (`Client.subscribe_topic`: one per slot, so the
scheduler keeps a bounded log per slot, never one per job), a cancel goes out as a
scheduler `Event` the task waits on (its worker stops at the next step), and the
task's result holds
the outputs' bytes: the host writes each file atomically into the job's folder and
then says `artifact` and `done`, exactly as a local worker would.

A Dask worker that dies under a job surfaces as `WorkerDied` (its address leaves the
scheduler, or the task errs); the host then marks the job given up (the cancel event),
so a copy Dask reschedules ends at once instead of running the job twice.

All slots of one scheduler share one `distributed.Client`; medialab never listens on
anything: the client connects out to the scheduler, with Dask's own comm and TLS
config (`distributed.comm.tls.*`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from medialab_tui.config import DataDir
from medialab_tui.engine.cluster.node import PLUGIN_NAME, MedialabNode, describe_node, run_job
from medialab_tui.engine.worker.protocol import RunCommand
from medialab_tui.engine.worker_client import WorkerDied, next_from
from medialab_tui.store.files import atomic_write_bytes

CONNECT_TIMEOUT_S = 30.0
WATCH_S = 1.0  # how often a running job's node is looked for in the scheduler


class SharedClient:
    """One connection to a scheduler for every slot of this host's event loop."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.client: Any = None
        self._lock = asyncio.Lock()
        self._nodes: asyncio.Task[list[dict[str, Any]]] | None = None

    async def get(self) -> Any:
        from distributed import Client

        async with self._lock:
            if self.client is None or self.client.status not in ("running", "connecting"):
                try:
                    client = await Client(
                        self.address,
                        asynchronous=True,
                        timeout=CONNECT_TIMEOUT_S,
                        name="medialab-host",
                        set_as_default=False,
                    )
                    await client.register_plugin(MedialabNode(), name=PLUGIN_NAME)
                except Exception as exc:
                    raise WorkerDied(
                        f"the Dask scheduler {self.address} cannot be reached: {exc}"
                    ) from None
                self.client = client
                self._nodes = None
            return self.client

    async def nodes(self) -> list[dict[str, Any]]:
        """Every node's description, asked once per connection (it starts their workers)."""
        client = await self.get()
        if self._nodes is None or (self._nodes.done() and self._nodes.exception()):
            self._nodes = asyncio.ensure_future(_describe_all(client))
        return await asyncio.shield(self._nodes)

    async def workers(self) -> dict[str, Any]:
        client = await self.get()
        identity = await client.scheduler.identity(n_workers=-1)
        return dict(identity.get("workers", {}))

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()
            self.client = None


async def _describe_all(client: Any) -> list[dict[str, Any]]:
    found = await client.run(describe_node)
    return sorted(found.values(), key=lambda n: str(n["name"]))


_shared: dict[tuple[str, int], SharedClient] = {}


def shared_client(address: str) -> SharedClient:
    """The shared connection for `address` on the running event loop."""
    key = (address, id(asyncio.get_running_loop()))
    if key not in _shared:
        _shared[key] = SharedClient(address)
    return _shared[key]


def _model_shas(data: DataDir) -> dict[str, str]:
    """This host's model paths → sha256: a node finds a model's config folder and
    parts by their hashes."""
    from medialab_tui.engine import registry
    from medialab_tui.store.db import Store

    if not data.db_path.exists():
        return {}
    store = Store(data.db_path)
    try:
        return {m.path: m.sha256 for m in registry.list_models(store) if m.sha256}
    finally:
        store.dispose()


def pack(command: RunCommand, shas: dict[str, str], topic: str) -> dict[str, Any]:
    """The job as it travels: the command, the bytes of its input files (by host path)
    and the hashes of the model files it names. Model weights never travel."""
    paths = [*command.item.images, *command.item.videos]
    if command.extras.control is not None:
        paths.append(command.extras.control.image)
    files = {p: Path(p).read_bytes() for p in dict.fromkeys(paths) if Path(p).is_file()}
    token = uuid.uuid4().hex[:12]
    return {
        "command": command.model_dump(mode="json", exclude_none=True),
        "files": files,
        "shas": shas,
        "topic": topic,
        "cancel": f"medialab-cancel-{command.job_id}-{token}",
        "key": f"medialab-job-{command.job_id}-{token}",
    }


class RemoteWorker:
    """One GPU of a Dask cluster as an engine slot (see the module's docstring)."""

    def __init__(self, address: str, data: DataDir, label: str) -> None:
        self.address = address
        self.data = data
        self._label = label
        self.info: dict[str, Any] = {}
        self.last_heard = time.monotonic()
        self._alive = False
        self._events: asyncio.Queue[dict[str, Any] | WorkerDied] = asyncio.Queue()
        self._ready_task: asyncio.Task[dict[str, Any]] | None = None
        self._job: _RemoteJob | None = None
        self._shas: dict[str, str] | None = None
        self.topic = f"medialab-slot-{uuid.uuid4().hex[:12]}"
        self._listening: Any = None  # the client the slot's topic is subscribed on

    @property
    def label(self) -> str:
        return self._label

    @property
    def pid(self) -> int | None:
        return None

    @property
    def alive(self) -> bool:
        return self._alive

    async def start(self) -> None:
        """Connect (shared with the other slots) and ask the nodes what they are."""
        self._alive = True
        self.info = {}
        self.last_heard = time.monotonic()
        self._events = asyncio.Queue()
        self._ready_task = asyncio.create_task(self._read_ready(), name=f"ready-{self.label}")

    async def _read_ready(self) -> dict[str, Any]:
        shared = shared_client(self.address)
        try:
            nodes = await shared.nodes()
        except WorkerDied:
            self._alive = False
            raise
        except Exception as exc:
            self._alive = False
            raise WorkerDied(f"the Dask cluster {self.address} did not answer: {exc}") from None
        devices = sorted({str(n.get("device", "")) for n in nodes})
        self.info = {
            "event": "ready",
            "device": ",".join(devices) or "dask",
            "dtype": next((n.get("dtype", "") for n in nodes), ""),
            "torch": next((n.get("torch", "") for n in nodes), ""),
            "cluster": self.address,
            "nodes": nodes,
        }
        return self.info

    async def wait_ready(self) -> dict[str, Any]:
        assert self._ready_task is not None, "start() the worker first"
        return await asyncio.shield(self._ready_task)

    async def send(self, message: dict[str, Any] | BaseModel) -> None:
        if not self._alive:
            raise WorkerDied("the cluster slot is not running")
        if isinstance(message, RunCommand):
            await self._submit(message)
            return
        cmd = message.model_dump() if isinstance(message, BaseModel) else message
        if cmd.get("cmd") == "cancel" and self._job is not None:
            if cmd.get("job_id") in (None, self._job.job_id):
                await self._job.give_up()
        # `unload` and `shutdown` are the node's own business: its worker stays warm.

    async def _submit(self, command: RunCommand) -> None:
        shared = shared_client(self.address)
        client = await shared.get()
        if self._shas is None:
            self._shas = await asyncio.to_thread(_model_shas, self.data)
        if self._listening is not client:
            client.subscribe_topic(self.topic, self._heard)
            self._listening = client
        packed = await asyncio.to_thread(pack, command, self._shas, self.topic)
        job = _RemoteJob(self, shared, client, command, packed)
        self._job = job
        job.begin()

    def _heard(self, event: tuple[float, Any]) -> None:
        """A node's event on the slot's topic: the running job's, or a stale one."""
        job = self._job
        if job is not None and event[1].get("job_id") == job.job_id:
            job.heard(dict(event[1]))

    def _put(self, event: dict[str, Any] | WorkerDied) -> None:
        self._events.put_nowait(event)

    async def next_event(self, timeout: float) -> dict[str, Any] | None:
        """The next protocol event, or None after `timeout` seconds of silence."""
        return await next_from(self._events, timeout)

    async def kill(self) -> None:
        """Give up the running job (its node is told to stop) and close the slot."""
        self._alive = False
        if self._job is not None:
            await self._job.give_up(drop=True)
            self._job = None
        if self._ready_task is not None and not self._ready_task.done():
            self._ready_task.cancel()
            await asyncio.gather(self._ready_task, return_exceptions=True)
        if self._listening is not None:
            with contextlib.suppress(KeyError, ValueError):
                self._listening.unsubscribe_topic(self.topic)
            self._listening = None

    async def shutdown(self) -> None:
        await self.kill()


class _RemoteJob:
    """One submitted job: its future, its topic and its watcher."""

    def __init__(
        self,
        slot: RemoteWorker,
        shared: SharedClient,
        client: Any,
        command: RunCommand,
        packed: dict[str, Any],
    ) -> None:
        self.slot, self.shared, self.client = slot, shared, client
        self.command, self.packed = command, packed
        self.job_id = command.job_id
        self.node: str | None = None  # the Dask worker address the job started on
        self.started = False
        self.future: Any = None
        self.watcher: asyncio.Task[None] | None = None
        self.over = False
        self.cancel_set = False

    def begin(self) -> None:
        self.future = self.client.submit(
            run_job,
            self.packed,
            key=self.packed["key"],
            resources={"GPU": 1},
            pure=False,
            retries=0,
        )
        self.watcher = asyncio.create_task(self._watch(), name=f"remote-j{self.job_id}")

    def heard(self, message: dict[str, Any]) -> None:
        """A node's event for this job (`started`, `progress`, `heartbeat`)."""
        if self.over:
            return
        address = message.pop("worker", None)  # Dask adds the sender's address
        self.slot.last_heard = time.monotonic()
        if message.get("event") == "started":
            if self.started and address != self.node:
                return  # a rescheduled copy: it sees the cancel event and ends
            self.started, self.node = True, address
            message["worker"] = message.pop("node", "")
            self.slot._put(message)
        elif message.get("event") == "progress":
            self.slot._put(message)

    async def _watch(self) -> None:
        waiter = asyncio.ensure_future(self.future.result())
        try:
            while not waiter.done():
                await asyncio.wait({waiter}, timeout=WATCH_S)
                if waiter.done():
                    break
                if not self.started:
                    self.slot.last_heard = time.monotonic()  # queued at the scheduler
                elif self.node not in await self.shared.workers():
                    await self._died(f"the Dask worker {self.node} left the cluster")
                    return
            try:
                result = waiter.result()
            except Exception as exc:
                await self._died(f"the Dask task failed: {type(exc).__name__}: {exc}")
                return
            # Let go of the result at once: Dask would compute a held result again
            # when the node that keeps it leaves.
            self.future.release()
            await self._finish(result)
        except asyncio.CancelledError:
            waiter.cancel()
            raise
        except Exception as exc:  # the connection to the scheduler went
            await self._died(f"the Dask cluster was lost: {type(exc).__name__}: {exc}")
        finally:
            await self._clear_cancel()

    async def _finish(self, result: dict[str, Any]) -> None:
        final = dict(result["final"])
        if final.get("event") == "died":
            await self._died(str(final.get("message", "the node's worker died")))
            return
        if not self.started:
            self.slot._put({"event": "started", "job_id": self.job_id, "worker": result["worker"]})
        out = Path(self.command.out_dir)
        files: dict[str, bytes] = result.get("files", {})

        def write() -> None:
            for rel, data in files.items():
                target = (out / rel).resolve()
                if out.resolve() not in target.parents:
                    continue  # only inside the job's folder
                atomic_write_bytes(target, data)

        await asyncio.to_thread(write)
        for art in result.get("artifacts", []):
            self.slot._put({**art, "path": str(out / art["path"])})
        self.over = True
        self.slot._put(final)

    async def _died(self, why: str) -> None:
        await self.give_up()
        try:
            await self.client.cancel([self.future], force=True)
        except Exception:  # noqa: BLE001 - the scheduler is gone: nothing runs the job
            pass
        self.future.release()
        self.over = True
        self.slot._alive = False
        self.slot._put(WorkerDied(why))

    async def give_up(self, drop: bool = False) -> None:
        """Tell the node to stop the job (a cancel, or the host no longer wants it);
        `drop` also cancels the Dask task and stops following it."""
        try:
            self.cancel_set = True
            await self.client.scheduler.event_set(name=self.packed["cancel"])
        except Exception:  # noqa: BLE001 - the scheduler is gone: nothing runs the job
            pass
        if drop:
            self.over = True
            if self.watcher is not None and not self.watcher.done():
                self.watcher.cancel()
                await asyncio.gather(self.watcher, return_exceptions=True)
            try:
                await self.client.cancel([self.future], force=True)
            except Exception:  # noqa: BLE001 - the same
                pass
            self.future.release()
            await self._clear_cancel()

    async def _clear_cancel(self) -> None:
        """Drop the job's cancel event at the scheduler once the job is over (an event
        nobody waits on is deleted when cleared)."""
        if self.cancel_set and self.future is not None and self.future.done():
            self.cancel_set = False
            with contextlib.suppress(Exception):
                await self.client.scheduler.event_clear(name=self.packed["cancel"])
