"""The node side of the Dask path: what runs inside each Dask worker process.

`MedialabNode` is a Dask worker plugin (the host registers it at connect): it owns one
medialab worker subprocess for its Dask worker, the same JSON-lines worker a host
runs, started at the first job and kept warm (its model cache with it) until the
plugin is torn down. `run_job` is the Dask task of one job: it writes the job's
input bytes into a scratch folder, resolves every model by sha256 in this node's own
model roots, runs the command on the warm worker, streams its events back on the
job's topic (`Worker.log_event`), and returns the output files' bytes. The host
writes them: nodes need no shared disk and never touch the host's store.

A node's medialab data directory is its own (`MEDIALAB_HOME`, else the default):
its config and its model roots, its registry and its logs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import socket
import time
import uuid
from pathlib import Path
from typing import Any

from distributed import WorkerPlugin, get_worker

from medialab_tui.config import Config, DataDir, default_data_dir, load_config, open_data_dir
from medialab_tui.engine.worker_client import WorkerDied, WorkerProcess
from medialab_tui.store.files import atomic_write_bytes

PLUGIN_NAME = "medialab"
# A job waits at the scheduler for its cancel event in turns this long (a finished job
# ends its waiter at once; this bounds one whose node lost the scheduler).
CANCEL_WAIT_S = 30.0
BEAT_S = 2.0  # the heartbeat a running job sends the host
# The local worker is taken for hung when silent this long; the host then stops hearing.
SILENT_S = 10.0


def node_name(worker: Any) -> str:
    """This Dask worker as people read it: the host's name and the worker's name (its
    address without the scheme when it was given none)."""
    name = str(worker.name).split("://", 1)[-1]
    return f"{socket.gethostname()}/{name}"


class MedialabNode(WorkerPlugin):
    """One warm medialab worker per Dask worker (see the module's docstring)."""

    name = PLUGIN_NAME
    idempotent = True

    async def setup(self, worker: Any) -> None:
        # A nanny starts its worker with glibc told to hand freed memory back at once
        # (`distributed.nanny.pre-spawn-environ`); torch frees and takes large blocks
        # every step, so the medialab worker would run far slower with it.
        os.environ.pop("MALLOC_TRIM_THRESHOLD_", None)
        self.dask_worker = worker
        self.proc: WorkerProcess | None = None
        self.ready: dict[str, Any] = {}
        self.loaded: list[str] = []
        self.lock = asyncio.Lock()
        self.index: dict[str, str] = {}
        self.data: DataDir | None = None
        self.config: Config | None = None
        self.waits: set[asyncio.Task[Any]] = set()

    async def teardown(self, worker: Any) -> None:
        for wait in self.waits:
            wait.cancel()
        await asyncio.gather(*self.waits, return_exceptions=True)
        if self.proc is not None:
            await self.proc.shutdown()

    # -- the warm worker ---------------------------------------------------------------

    def _open(self) -> tuple[DataDir, Config]:
        if self.data is None or self.config is None:
            self.data = open_data_dir(default_data_dir())
            self.config = load_config(self.data)
        return self.data, self.config

    async def worker(self) -> WorkerProcess:
        """The node's medialab worker, started (or restarted after a crash) and ready."""
        async with self.lock:
            if self.proc is None or not self.proc.alive:
                if self.proc is not None:
                    await self.proc.kill()
                data, config = await asyncio.to_thread(self._open)
                name = "".join(
                    c if c.isalnum() or c in "-_." else "-" for c in str(self.dask_worker.name)
                )
                self.proc = WorkerProcess(
                    dataclasses.replace(config, cluster=""),
                    data.logs / f"worker-dask-{name}.log",
                    label=node_name(self.dask_worker),
                )
                await self.proc.start()
            self.ready = await self.proc.wait_ready()
            return self.proc

    async def describe(self) -> dict[str, Any]:
        """This node for the host's `ready` and `doctor`: names, device, resources."""
        await self.worker()
        ready = self.ready
        return {
            "name": node_name(self.dask_worker),
            "address": self.dask_worker.address,
            "resources": dict(self.dask_worker.state.total_resources),
            "device": ready.get("device", ""),
            "dtype": ready.get("dtype", ""),
            "torch": ready.get("torch", ""),
            "loaded": list(self.loaded),
        }

    # -- models by hash ---------------------------------------------------------------

    def _scan_index(self) -> dict[str, str]:
        """sha256 → this node's path of every model in its roots (scanned and hashed
        now: a node's registry is its own)."""
        from medialab_tui.engine import registry
        from medialab_tui.store.db import Store

        data, config = self._open()
        store = Store(data.db_path)
        try:
            registry.scan(store, data, config)
            registry.hash_pending(store, config)
            return {m.sha256: m.path for m in registry.list_models(store) if m.sha256}
        finally:
            store.dispose()

    async def model_path(self, sha: str) -> str | None:
        """The node's path of the model with this sha256 (rescanned once on a miss)."""
        if sha not in self.index:
            self.index = await asyncio.to_thread(self._scan_index)
        return self.index.get(sha)

    # -- one job ------------------------------------------------------------------------

    async def run(self, packed: dict[str, Any]) -> dict[str, Any]:
        """Run one packed job (see `host.pack`) to its end; the result the host reads."""
        worker = self.dask_worker
        name = node_name(worker)
        topic, cancel = packed["topic"], packed["cancel"]
        command = dict(packed["command"])
        job_id = command["job_id"]

        def tell(event: dict[str, Any]) -> None:
            # Dask adds this Dask worker's address to the event as `worker`.
            worker.log_event(topic, event)

        over = asyncio.Event()
        stop = asyncio.ensure_future(self._wait_cancel(cancel, over))
        self.waits.add(stop)
        stop.add_done_callback(self._forget)
        scratch = self._open()[0].root / "cluster" / uuid.uuid4().hex
        try:
            missing = await self._localize(command, packed, scratch)
            if _told_to_stop(stop):
                # The host gave this job up (a copy Dask rescheduled after a node died).
                cancelled = {"event": "cancelled", "job_id": job_id, "step": 0}
                return {"final": cancelled, "worker": name}
            if missing:
                return {
                    "final": {
                        "event": "failed",
                        "job_id": job_id,
                        "kind": "missing_model",
                        "message": f"{missing} is not in the model roots of node {name}",
                    },
                    "worker": name,
                }
            try:
                proc = await self.worker()
                await proc.send(command)
                stop.add_done_callback(lambda done: self._pass_cancel(done, over, proc, job_id))
                final, artifacts = await self._follow(proc, job_id, tell, name)
            except WorkerDied as exc:
                return {"final": {"event": "died", "message": f"on {name}: {exc}"}, "worker": name}
            if final.get("event") == "done":
                self.loaded = [str(p) for p in final.get("loaded", [])]
            out = scratch / "out"
            files = {
                str(p.relative_to(out)): p.read_bytes()
                for p in sorted(out.rglob("*"))
                if p.is_file()
            }
            rel = [str(Path(a["path"]).relative_to(out)) for a in artifacts]
            for art, path in zip(artifacts, rel, strict=True):
                art["path"] = path
            return {"final": final, "artifacts": artifacts, "files": files, "worker": name}
        finally:
            over.set()
            end = asyncio.ensure_future(self._end_wait(cancel, stop))
            self.waits.add(end)
            end.add_done_callback(self._forget)
            await asyncio.to_thread(shutil.rmtree, scratch, True)

    async def _wait_cancel(self, name: str, over: asyncio.Event) -> bool:
        """True as soon as the host sets the job's cancel event (the scheduler answers a
        waiter the moment it is set); False once the job is over without one."""
        scheduler = self.dask_worker.scheduler
        while not over.is_set():
            if await scheduler.event_wait(name=name, timeout=CANCEL_WAIT_S):
                return True
        return False

    async def _end_wait(self, name: str, stop: asyncio.Task[bool]) -> None:
        """The job is over: end its waiter at the scheduler now (set, then clear: the
        scheduler deletes an event nobody waits on), so nothing of it is left there."""
        scheduler = self.dask_worker.scheduler
        if not stop.done():
            await scheduler.event_set(name=name)
            await stop
        await scheduler.event_clear(name=name)

    def _forget(self, stop: asyncio.Task[Any]) -> None:
        self.waits.discard(stop)
        if not stop.cancelled():
            stop.exception()  # a lost scheduler: the job's own end says what happened

    def _pass_cancel(
        self, stop: asyncio.Task[bool], over: asyncio.Event, proc: WorkerProcess, job_id: int
    ) -> None:
        """The host's cancel, passed on to the worker at once (it stops at its next step)."""
        if not over.is_set() and _told_to_stop(stop) and proc.alive:
            send = asyncio.ensure_future(proc.send({"cmd": "cancel", "job_id": job_id}))
            send.add_done_callback(lambda done: done.cancelled() or done.exception())

    async def _localize(
        self, command: dict[str, Any], packed: dict[str, Any], scratch: Path
    ) -> str:
        """Point the command at this node: its inputs written under `scratch`, its
        models at this node's copies. Returns what is missing here ("" when none)."""
        inputs = scratch / "in"
        written: dict[str, str] = {}

        def place(path: str) -> str:
            if path not in written:
                target = inputs / f"{len(written)}-{Path(path).name}"
                atomic_write_bytes(target, packed["files"][path])
                written[path] = str(target)
            return written[path]

        def write_inputs() -> None:
            inputs.mkdir(parents=True, exist_ok=True)
            (scratch / "out").mkdir(parents=True, exist_ok=True)
            item = dict(command["item"])
            item["images"] = [place(p) for p in item.get("images", [])]
            item["videos"] = [place(p) for p in item.get("videos", [])]
            command["item"] = item
            control = (command.get("extras") or {}).get("control")
            if control and control.get("image") in packed["files"]:
                command["extras"]["control"] = {**control, "image": place(control["image"])}

        await asyncio.to_thread(write_inputs)
        command["out_dir"] = str(scratch / "out")
        extras = dict(command.get("extras") or {})
        command["extras"] = extras
        shas: dict[str, str] = packed.get("shas", {})
        refs: list[dict[str, Any]] = []
        if command.get("model"):
            command["model"] = dict(command["model"])
            refs.append(command["model"])
        extras["loras"] = [dict(lora) for lora in extras.get("loras", [])]
        refs.extend(extras["loras"])
        for key in ("control", "detector"):
            if extras.get(key):
                extras[key] = dict(extras[key])
                refs.append(extras[key])
        for ref in refs:
            sha = ref.get("sha256") or shas.get(ref["path"], "")
            found = await self.model_path(sha) if sha else None
            if found is None:
                return f"model {ref.get('name', '?')} (sha256 {sha[:10] or 'unknown'})"
            ref["path"] = found
            if ref.get("config_dir"):
                config_dir = await self.model_path(shas.get(ref["config_dir"], ""))
                if config_dir is None:
                    return f"the config folder of model {ref.get('name', '?')}"
                ref["config_dir"] = config_dir
            if ref.get("parts"):
                parts = {}
                for part, path in ref["parts"].items():
                    here = await self.model_path(shas.get(path, ""))
                    if here is None:
                        return f"the {part} of model {ref.get('name', '?')}"
                    parts[part] = here
                ref["parts"] = parts
        return ""

    async def _follow(
        self, proc: WorkerProcess, job_id: int, tell: Any, name: str
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Forward the job's events until it ends, with a heartbeat while it is heard."""
        artifacts: list[dict[str, Any]] = []
        last_beat = 0.0
        try:
            while True:
                event = await proc.next_event(BEAT_S)
                now = time.monotonic()
                if event is not None and event.get("job_id") in (None, job_id):
                    kind = event.get("event")
                    if kind == "started":
                        tell({**event, "node": name})
                    elif kind == "progress":
                        tell(event)
                    elif kind == "artifact":
                        artifacts.append(event)
                    elif kind in ("done", "failed", "cancelled"):
                        return event, artifacts
                if now - last_beat >= BEAT_S and now - proc.last_heard < SILENT_S:
                    last_beat = now
                    tell({"event": "heartbeat", "job_id": job_id})
        except asyncio.CancelledError:
            # Dask dropped the task (the host gave it up): stop the job on the worker.
            if proc.alive:
                await proc.send({"cmd": "cancel", "job_id": job_id})
            raise


def _told_to_stop(stop: asyncio.Task[bool]) -> bool:
    """Whether the job's cancel waiter has seen the host's cancel."""
    return stop.done() and not stop.cancelled() and stop.exception() is None and stop.result()


async def run_job(packed: dict[str, Any]) -> dict[str, Any]:
    """The Dask task of one job (a coroutine: it runs on the Dask worker's loop)."""
    node: MedialabNode = get_worker().plugins[PLUGIN_NAME]  # type: ignore[assignment]
    return await node.run(packed)


async def describe_node(dask_worker: Any) -> dict[str, Any]:
    """`Client.run` target: this node's description (starting its worker if need be)."""
    node: MedialabNode = dask_worker.plugins[PLUGIN_NAME]
    return await node.describe()
