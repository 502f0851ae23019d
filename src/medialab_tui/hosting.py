"""Finding the engine host, or starting one, for the TUI and `medialab run`.

No client hosts the engine in its own process. When none runs, a client starts
`medialab serve` detached (its own session, stdin closed, output appended to
`<data>/logs/engine.log`) and waits until it holds the host lock; then the client
only reads and writes the store. A client that quits, hangs up or is killed never
touches a running job. Two clients starting at once start one host between them.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medialab_tui.config import DataDir
from medialab_tui.engine.host import HostLock, describe_holder
from medialab_tui.errors import EngineUnavailable

if TYPE_CHECKING:
    from medialab_tui.store.db import Store

HOST_START_TIMEOUT_S = 60.0
ENGINE_LOG = "engine.log"


def engine_log(data: DataDir) -> Path:
    return data.logs / ENGINE_LOG


def current_host(data: DataDir) -> dict[str, Any] | None:
    """Who hosts the engine of this data directory now (pid, user, role), or None. A
    host that has just taken the lock may not have written its pid yet (`pid` None)."""
    return HostLock(data.lock_path).holder()


def ensure_host(
    data: DataDir, timeout: float = HOST_START_TIMEOUT_S
) -> tuple[dict[str, Any], bool]:
    """The running host, starting one when none runs: (who hosts, whether we started it).

    Raises `EngineUnavailable` (exit 4) with the log's last line when the new host
    dies before it takes the lock.
    """
    holder = current_host(data)
    if holder is not None:
        return holder, False
    with _starting(data):
        holder = current_host(data)
        if holder is not None:
            return holder, False
        proc = _spawn(data)
        lock = HostLock(data.lock_path)
        deadline = time.monotonic() + timeout
        while True:
            # A lock taken but not yet labelled is a host starting: wait for its card.
            holder = lock.holder()
            if holder is not None and holder.get("pid"):
                return holder, holder.get("pid") == proc.pid
            code = proc.poll()
            if code is not None and holder is None:
                raise EngineUnavailable(
                    f"the engine host could not start (exit {code}): {_last_line(data)}"
                )
            if time.monotonic() > deadline:
                raise EngineUnavailable(
                    f"the engine host did not start within {timeout:.0f} s; see {engine_log(data)}"
                )
            time.sleep(0.02)


@contextmanager
def _starting(data: DataDir) -> Iterator[None]:
    """One starter at a time per data directory (the others then find its host)."""
    fd = os.open(data.root / "engine.start.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _spawn(data: DataDir) -> subprocess.Popen[bytes]:
    data.logs.mkdir(parents=True, exist_ok=True)
    log_fd = os.open(engine_log(data), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "medialab_tui", "--data-dir", str(data.root), "serve"],
            stdin=subprocess.DEVNULL,
            stdout=log_fd,
            stderr=log_fd,
            cwd=data.root,
            start_new_session=True,  # no hang-up or Ctrl+C of this terminal reaches it
        )
    finally:
        os.close(log_fd)
    # Reap it whenever it leaves, so a long-lived TUI keeps no zombie behind.
    threading.Thread(target=proc.wait, name="engine-host-reaper", daemon=True).start()
    return proc


def _last_line(data: DataDir) -> str:
    try:
        with engine_log(data).open("rb") as fh:
            fh.seek(0, 2)
            fh.seek(max(0, fh.tell() - 4096))
            lines = fh.read().decode("utf-8", "replace").strip().splitlines()
    except OSError:
        lines = []
    return lines[-1] if lines else f"nothing in {engine_log(data)}"


def describe_host(data: DataDir) -> str:
    """`attached to serve (pid 123, user ana)` or `no engine running`."""
    holder = current_host(data)
    return "no engine running" if holder is None else f"attached to {describe_holder(holder)}"


class EngineLink:
    """A TUI's tie to the engine host: its heartbeat, and starting a host when none
    runs. Every method but `describe` touches the store: call them off the UI thread."""

    def __init__(self, data: DataDir, store: Store) -> None:
        from medialab_tui.engine.daemon import client_key

        self.data = data
        self.store = store
        self.key = client_key()
        self.opened = time.time()
        self.holder: dict[str, Any] | None = None
        self.stopped_by = ""  # who stopped the host on purpose, while none runs
        self.error = ""  # why a host could not be started, for the UI to show once

    def describe(self) -> str:
        """`attached to serve (pid 123, user ana)`, `engine stopped by ana`, …"""
        holder = self.holder
        if holder is not None:
            return f"attached to {describe_holder(holder)}"
        if self.stopped_by:
            return f"engine stopped by {self.stopped_by}"
        return "no engine running"

    def refresh(self) -> dict[str, Any] | None:
        self.holder = current_host(self.data)
        return self.holder

    def beat(self) -> None:
        from medialab_tui.engine import daemon

        daemon.beat(self.store, self.key)
        self.refresh()

    def leave(self) -> None:
        from medialab_tui.engine import daemon

        try:
            daemon.leave(self.store, self.key)
        except Exception:  # noqa: BLE001 - the heartbeat goes stale by itself
            pass

    def ensure(self) -> None:
        try:
            self.holder, _ = ensure_host(self.data)
            self.stopped_by = ""
        except EngineUnavailable as exc:
            self.error = str(exc)

    def should_restart(self) -> bool:
        """No host, and none was stopped on purpose since this TUI opened: the host
        crashed (or was killed), and the queue needs a new one."""
        from medialab_tui.engine import daemon

        if self.refresh() is not None:
            return False
        stop = daemon.last_stop(self.store)
        if stop is not None and stop.at >= self.opened:
            self.stopped_by = stop.by
            return False
        return True
