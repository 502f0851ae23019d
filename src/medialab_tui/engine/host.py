"""The engine-host lock: the first medialab process to take it runs the engine.

An exclusive `flock` on `<data>/engine.lock`. The kernel drops it when the host
dies, however it dies, so a `kill -9` never leaves a stale lock behind. The
file's content says who holds it, for the messages other processes print.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from medialab_tui.config import current_user


class HostLock:
    """Try to become the engine host; `holder()` tells who is when we are not."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def try_acquire(self, role: str) -> bool:
        """Take the lock without waiting; True if this process is now the host."""
        if self._fd is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        info = {
            "pid": os.getpid(),
            "user": current_user(),
            "host": socket.gethostname(),
            "role": role,
            "since": time.time(),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def holder(self) -> dict[str, Any] | None:
        """Who hosts the engine now (pid, user, role), or None when nobody does."""
        if self._fd is not None:
            return self._read()
        if not self.path.exists():
            return None
        fd = os.open(self.path, os.O_RDONLY)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return self._read() or {"pid": None, "user": "?", "role": "?"}
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)

    def _read(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.path.read_text() or "null")
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None


def describe_holder(info: dict[str, Any]) -> str:
    """`serve (pid 123, user ana)` for messages."""
    return f"{info.get('role', '?')} (pid {info.get('pid')}, user {info.get('user', '?')})"
