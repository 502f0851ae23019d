"""Hosting the engine inside an interactive process, on a thread of its own.

The TUI's event loop must never wait on the database or the worker, so the engine
runs its own asyncio loop in a background thread. `hand_over` stops it cleanly
(the running job goes back to the queue) and starts a detached `medialab serve`
that the next `medialab` attaches to.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time

from medialab_tui.config import Config, DataDir
from medialab_tui.engine.host import HostLock, describe_holder
from medialab_tui.store.db import Store


class EngineHost:
    """Host the engine if nobody else does; otherwise say who does."""

    def __init__(self, data: DataDir, config: Config, store: Store, role: str = "tui") -> None:
        self.data = data
        self.config = config
        self.store = store
        self.role = role
        self.lock = HostLock(data.lock_path)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._engine: object | None = None
        self.error: BaseException | None = None

    @property
    def hosting(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def describe(self) -> str:
        if self.hosting:
            return "hosting the engine"
        holder = self.lock.holder()
        if holder is None:
            return "no engine running"
        return f"attached to {describe_holder(holder)}"

    def start(self) -> bool:
        """Become the host if the lock is free; True when this process hosts."""
        if self.hosting:
            return True
        if not self.lock.try_acquire(self.role):
            return False
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="engine", daemon=True)
        self._thread.start()
        ready.wait(10)
        return True

    def _run(self, ready: threading.Event) -> None:
        from medialab_tui.engine.scheduler import Engine

        async def main() -> None:
            engine = Engine(self.data, self.store, self.config, previews=True)
            self._engine = engine
            self._loop = asyncio.get_running_loop()
            ready.set()
            await engine.run()

        try:
            asyncio.run(main())
        except BaseException as exc:  # noqa: BLE001 - reported in the UI, not raised on a thread
            self.error = exc
        finally:
            ready.set()
            self.lock.release()

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the engine; a running job is handed back to the queue."""
        engine, loop = self._engine, self._loop
        if engine is not None and loop is not None and self.hosting:
            loop.call_soon_threadsafe(engine.request_stop)  # type: ignore[attr-defined]
        if self._thread is not None:
            self._thread.join(timeout)
        self._thread = None

    def hand_over(self) -> int:
        """Stop hosting and leave the queue to a background `medialab serve`; its pid."""
        self.stop()
        log = (self.data.logs / "serve.log").open("ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "medialab_tui", "--data-dir", str(self.data.root), "serve"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,  # survives this terminal going away
        )
        log.close()
        # Wait until it holds the lock, so the work is never without a host for long.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self.lock.holder() is None and proc.poll() is None:
            time.sleep(0.05)
        return proc.pid
