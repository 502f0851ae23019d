"""The live registry: while a host runs, the model roots are watched and hashed.

Two threads beside the engine's loop, so a large root or a 20 GB checkpoint never
holds up the queue:

- the watcher rescans when watchfiles reports a change in any root (or a yaml that
  names roots), so a new, changed or removed file is in `models list` and the TUI
  within a few seconds; a rescan opens only what changed (a `stat` per file
  otherwise). Where the roots cannot be watched (no inotify watches left), it
  rescans every `POLL_S` instead.
- the hasher computes the hashes scans leave pending (sha256 for AutoV2, blake3),
  smallest model first, publishing its progress (`registry.HASHING_KEY`).

Both end within a fraction of a second of `stop()`.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path

from medialab_tui.config import Config, DataDir
from medialab_tui.engine import registry
from medialab_tui.engine.roots import all_roots
from medialab_tui.store.db import Store

log = logging.getLogger("medialab.models")

# Changes within this many milliseconds are taken as one (a copy of many files).
DEBOUNCE_MS = 400
# The watch checks its stop flag this often (milliseconds).
STEP_MS = 50
# How often the watcher looks again at which roots there are (a folder created later,
# a yaml edited), and how often it rescans when watching is not possible.
REFRESH_S = 10.0
# The watch yields at least this often, changes or not: its first yield (the watch is
# then in place) is when it looks for files that arrived while it was being set up.
TICK_S = 1.0
POLL_S = 2.0
# How often the hasher looks for pending hashes when nothing woke it, and the most
# often it writes its progress.
HASH_LOOK_S = 2.0
PROGRESS_S = 0.5


class ModelWatch:
    """Keeps one data directory's registry in line with its roots, in the background."""

    def __init__(self, data: DataDir, store: Store, config: Config) -> None:
        self.data = data
        self.store = store
        self.config = config
        self._stop = threading.Event()
        self._hash_wanted = threading.Event()
        self._threads: list[threading.Thread] = []
        self._last_progress = 0.0

    def start(self) -> None:
        # watchfiles logs every batch at INFO; the rescans say what changed.
        logging.getLogger("watchfiles").setLevel(logging.WARNING)
        for name, target in (("model-watch", self._watch), ("model-hash", self._hash)):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 5.0) -> None:
        """Ask both threads to end and wait for them (at most `timeout` seconds)."""
        self._stop.set()
        self._hash_wanted.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._threads = []

    # -- the watcher ------------------------------------------------------------------

    def _rescan(self) -> None:
        try:
            result = registry.scan(self.store, self.data, self.config)
        except Exception:
            log.exception("rescanning the model roots failed")
            return
        if result.added or result.updated or result.removed:
            log.info(
                "models: %d added, %d updated, %d removed",
                len(result.added),
                len(result.updated),
                len(result.removed),
            )
        for problem in result.problems:
            log.warning("models: %s", problem.sentence)
        self._hash_wanted.set()

    def _watched(self) -> list[Path]:
        """The folders to watch: every root that is a folder now, and the yaml files."""
        paths = {root.path for root in all_roots(self.data, self.config).roots}
        paths |= {Path(p) for p in self.config.comfyui_model_paths}
        return sorted(p for p in paths if p.exists())

    def _watch(self) -> None:
        import watchfiles

        self._rescan()  # what changed while no host ran
        while not self._stop.is_set():
            paths = self._watched()
            yamls = {Path(p) for p in self.config.comfyui_model_paths}
            started = looked = time.monotonic()
            first = True
            try:
                for changes in watchfiles.watch(
                    *paths,
                    debounce=DEBOUNCE_MS,
                    step=STEP_MS,
                    stop_event=self._stop,
                    rust_timeout=int(TICK_S * 1000),
                    yield_on_timeout=True,
                    ignore_permission_denied=True,
                    raise_interrupt=False,
                ):
                    if self._stop.is_set():
                        return
                    # The first yield comes once the watch is in place: a file that
                    # arrived between the last rescan and then is looked at now.
                    if changes or first:
                        self._rescan()
                    first = False
                    # A root came or went, or a yaml was rewritten (editors replace the
                    # file): watch the new set.
                    if any(Path(p) in yamls for _, p in changes):
                        break
                    now = time.monotonic()
                    if changes or now - looked >= REFRESH_S:
                        looked = now
                        if self._watched() != paths:
                            break
            except Exception as exc:  # no inotify watches left, a root gone mid-watch…
                log.warning("models: watching the roots failed (%s); rescanning instead", exc)
                while not self._stop.wait(POLL_S):
                    self._rescan()
                    if time.monotonic() - started > REFRESH_S:
                        break

    # -- the hasher ---------------------------------------------------------------------

    def _hash(self) -> None:
        while not self._stop.is_set():
            self._hash_wanted.clear()
            try:
                done = registry.hash_pending(
                    self.store, self.config, stop=self._stop, progress=self._progress
                )
            except Exception:
                log.exception("hashing the models failed")
                done = 0
            self._clear_progress()
            if done:
                log.info("models: hashed %d", done)
            self._hash_wanted.wait(HASH_LOOK_S)

    def _progress(self, progress: registry.HashProgress) -> None:
        now = time.monotonic()
        if now - self._last_progress < PROGRESS_S and progress.done < progress.total:
            return
        self._last_progress = now
        self.store.put_setting(registry.HASHING_KEY, json.dumps(progress.to_json()))

    def _clear_progress(self) -> None:
        if self.store.setting(registry.HASHING_KEY) is not None:
            self.store.drop_settings(registry.HASHING_KEY)
