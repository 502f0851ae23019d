"""The worker's main loop: read commands, run stages, write events.

stdout carries protocol lines only. Everything a library prints goes to stderr,
which the engine sends to `<data>/logs/worker.log`: at start we move the real
stdout aside and point file descriptor 1 at stderr.

A reader thread owns stdin so that a `cancel` arrives while a stage computes;
the stage's step callback sees the flag and stops at the next step. When stdin
closes (the engine died), the current job is cancelled and the worker exits.
"""

from __future__ import annotations

import argparse
import os
import queue
import sys
import threading
import time
import traceback
from typing import Any, BinaryIO

from pydantic import ValidationError

from medialab_tui.engine.worker.context import JobCancelled, JobContext, JobFailed
from medialab_tui.engine.worker.protocol import RunCommand, decode, encode
from medialab_tui.store.files import is_disk_full


class Channel:
    """The protocol's output side: whole lines, one writer at a time."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._lock = threading.Lock()

    def emit(self, event: str, **fields: Any) -> None:
        with self._lock:
            self._out.write(encode({"event": event, **fields}))
            self._out.flush()


def _pipeline_bytes(pipe: Any) -> int:
    from medialab_tui.engine.worker.loading import estimate_pipeline_bytes

    return estimate_pipeline_bytes(pipe)


class Worker:
    """Holds the device, the pipeline cache and the job being run."""

    def __init__(self, channel: Channel, device: str, dtype: Any, budget: int) -> None:
        from medialab_tui.engine.worker.cache import PipelineCache

        self.channel = channel
        self.device = device
        self.dtype = dtype
        self.cache = PipelineCache(budget, _pipeline_bytes)
        self.commands: queue.Queue[dict[str, Any]] = queue.Queue()
        self.cancel_flag = threading.Event()
        self.current_job: int | None = None
        self.last_step = 0
        self.cancelled_ids: set[int | None] = set()
        self.closing = threading.Event()

    def read_commands(self, stdin: BinaryIO) -> None:
        """Reader thread: cancels act at once, everything else is queued."""
        for line in stdin:
            if not line.strip():
                continue
            try:
                cmd = decode(line)
            except ValueError as exc:
                print(f"worker: ignoring a bad command line: {exc}", file=sys.stderr)
                continue
            if cmd.get("cmd") == "cancel":
                # Remember it: the cancel may overtake its own `run` command.
                self.cancelled_ids.add(cmd.get("job_id"))
                if cmd.get("job_id") == self.current_job:
                    self.cancel_flag.set()
                continue
            self.commands.put(cmd)
        # stdin closed: the engine is gone. Stop the current job and leave.
        self.closing.set()
        self.cancel_flag.set()
        self.commands.put({"cmd": "shutdown"})

    def check_cancel(self) -> None:
        if self.cancel_flag.is_set():
            raise JobCancelled()

    def serve(self) -> None:
        while True:
            cmd = self.commands.get()
            name = cmd.get("cmd")
            if name == "shutdown":
                return
            if name == "unload":
                self.cache.clear()
                self._empty_device_cache()
                self.channel.emit("unloaded")
            elif name == "run":
                self.run_job(cmd)
            else:
                print(f"worker: unknown command {name!r}", file=sys.stderr)

    def loaded_models(self) -> list[str]:
        """The model files the cache holds now, most recently used last."""
        return list(dict.fromkeys(key[0] for key in self.cache.keys()))

    def run_job(self, cmd: dict[str, Any]) -> None:
        from medialab_tui.engine.stages import STAGES

        job_id = int(cmd["job_id"])
        self.current_job = job_id
        self.cancel_flag.clear()
        if job_id in self.cancelled_ids or self.closing.is_set():
            self.cancel_flag.set()
        self.last_step = 0
        self.channel.emit("started", job_id=job_id)
        started = time.perf_counter()
        try:
            try:
                command = RunCommand.model_validate(cmd)
                spec = STAGES.get(command.stage)
                if spec is None:
                    raise JobFailed("validation", f"this worker cannot run stage {command.stage!r}")
                params = spec.params.model_validate(command.params)
            except ValidationError as exc:
                raise JobFailed(
                    "validation", f"a malformed job: {exc.errors()[0]['msg']}"
                ) from None
            timings = spec.runner()(JobContext(self, command), params)
            self.channel.emit(
                "done",
                job_id=job_id,
                run_seconds=round(time.perf_counter() - started, 4),
                loaded=self.loaded_models(),
                loads=self.cache.loads,
                **timings,
            )
        except JobCancelled:
            self.channel.emit("cancelled", job_id=job_id, step=self.last_step)
        except JobFailed as exc:
            self.channel.emit("failed", job_id=job_id, kind=exc.kind, message=str(exc))
        except Exception as exc:  # classify, log the traceback, keep serving
            traceback.print_exc(file=sys.stderr)
            kind, message = classify(exc)
            if kind == "oom":
                self.cache.clear()
                self._empty_device_cache()
            self.channel.emit("failed", job_id=job_id, kind=kind, message=message)
        finally:
            self.current_job = None

    def _empty_device_cache(self) -> None:
        import torch

        if self.device.startswith("cuda"):
            torch.cuda.empty_cache()


def classify(exc: BaseException) -> tuple[str, str]:
    """A failure kind from the protocol and a one-line message for people."""
    name = exc.__class__.__name__
    text = " ".join(str(exc).split()) or name
    if len(text) > 300:
        text = text[:297] + "..."
    if "OutOfMemory" in name or "out of memory" in text.lower():
        return "oom", f"out of memory: {text}"
    if is_disk_full(exc):
        return "disk_full", f"no space left on the disk: {text}"
    if isinstance(exc, (FileNotFoundError, IsADirectoryError)) or "no such file" in text.lower():
        return "missing_model", f"model files not found: {text}"
    if isinstance(exc, (ValueError, TypeError)) and "must be" in text.lower():
        return "validation", text
    return "internal", f"{name}: {text}"


HEARTBEAT_S = 2.0


def _beat(channel: Channel) -> None:
    """Say "alive" every HEARTBEAT_S, also while a step or a load takes long, so the
    engine tells a busy worker from a stopped or hung one."""
    while True:
        time.sleep(HEARTBEAT_S)
        channel.emit("heartbeat")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="medialab-worker")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--cache-budget-gb", type=float, default=0.0)
    parser.add_argument("--max-image-pixels", type=int, default=0)
    # Say what the device is, without importing diffusers (`doctor`); takes no jobs.
    parser.add_argument("--probe", action="store_true")
    args = parser.parse_args(argv)
    if args.max_image_pixels > 0:
        # Inputs and outputs as large as the config's caps open (a ×4 upscale's
        # output goes on to the next stage); PIL's bomb guard stays above them.
        from PIL import Image

        Image.MAX_IMAGE_PIXELS = args.max_image_pixels

    # Keep the real stdout for the protocol; send fd 1 (library prints) to stderr.
    proto = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    channel = Channel(proto)

    import torch

    from medialab_tui.engine.worker.device import memory_budget, pick_device, pick_dtype

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    dtype = pick_dtype(device, args.dtype)
    worker = Worker(channel, device, dtype, memory_budget(device, args.cache_budget_gb))
    if not args.probe:
        # Import the heavy libraries now, while the engine is still busy with other things.
        import medialab_tui.engine.worker.loading  # noqa: F401  (diffusers, transformers)

    reader = threading.Thread(
        target=worker.read_commands, args=(sys.stdin.buffer,), name="commands", daemon=True
    )
    reader.start()
    threading.Thread(target=_beat, args=(channel,), name="heartbeat", daemon=True).start()
    channel.emit(
        "ready",
        pid=os.getpid(),
        device=device,
        dtype=str(dtype).removeprefix("torch."),
        torch=torch.__version__,
        threads=torch.get_num_threads(),
        cuda=torch.version.cuda,
    )
    worker.serve()
    # Leave without interpreter teardown: the stdin reader thread may still be
    # blocked, and torch's thread pools do not like being torn down under it.
    sys.stderr.flush()
    os._exit(0)
