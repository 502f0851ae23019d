"""The engine's side of the worker: start it, talk to it, kill it.

A CPU worker is forked by the user's worker template (`engine.worker.template`),
which has its libraries imported already; any other worker, or one the template cannot
give, is started with `asyncio.create_subprocess_exec` (a forked CUDA context is
unusable). Its stderr goes to `<data>/logs/worker.log` (the
other workers of a pool each log to their own `worker-<label>.log`).

`WorkerHandle` is all the engine asks of a worker: a local subprocess
(`WorkerProcess`) and a medialab worker kept warm on a Dask node look the same to it.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel

from medialab_tui.config import Config
from medialab_tui.engine.worker.protocol import decode, encode
from medialab_tui.engine.worker.template import TemplateChild, fork_worker, wanted_for

READY_TIMEOUT_S = 300.0


class WorkerDied(Exception):
    """The worker process exited or closed its stdout."""


class WorkerHandle(Protocol):
    """What the engine asks of one worker slot.

    `start` may be called again after `kill`: that is how a slot's worker restarts.
    `label` names the slot (`cpu:0`, `cuda:1`, a Dask node's GPU) and is unique in a pool.
    """

    @property
    def label(self) -> str: ...

    @property
    def alive(self) -> bool: ...

    @property
    def pid(self) -> int | None: ...

    @property
    def info(self) -> dict[str, Any]: ...

    @property
    def last_heard(self) -> float: ...

    async def start(self) -> None: ...

    async def wait_ready(self) -> dict[str, Any]: ...

    async def send(self, message: dict[str, Any] | BaseModel) -> None: ...

    async def next_event(self, timeout: float) -> dict[str, Any] | None: ...

    async def kill(self) -> None: ...

    async def shutdown(self) -> None: ...


async def next_from(
    events: asyncio.Queue[dict[str, Any] | WorkerDied], timeout: float
) -> dict[str, Any] | None:
    """A worker's next event from its queue, or None after `timeout` seconds of
    silence; a `WorkerDied` in the queue is raised, and stays for every later read."""
    try:
        message = await asyncio.wait_for(events.get(), timeout)
    except TimeoutError:
        return None
    if isinstance(message, WorkerDied):
        events.put_nowait(message)
        raise message
    return message


class WorkerProcess:
    """One running worker subprocess on one device of this host.

    `device` is what the worker computes on (default: config `device`); `env` adds to
    its environment (a pool pins each GPU's worker with `CUDA_VISIBLE_DEVICES`);
    `threads` and `cache_budget_gb` override the config's for this worker. A `probe`
    worker only says what its device is (`doctor`): it skips importing diffusers, so
    it is ready in the time torch takes to import, and must not be sent jobs.
    """

    def __init__(
        self,
        config: Config,
        log_path: Path,
        device: str | None = None,
        *,
        label: str = "",
        threads: int | None = None,
        cache_budget_gb: float | None = None,
        env: dict[str, str] | None = None,
        probe: bool = False,
    ) -> None:
        self.config = config
        self.probe = probe
        self.log_path = log_path
        self.device = device or config.device
        # `cpu:0`, `cuda:1`: a pool gives each its own (`engine.pool`).
        self._label = label or (self.device if ":" in self.device else f"{self.device}:0")
        self.threads = config.threads if threads is None else threads
        self.cache_budget_gb = (
            config.cache_budget_gb if cache_budget_gb is None else cache_budget_gb
        )
        self.env = dict(env or {})
        self.proc: asyncio.subprocess.Process | TemplateChild | None = None
        self.info: dict[str, Any] = {}
        self._events: asyncio.Queue[dict[str, Any] | WorkerDied] = asyncio.Queue()
        self._pump_task: asyncio.Task[None] | None = None
        self._ready_task: asyncio.Task[dict[str, Any]] | None = None
        self._log: Any = None
        # When the worker last said anything (heartbeats included): a stopped or hung
        # worker falls silent, a busy one keeps beating between and during steps.
        self.last_heard = time.monotonic()

    @property
    def label(self) -> str:
        return self._label

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def start(self) -> None:
        """Spawn the worker; `wait_ready` waits for its `ready` line."""
        args = [
            sys.executable,
            "-m",
            "medialab_tui.engine.worker",
            "--device",
            self.device,
            "--dtype",
            self.config.dtype,
            "--threads",
            str(self.threads),
            "--cache-budget-gb",
            str(self.cache_budget_gb),
            "--max-image-pixels",
            str(self.config.max_image_pixels),
            *(["--probe"] if self.probe else []),
        ]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the worker
        env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "TOKENIZERS_PARALLELISM": "false",
            # Keep the log for what matters: transformers warns about optional extras.
            "TRANSFORMERS_VERBOSITY": "error",
            **self.env,
        }
        limit = 16 * 1024 * 1024  # previews ride on progress lines
        self.proc = None
        if not self.probe and wanted_for(self.device, self.label):
            self.proc = await fork_worker(args[3:], env, self._log.fileno(), limit)
        if self.proc is None:
            self.proc = await asyncio.create_subprocess_exec(
                *args,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=self._log,
                env=env,
                limit=limit,
            )
        self.info = {}
        self.last_heard = time.monotonic()
        self._events = asyncio.Queue()
        self._pump_task = asyncio.create_task(self._pump(), name="worker-events")
        self._ready_task = asyncio.create_task(self._read_ready(), name="worker-ready")

    async def wait_ready(self) -> dict[str, Any]:
        """Wait for the `ready` line; raises WorkerDied if the worker exits first.

        Any number of callers may wait: one task reads the line for all of them.
        """
        assert self._ready_task is not None, "start() the worker first"
        return await asyncio.shield(self._ready_task)

    async def _read_ready(self) -> dict[str, Any]:
        while not self.info:
            message = await self.next_event(READY_TIMEOUT_S)
            if message is None:
                raise WorkerDied(f"the worker did not start within {READY_TIMEOUT_S:.0f} s")
            if message.get("event") == "ready":
                self.info = message
        return self.info

    async def send(self, message: dict[str, Any] | BaseModel) -> None:
        if not self.alive or self.proc is None or self.proc.stdin is None:
            raise WorkerDied("the worker is not running")
        try:
            self.proc.stdin.write(encode(message))
            await self.proc.stdin.drain()
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise WorkerDied("the worker closed its input") from exc

    async def next_event(self, timeout: float) -> dict[str, Any] | None:
        """The next protocol message, or None after `timeout` seconds of silence."""
        return await next_from(self._events, timeout)

    async def _pump(self) -> None:
        """Move protocol lines from the worker's stdout into the event queue."""
        assert self.proc is not None and self.proc.stdout is not None
        while True:
            try:
                line = await self.proc.stdout.readline()
            except (ValueError, asyncio.LimitOverrunError):
                continue  # an over-long line: skip it, the protocol goes on
            if not line:
                await self.proc.wait()
                self._events.put_nowait(
                    WorkerDied(f"the worker exited with code {self.proc.returncode}")
                )
                return
            self.last_heard = time.monotonic()
            try:
                message = decode(line)
            except ValueError:
                message = None
            if message is not None:
                if message.get("event") != "heartbeat":
                    self._events.put_nowait(message)
            else:
                if self._log:
                    self._log.write(b"[stdout, not protocol] " + line)

    async def kill(self) -> None:
        """Kill the worker now (SIGKILL) and reap it; its VRAM goes with it."""
        if self.proc and self.proc.returncode is None:
            try:
                self.proc.kill()
            except ProcessLookupError:
                pass
            await self.proc.wait()
        for task in (self._pump_task, self._ready_task):
            if task is not None:
                if not task.done():
                    task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        self._close_log()

    async def shutdown(self, timeout: float = 5.0) -> None:
        """Ask the worker to exit; kill it if it does not within `timeout`."""
        if self.alive and self.proc is not None:
            try:
                await self.send({"cmd": "shutdown"})
                if self.proc.stdin:
                    self.proc.stdin.close()
                await asyncio.wait_for(self.proc.wait(), timeout)
            except (WorkerDied, TimeoutError):
                pass
        await self.kill()

    def _close_log(self) -> None:
        if self._log:
            self._log.close()
            self._log = None
