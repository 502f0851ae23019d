"""The medialab TUI: four screens over one engine, all by keyboard.

The app never hosts the engine: it attaches to the running `medialab serve`, or
starts one detached when none runs, and heartbeats through the store so that the
host stays up while it is open. It only reads and writes the store through
`StudioClient`, from thread workers, so the UI never waits on SQLite or on the
worker. Quitting, a hang-up or a kill leaves the running job untouched.
"""

from __future__ import annotations

import importlib
import os
import signal
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from textual import on, work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.command import Hit, Hits, Provider
from textual.notifications import Notification, SeverityLevel
from textual.screen import Screen

from medialab_tui.client import QueueSummary, StudioClient
from medialab_tui.config import Config, DataDir
from medialab_tui.hosting import EngineLink
from medialab_tui.screens.builder import BuilderScreen
from medialab_tui.screens.common import BuilderRequest
from medialab_tui.screens.help import HelpScreen
from medialab_tui.store.db import Store
from medialab_tui.text import visible, visible_lines

STATE_POLL_S = 0.5
CLIENT_BEAT_S = 5.0  # engine.daemon.CLIENT_BEAT_S, without importing the store here


class ScreenActions(Provider):
    """The command palette lists every action of the current screen."""

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        # The screen the palette was opened from (`self.app.screen` is the palette).
        screen = self.screen
        seen: set[str] = set()
        for binding in [*_class_bindings(screen), *self.app.BINDINGS]:
            if not isinstance(binding, Binding) or not binding.description:
                continue
            if binding.action in seen:
                continue
            seen.add(binding.action)
            label = f"{binding.description} ({binding.key_display or binding.key})"
            score = matcher.match(label)
            if score > 0:
                yield Hit(
                    score,
                    matcher.highlight(label),
                    lambda action=binding.action, target=screen: self.app.call_later(
                        target.run_action, action
                    ),
                    help=binding.tooltip or None,
                )


def _class_bindings(screen: Screen[Any]) -> list[Any]:
    """A screen's bindings, its base classes' included."""
    found: list[Any] = []
    for cls in type(screen).__mro__:
        found.extend(cls.__dict__.get("BINDINGS", []))
    return found


def _screen(module: str, name: str) -> Screen[Any]:
    """A new screen of `screens/<module>.py`, imported on first use."""
    screen: Screen[Any] = getattr(importlib.import_module(f"medialab_tui.screens.{module}"), name)()
    return screen


class MedialabApp(App[None]):
    """Builder, Queue, Models and Gallery, one key apart."""

    TITLE = "medialab"
    CSS_PATH = "screens/studio.tcss"
    COMMANDS = App.COMMANDS | {ScreenActions}
    # The builder is the first screen; the others (the gallery brings textual-image,
    # numpy and the video player) are imported when they are built, after the first frame.
    MODES = {
        "builder": BuilderScreen,
        "queue": lambda: _screen("queue", "QueueScreen"),
        "models": lambda: _screen("models", "ModelsScreen"),
        "gallery": lambda: _screen("gallery", "GalleryScreen"),
    }
    BINDINGS = [
        # The header shows 1–4 and the footer has no room for them at 100 columns.
        Binding("1", "switch_mode('builder')", "Builder", id="screen.builder", show=False),
        Binding("2", "switch_mode('queue')", "Queue", id="screen.queue", show=False),
        Binding("3", "switch_mode('models')", "Models", id="screen.models", show=False),
        Binding("4", "switch_mode('gallery')", "Gallery", id="screen.gallery", show=False),
        Binding("question_mark,f1", "help", "Help", id="app.help", show=False),
        Binding("ctrl+q", "quit_studio", "Quit", id="app.quit", priority=True),
    ]

    def __init__(
        self,
        data: DataDir,
        config: Config,
        store: Store,
        *,
        pipeline: Path | None = None,
        host_engine: bool = True,
    ) -> None:
        super().__init__()
        self.data = data
        self.config = config
        self.client = StudioClient(data, config, store)
        self.engine_host = EngineLink(data, store)
        self.pipeline_path = pipeline
        self.host_engine = host_engine
        self.summary = QueueSummary("active", {}, {})
        self._last_event: int | None = None  # None until the first summary
        self._tally_notice: Notification | None = None
        self._tally = (0, 0)  # jobs finished and failed that the shown notice counts
        if config.theme in self.available_themes:
            self.theme = config.theme

    def get_default_screen(self) -> Screen[Any]:
        # An empty placeholder: on_mount switches to the builder mode at once.
        return Screen()

    def on_mount(self) -> None:
        self.switch_mode("builder")
        # The other screens are built once the builder is on screen, one per idle
        # moment, so that their first show is a switch and not a build.
        self.call_after_refresh(self._build_screens_ahead, ["queue", "gallery", "models"])
        if self.config.keys:
            self.set_keymap(self.config.keys)
        if self.config.theme and self.config.theme not in self.available_themes:
            self.notify(f"config.toml: unknown theme {self.config.theme!r}", severity="warning")
        try:
            signal.signal(signal.SIGHUP, self._on_hangup)
        except ValueError:  # not the main thread (tests)
            pass
        self._attach()
        self.set_interval(CLIENT_BEAT_S, self._beat)
        self.set_interval(STATE_POLL_S, self.poll_state)
        self.poll_state()

    def _build_screens_ahead(self, modes: list[str], *, settled: bool = False) -> None:
        """Build the first of `modes` off screen, then schedule the rest.

        A mode's first show otherwise composes its screen and, because its widgets
        bring new CSS, re-parses and re-applies the whole stylesheet (≈ 0.25 s of the
        UI thread, measured with pyinstrument). Textual has no public call for this:
        `_init_mode` is what `switch_mode` uses; if it is gone, screens are built on
        first show as before. The first build waits until the screen on show has
        filled itself (its thread workers done and what they mounted drawn): a build
        holds the UI thread, and before that it would hold up the first full frame.
        """
        init_mode = getattr(self, "_init_mode", None)
        # A screen built while the app shuts down changes the stacks Textual is closing.
        if init_mode is None or self._exit or not self.is_running:
            return
        step_s, settle_s = 0.05, 0.2  # between builds; for the last mounts to be drawn
        if not settled:
            filling = any(w.node is self.screen and not w.is_finished for w in self.workers)
            self.set_timer(
                step_s if filling else settle_s,
                lambda: self._build_screens_ahead(modes, settled=not filling),
            )
            return
        if not modes:
            # Each build re-applied the stylesheet to every screen (they are all the
            # app's children); mark them current so no first show applies it again.
            for stack in self._screen_stacks.values():
                for screen in stack:
                    screen._css_update_count = self._css_update_count
            return
        mode, rest = modes[0], modes[1:]
        if mode not in self._screen_stacks and mode != self.current_mode:
            init_mode(mode)
        self.set_timer(step_s, lambda: self._build_screens_ahead(rest, settled=True))

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for key, name in (("1", "Builder"), ("2", "Queue"), ("3", "Models"), ("4", "Gallery")):
            mode = name.lower()
            yield SystemCommand(
                f"Go to {name}",
                f"Switch to the {name} screen ({key})",
                lambda mode=mode: self.switch_mode(mode),
            )

    # -- state shown in every header ----------------------------------------------

    @work(thread=True, exclusive=True, group="host")
    def _attach(self) -> None:
        """Say this TUI is open, then find the engine host or start one."""
        self.engine_host.beat()
        if self.host_engine:
            self.engine_host.ensure()
            self.call_from_thread(self._host_changed)

    @work(thread=True, exclusive=True, group="beat")
    def _beat(self) -> None:
        self.engine_host.beat()
        # A host that crashed (not one stopped on purpose) is started again.
        if self.host_engine and self.engine_host.should_restart():
            self.engine_host.ensure()
        self.call_from_thread(self._host_changed)

    def _host_changed(self) -> None:
        if self.engine_host.error:
            self.notify(self.engine_host.error, severity="error", timeout=10)
            self.engine_host.error = ""

    @work(thread=True, exclusive=True, group="state")
    def poll_state(self) -> None:
        summary = self.client.summary(self._last_event)
        if summary != self.summary:  # the same answer: nothing to show or notify
            self.call_from_thread(self._apply_summary, summary)

    def _apply_summary(self, summary: QueueSummary) -> None:
        self.summary = summary
        self._last_event = summary.last_event
        if summary.finished or summary.failed:
            self._tally_jobs(summary.finished, summary.failed)
        for run_id, name, ending in summary.run_endings:
            self._run_ended(run_id, name, ending)

    def _tally_jobs(self, finished: int, failed: int) -> None:
        """One notice counting the jobs that ended, replaced in place (while it is on
        screen the counts add up) instead of a stack of toasts over the tables."""
        shown = self._tally_notice
        if shown is not None and shown in self._notifications:
            finished, failed = finished + self._tally[0], failed + self._tally[1]
            self._unnotify(shown, refresh=False)
        self._tally = (finished, failed)
        parts = [f"{finished} job{'s' if finished != 1 else ''} finished"] if finished else []
        if failed:
            parts.append(f"{failed} failed")
        self._tally_notice = self._post_notice(
            " · ".join(parts), severity="warning" if failed else "information"
        )

    def _run_ended(self, run_id: int, name: str, ending: str) -> None:
        """A run that waits in review, failed or completed gets a notice of its own,
        and the terminal bell (config `bell`)."""
        words = {
            "review": ("waits in review (2 opens the Queue)", "warning"),
            "failed": ("failed", "error"),
            "succeeded": ("completed", "information"),
        }
        text, severity = words.get(ending, (ending, "information"))
        self._post_notice(
            f"Run r{run_id} {visible(name)} {text}", title="Run", severity=severity, timeout=8
        )
        if self.config.bell:
            self.bell()

    def _post_notice(
        self,
        message: str,
        *,
        title: str = "",
        severity: SeverityLevel = "information",
        timeout: float | None = None,
    ) -> Notification:
        """A toast of plain text (no markup: it quotes names) whose handle we keep."""
        notice = Notification(
            visible_lines(message),
            visible(title),
            severity,
            self.NOTIFICATION_TIMEOUT if timeout is None else timeout,
            markup=False,
        )
        # Shown now, not when a Notify message is handled: a job ending in the next
        # poll then finds this notice among the shown ones and replaces it.
        self._notifications.add(notice)
        self._refresh_notifications()
        return notice

    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: SeverityLevel = "information",
        timeout: float | None = None,
        markup: bool = False,
    ) -> None:
        """Every notification (screens' included) with its control characters shown,
        and plain text unless `markup` is asked for: they quote ids, names, prompts and
        error sentences, whose brackets (`images[0]`, `[b]`) are not markup."""
        super().notify(
            visible_lines(message),
            title=visible(title),
            severity=severity,
            timeout=timeout,
            markup=markup,
        )

    def status_line(self, level: int = 0) -> str:
        """What every header shows: the host line, device, queue state and job counts.

        `level` 1 leaves out the device, 2 also shortens the rest and 3 drops the
        words "attached to" and an active queue's state, for a narrow header; who
        hosts (program, pid, user) is always whole.
        """
        s = self.summary
        device = s.worker.get("device", "?") if s.worker else "?"
        running = s.counts.get("running", 0)
        queued = s.counts.get("queued", 0)
        host = self.engine_host.describe()
        # A pool of workers (config `devices`, a cluster): how many of them are busy.
        workers = int(s.worker.get("workers", 1) or 1) if s.worker else 1
        busy = f"{min(running, workers)}/{workers} busy" if workers > 1 else ""
        if level >= 3:  # the queue's state only when it is not the usual one
            host = host.removeprefix("attached to ")
            state = "" if s.state == "active" else f" · {s.state}"
            return f"{host}{state} · {busy or f'{running} run'} · {queued} queued"
        if level >= 2:
            return f"{host} · {s.state} · {busy or f'{running} run'} · {queued} queued"
        if level == 1:
            return f"{host} · queue {s.state} · {busy or f'{running} running'} · {queued} queued"
        return (
            f"{host} · {device} · queue {s.state} · {busy or f'{running} running'} "
            f"· {queued} queued"
        )

    # -- actions -----------------------------------------------------------------

    @on(BuilderRequest)
    def _show_builder(self, request: BuilderRequest) -> None:
        """Show the builder and hand it what another screen sent it."""
        self.switch_mode("builder")
        # The bottom of the mode's stack is the builder itself, under any dialog.
        self.get_screen_stack("builder")[0].post_message(request)

    def action_help(self) -> None:
        self.push_screen(HelpScreen(self.screen))

    def action_quit_studio(self) -> None:
        """Quit; the engine host goes on with the queue (and leaves by itself after
        its keep-alive once the queue is empty)."""
        self.exit()

    def _on_hangup(self, _signum: int, _frame: object) -> None:
        """The terminal is gone: go at once (nothing can be drawn or restored on a
        terminal that no longer exists). The host runs on, untouched; this TUI's
        heartbeat goes stale and stops holding the host up."""
        os._exit(0)

    def on_unmount(self) -> None:
        self.engine_host.leave()
