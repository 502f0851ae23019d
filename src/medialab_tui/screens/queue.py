"""Screen 2, Queue: runs and their jobs, the running job's live preview, the worker log.

Everything on the screen comes from one poll every 0.5 s in a thread worker; a
poll never starts while the previous one runs, and rows are updated in place (or
rebuilt with the cursor put back on the same key) so the cursor stays where the
user left it. Until the user picks a run (by moving the cursor in the runs table),
the screen follows the newest running run; it follows again when the picked run
ends, or on `f`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from PIL import Image as PILImage
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Static
from textual.worker import Worker

from medialab_tui.client import JobView, RunView
from medialab_tui.errors import MedialabError
from medialab_tui.progress import StepRates
from medialab_tui.screens.common import StudioScreen, plain_cells
from medialab_tui.screens.dialogs import ConfirmScreen
from medialab_tui.screens.review import ReviewScreen
from medialab_tui.screens.thumbs import ImageWidget, cell_width, image_widget, load_image
from medialab_tui.store.values import TERMINAL_RUN
from medialab_tui.text import visible, visible_lines

POLL_S = 0.5
RUNS_PAGE = 100
JOBS_PAGE = 200
LOG_LINES = 14
ERROR_CELL = 48
PREVIEW_ROWS = 10
PREVIEW_TALL = 18
NARROW_BELOW = 100  # columns; below it the running job's panel sits under the tables
# Columns from which the jobs table shows which worker ran each job (the first column
# to go on a narrower screen).
WORKER_FROM = 120

# Rich styles: DataTable cells are Rich text, which knows no theme variables.
STATUS_STYLES = {
    "pending": "dim",
    "queued": "dim",
    "running": "bold cyan",
    "review": "bold yellow",
    "succeeded": "green",
    "failed": "bold red",
    "cancelled": "dim italic",
}


# -- formatting ---------------------------------------------------------------------


def status_text(status: str) -> Text:
    return Text(status, style=STATUS_STYLES.get(status, ""))


def priority_text(priority: int) -> str:
    return f"{priority:+d}" if priority else "0"


def progress_bar(fraction: float, width: int = 10) -> Text:
    """A bar of block characters and a percentage: `██████░░░░  60%`."""
    fraction = min(max(fraction, 0.0), 1.0)
    filled = round(fraction * width)
    return Text.assemble(
        ("█" * filled, "green"), ("░" * (width - filled), "dim"), f" {fraction:4.0%}"
    )


def duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def aware(ts: datetime) -> datetime:
    """The store keeps UTC; SQLite hands it back without a zone."""
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


# Step rates of the running jobs, as this process has seen them (see progress.py).
STEP_RATES = StepRates()


def eta(job: JobView, now: datetime) -> str:
    """Time left for a running job at the step rate it shows now (a model load before
    its first step is not counted in); `…` until two steps have been seen."""
    if job.status != "running":
        return ""
    left = STEP_RATES.seconds_left(job.id or 0, job.step, job.total_steps)
    return "…" if left is None else duration(left)


def step_text(job: JobView) -> str:
    """Where a running job is: `step 12/20`. A video job's worker counts its denoising
    steps and then its decode chunks in one total, per video: `step 12/20` while it
    denoises, `decoding 2/4` while it decodes (with `video 2/3 ·` when it makes several)."""
    if not job.total_steps:
        return "starting"
    steps, videos = job.params.get("steps"), job.params.get("per_input", 1)
    if job.stage != "i2v" or not isinstance(steps, int) or not isinstance(videos, int):
        return f"step {job.step}/{job.total_steps}"
    per_video = job.total_steps // max(1, videos)
    chunks = per_video - steps
    if chunks < 1 or per_video * videos != job.total_steps:
        return f"step {job.step}/{job.total_steps}"  # not counted as the video stage counts
    video, done = divmod(max(0, job.step - 1), per_video)
    done += 1 if job.step else 0
    which = f"video {video + 1}/{videos} · " if videos > 1 else ""
    if done <= steps:
        return f"{which}step {done}/{steps}"
    return f"{which}decoding {done - steps}/{chunks}"


def created(ts: datetime, now: datetime) -> str:
    local = aware(ts).astimezone()
    today = local.date() == now.astimezone().date()
    return local.strftime("%H:%M:%S" if today else "%b %d %H:%M")


def first_line(text: str, width: int = ERROR_CELL) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= width else line[: width - 1] + "…"


def run_cells(run: RunView, now: datetime) -> tuple[object, ...]:
    return plain_cells(
        run.ref,
        run.name,
        status_text(run.status),
        priority_text(run.priority),
        f"{run.stage}/{run.stages}",
        f"{run.jobs_done}/{run.jobs_total}",
        created(run.created_at, now),
    )


RUN_COLUMNS = ("id", "name", "status", "prio", "stage", "done", "created")
JOB_COLUMNS = ("id", "stage", "status", "prio", "tries", "progress", "ETA", "worker", "error")
WORKER_COLUMN = JOB_COLUMNS.index("worker")


def job_columns(worker: bool = True) -> tuple[str, ...]:
    """The jobs table's columns: without the worker's on a narrow screen."""
    return JOB_COLUMNS if worker else tuple(c for c in JOB_COLUMNS if c != "worker")


def job_cells(
    job: JobView, now: datetime, bar: int = 10, worker: bool = True
) -> tuple[object, ...]:
    cells = plain_cells(
        job.ref,
        f"{job.stage_index + 1} {job.stage}",
        status_text(job.status),
        priority_text(job.priority),
        str(job.attempts),
        progress_bar(1.0 if job.status == "succeeded" else job.progress, bar),
        eta(job, now),
        job.worker,
        first_line(job.error),
    )
    return cells if worker else cells[:WORKER_COLUMN] + cells[WORKER_COLUMN + 1 :]


def highlighted_key(table: DataTable[object]) -> str | None:
    if table.row_count == 0:
        return None
    return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value


def sync_rows(table: DataTable[object], rows: dict[str, Sequence[object]]) -> None:
    """Show `rows` (key → cells, in order) keeping the highlighted row under the cursor.

    Same keys in the same order: only changed cells are updated. Otherwise the
    table is rebuilt and the cursor and scroll position are put back.
    """
    if [row.key.value for row in table.ordered_rows] == list(rows):
        columns = list(table.columns)
        for key, cells in rows.items():
            for column, old, new in zip(columns, table.get_row(key), cells, strict=True):
                if old != new:
                    table.update_cell(key, column, new, update_width=True)
        return
    keep = highlighted_key(table)
    scroll_y = table.scroll_y
    table.clear()
    for key, cells in rows.items():
        table.add_row(*cells, key=key)
    if keep in rows:
        table.move_cursor(row=table.get_row_index(keep), scroll=False)
        table.call_after_refresh(table.scroll_to, y=scroll_y, animate=False)


@dataclass(frozen=True)
class QueueSnapshot:
    """One poll's worth of queue state, read in a thread worker."""

    runs: list[RunView]
    run_id: int | None  # the run whose jobs these are
    jobs: list[JobView]
    running: JobView | None
    preview: PILImage.Image | None
    preview_stamp: tuple[int, float] | None
    log: list[str]
    paused: bool


class QueueScreen(StudioScreen):
    """Runs (newest first) and the highlighted run's jobs, with the live job on the right
    (below the tables on a narrow terminal)."""

    TITLE_TEXT = "Queue"
    DEFAULT_CSS = """
    QueueScreen #queue-body { height: 1fr; }
    QueueScreen #queue-tables { width: 2fr; }
    QueueScreen #queue-tables DataTable { height: 1fr; }
    QueueScreen #job-error { height: auto; max-height: 3; color: $error; padding: 0 1; }
    QueueScreen #queue-detail { width: 1fr; min-width: 30; border-left: solid $panel-lighten-2; }
    QueueScreen #running-info { height: auto; padding: 0 1; }
    QueueScreen #running-preview { height: 10; width: 20; margin: 0 1; }
    QueueScreen #worker-log { height: 1fr; padding: 0 1; color: $text-muted;
                              text-wrap: nowrap; text-overflow: ellipsis; }
    QueueScreen.-narrow #queue-body { layout: vertical; }
    QueueScreen.-narrow #queue-tables { width: 1fr; height: 1fr; }
    QueueScreen.-narrow #queue-detail { width: 1fr; height: auto; max-height: 5;
                                        border-left: none; border-top: solid $panel-lighten-2; }
    QueueScreen.-narrow #queue-detail .wide-only { display: none; }
    """
    BINDINGS = [
        Binding(
            "c",
            "cancel",
            "Cancel",
            id="queue.cancel",
            tooltip="Cancel the highlighted job (jobs table), or the run after asking; "
            "retry undoes it",
        ),
        Binding(
            "r",
            "retry",
            "Retry",
            id="queue.retry",
            tooltip="Queue the highlighted failed or cancelled job (or a run's) again",
        ),
        Binding(
            "plus",
            "priority(1)",
            "Sooner",
            id="queue.raise",
            tooltip="Raise the priority of the highlighted run or job: it runs sooner",
        ),
        Binding(
            "minus",
            "priority(-1)",
            "Later",
            id="queue.lower",
            tooltip="Lower the priority of the highlighted run or job: it runs later",
        ),
        # One key, two actions: the footer names the one that `p` does now.
        Binding(
            "p",
            "pause",
            "Pause",
            id="queue.pause",
            tooltip="Pause the whole queue: the running job finishes, nothing new starts",
        ),
        Binding(
            "p",
            "resume",
            "Resume",
            id="queue.resume",
            tooltip="Resume the paused queue: queued jobs start again",
        ),
        Binding(
            "f",
            "follow",
            "Follow running",
            id="queue.follow",
            tooltip="Show the newest running run again (moving the cursor picks a run instead)",
        ),
        Binding(
            "enter",
            "review",
            "Review",
            id="queue.review",
            tooltip="Open a run waiting in review: pick the outputs that go on",
        ),
        Binding(
            "tab",
            "switch_table",
            "Runs/jobs",
            id="queue.switch",
            show=False,
            tooltip="Move between the runs table and the jobs table",
        ),
        Binding(
            "right_square_bracket",
            "page(1)",
            "Older",
            id="queue.older",
            show=False,
            tooltip="Next page of the focused table (older runs, later jobs)",
        ),
        Binding(
            "left_square_bracket",
            "page(-1)",
            "Newer",
            id="queue.newer",
            show=False,
            tooltip="Previous page of the focused table (newer runs, earlier jobs)",
        ),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.runs: dict[int, RunView] = {}
        self.jobs: dict[int, JobView] = {}
        self.run_id: int | None = None
        # Follow the newest running run until the user picks one.
        self.follow = True
        self.paused = False
        self.runs_offset = 0
        self.jobs_offset = 0
        self.preview_stamp: tuple[int, float] | None = None
        self._poll: Worker[None] | None = None
        self._shown: tuple[object, ...] = ()  # the last snapshot shown, and for which pick

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="queue-body"):
            with Vertical(id="queue-tables"):
                yield Static("Runs", id="runs-title", classes="panel-title")
                yield DataTable(id="runs", cursor_type="row", zebra_stripes=True)
                yield Static("Jobs", id="jobs-title", classes="panel-title")
                yield DataTable(id="jobs", cursor_type="row", zebra_stripes=True)
                yield Static("", id="job-error")
            with Vertical(id="queue-detail"):
                yield Static("Running", classes="panel-title wide-only")
                yield Static("", id="running-info")
                yield image_widget(
                    self.studio.config.graphics, id="running-preview", classes="wide-only"
                )
                yield Static("Worker log", classes="panel-title wide-only")
                yield Static("", id="worker-log", classes="wide-only")

    @property
    def runs_table(self) -> DataTable[object]:
        return self.query_one("#runs", DataTable)

    @property
    def jobs_table(self) -> DataTable[object]:
        return self.query_one("#jobs", DataTable)

    def set_up(self) -> None:
        self.runs_table.add_columns(*RUN_COLUMNS)
        self.jobs_table.add_columns(*job_columns(self.show_worker))
        self.query_one("#job-error").display = False
        self.runs_table.focus()
        self.set_interval(POLL_S, self.tick)
        self.tick()

    def on_screen_resume(self) -> None:
        self.tick()

    def on_resize(self) -> None:
        self.set_class(self.size.width < NARROW_BELOW, "-narrow")
        self.size_preview()
        found = self.query("#jobs")
        if not found:  # a resize before the screen's widgets are mounted
            return
        table = found.first(DataTable)
        if len(table.columns) != len(job_columns(self.show_worker)):
            # The next poll's rows fill the table again (the size is part of `_shown`).
            table.clear(columns=True)
            table.add_columns(*job_columns(self.show_worker))

    @property
    def show_worker(self) -> bool:
        """Whether the jobs table has its worker column: only on a wide screen."""
        return self.size.width >= WORKER_FROM

    @property
    def bar_width(self) -> int:
        """Cells of the progress bars: shorter when the screen is narrow."""
        return 5 if self.size.width < NARROW_BELOW else 10

    def size_preview(self) -> None:
        """Give the preview the cells its aspect needs; taller on tall terminals."""
        # A screen that Textual closed while it was being built has no widgets.
        found = self.query("#running-preview")
        preview = found.first(ImageWidget) if found else None
        image = preview.image if preview is not None else None
        if preview is None or not isinstance(image, PILImage.Image):
            return
        rows = PREVIEW_TALL if self.size.height >= 45 else PREVIEW_ROWS
        preview.styles.height = rows
        preview.styles.width = cell_width(image, rows)

    # -- polling ------------------------------------------------------------------

    def tick(self) -> None:
        """Start a poll unless one is still running or the screen is not shown (a screen
        built ahead of its first show polls once, so it opens with its tables filled)."""
        if self._poll is not None and (self._poll.is_running or not self.is_current):
            return
        self._poll = self.poll(
            self.run_id, self.follow, self.runs_offset, self.jobs_offset, self.preview_stamp
        )

    @work(thread=True, exclusive=True, group="queue-poll")
    def poll(
        self,
        run_id: int | None,
        follow: bool,
        runs_offset: int,
        jobs_offset: int,
        stamp: tuple[int, float] | None,
    ) -> None:
        client = self.client
        runs = client.runs(limit=RUNS_PAGE, offset=runs_offset)
        shown = run_id
        running_run = next((r.id for r in runs if r.status == "running"), None)
        if follow and running_run is not None:
            run_id = running_run
        if run_id not in {r.id for r in runs}:
            run_id = runs[0].id if runs else None
        if run_id != shown:
            jobs_offset = 0
        jobs = client.jobs_page(run_id, limit=JOBS_PAGE, offset=jobs_offset) if run_id else []
        running = client.running_job()
        preview = None
        if running is not None:
            path = client.preview_path(running.id)
            # Decode only a preview the engine has rewritten since the last poll.
            mtime = path.stat().st_mtime if path.exists() else 0.0
            if (running.id, mtime) != stamp:
                stamp = (running.id, mtime)
                preview = load_image(path) if mtime else None
        else:
            stamp = None
        snapshot = QueueSnapshot(
            runs=runs,
            run_id=run_id,
            jobs=jobs,
            running=running,
            preview=preview,
            preview_stamp=stamp,
            log=client.log_tail(LOG_LINES),
            paused=client.summary().state == "paused",
        )
        self.from_worker(self.show, snapshot)

    def show(self, snap: QueueSnapshot) -> None:
        """Apply a poll's snapshot to the widgets."""
        self._take_pending_pick()
        # Nothing running and nothing new since the last poll: the widgets show it already.
        shown, self._shown = self._shown, (snap, self.run_id, self.follow, self.size)
        if shown == self._shown and snap.running is None:
            return
        now = datetime.now(UTC)
        picked = self.runs.get(self.run_id or 0)
        self.runs = {r.id: r for r in snap.runs}
        sync_rows(self.runs_table, {str(r.id): run_cells(r, now) for r in snap.runs})
        if not self.follow and picked is not None and picked.status not in TERMINAL_RUN:
            # The picked run is over: show what runs now.
            self.follow = picked.id in self.runs and self.runs[picked.id].status in TERMINAL_RUN
        want = self.run_id if self.run_id is not None else snap.run_id
        if self.follow:
            running = next((r.id for r in snap.runs if r.status == "running"), None)
            want = running or (self.run_id if self.run_id in self.runs else snap.run_id)
        if want != self.run_id:
            self._show_run(want)  # its jobs come with the next poll
        if self.follow and self.run_id is not None:
            self._put_cursor(self.runs_table, self.run_id)
        self._show_runs_title()
        if snap.run_id == self.run_id:
            self.jobs = {j.id: j for j in snap.jobs}
            bar, worker = self.bar_width, self.show_worker
            sync_rows(
                self.jobs_table, {str(j.id): job_cells(j, now, bar, worker) for j in snap.jobs}
            )
            if self.follow and snap.running is not None and not self.jobs_table.has_focus:
                self._put_cursor(self.jobs_table, snap.running.id)
            self._show_jobs_title()
            self._show_job_error()
        self._show_running(snap, now)
        self.query_one("#worker-log", Static).update(Text(visible_lines("\n".join(snap.log))))
        if snap.paused != self.paused:
            self.paused = snap.paused
            self.refresh_bindings()

    def _take_pending_pick(self) -> None:
        """A runs cursor the user moved, whose highlight has not been handled yet, is a
        pick: a poll that lands before the handler must not put it back on the run
        being followed (a key press would be lost)."""
        key = highlighted_key(self.runs_table)
        followed = str(self.run_id)
        if self.follow and key not in (None, followed) and followed in self.runs_table.rows:
            self.run_highlighted()

    def _put_cursor(self, table: DataTable[object], key: int) -> None:
        """Move `table`'s cursor to row `key`, if shown; the screen's own move, not a pick."""
        if highlighted_key(table) != str(key) and str(key) in table.rows:
            table.move_cursor(row=table.get_row_index(str(key)))

    def _show_runs_title(self) -> None:
        title = self.query_one("#runs-title", Static)
        if not self.runs:
            title.update("Runs: none yet (build a pipeline on 1, or use medialab run FILE)")
            return
        span = f"Runs {self.runs_offset + 1}–{self.runs_offset + len(self.runs)}, newest first"
        following = "following the running run" if self.follow else "f: follow the running run"
        title.update(f"{span} · {following}")

    def _show_jobs_title(self) -> None:
        run = self.runs.get(self.run_id or 0)
        title = self.query_one("#jobs-title", Static)
        if run is None:
            title.update("Jobs")
            return
        shown = self.jobs_table.row_count
        span = f"{self.jobs_offset + 1}–{self.jobs_offset + shown} of " if shown else ""
        title.update(
            Text(
                visible(
                    f"Jobs of {run.ref} {run.name}: {span}{run.jobs_total}, "
                    f"stage {run.stage}/{run.stages}"
                )
            )
        )

    def _show_job_error(self) -> None:
        label = self.query_one("#job-error", Static)
        key = highlighted_key(self.jobs_table)
        job = self.jobs.get(int(key)) if key is not None else None
        error = job.error.strip() if job is not None else ""
        label.display = bool(error)
        label.update(Text(visible_lines(error)))

    def _show_running(self, snap: QueueSnapshot, now: datetime) -> None:
        info = self.query_one("#running-info", Static)
        preview = self.query_one("#running-preview", ImageWidget)
        job = snap.running
        if job is None:
            paused = "\n[b]The queue is paused[/]: p resumes it." if snap.paused else ""
            info.update(f"[dim]Nothing is running.[/]{paused}")
            preview.display = False
            self.preview_stamp = None
            return
        steps = step_text(job)
        left = eta(job, now)
        lines = [
            Text.assemble((job.ref, "bold"), f" of r{job.run_id} · {job.stage}"),
            Text(f"{steps} · ETA {left}" if left else steps),
            progress_bar(job.progress),
        ]
        if job.prompt:
            lines.append(Text(visible(first_line(job.prompt, 120)), style="italic"))
        if snap.paused:
            lines.append(Text("Queue paused; p resumes.", style="bold"))
        info.update(Text("\n").join(lines))
        if snap.preview_stamp != self.preview_stamp:
            self.preview_stamp = snap.preview_stamp
            preview.image = snap.preview
            preview.display = snap.preview is not None
            self.size_preview()

    # -- cursor ---------------------------------------------------------------------

    @on(DataTable.RowHighlighted, "#runs")
    def run_highlighted(self) -> None:
        # Read the cursor now, not the event: rebuilds post stale highlights. The
        # screen's own moves put the cursor on `run_id`: any other row is the user's pick.
        key = highlighted_key(self.runs_table)
        run_id = int(key) if key is not None else None
        if run_id == self.run_id:
            return
        self.follow = False
        self._show_runs_title()
        self._show_run(run_id)
        self.tick()

    def _show_run(self, run_id: int | None) -> None:
        """Show the jobs of `run_id` (they arrive with the next poll)."""
        self.run_id = run_id
        self.jobs_offset = 0
        self.jobs = {}
        self.jobs_table.clear()
        self._show_jobs_title()
        self._show_job_error()

    @on(DataTable.RowHighlighted, "#jobs")
    def job_highlighted(self) -> None:
        self._show_job_error()

    @on(DataTable.RowSelected, "#runs")
    def run_selected(self) -> None:
        self.action_review()

    # -- actions ----------------------------------------------------------------------

    def target(self) -> str | None:
        """The ref the keys act on: the highlighted job when the jobs table has focus."""
        if self.jobs_table.has_focus:
            key = highlighted_key(self.jobs_table)
            if key is None:
                self.notify("No job is highlighted.", severity="warning")
                return None
            return f"j{key}"
        key = highlighted_key(self.runs_table)
        if key is None:
            self.notify("No run is highlighted.", severity="warning")
            return None
        return f"r{key}"

    @work(thread=True, group="queue-action")
    def request(self, call: Callable[[], str]) -> None:
        """Run one client request off the event loop and show its sentence."""
        try:
            sentence = call()
        except MedialabError as exc:
            self.app.call_from_thread(self.notify, str(exc), severity="error")
            return
        self.app.call_from_thread(self.notify, sentence)
        self.app.call_from_thread(self.tick)

    def action_cancel(self) -> None:
        ref = self.target()
        if ref is None:
            return
        run = self.runs.get(int(ref[1:])) if ref.startswith("r") else None
        if run is None:
            # One job: cheap to undo with retry, so nothing is asked.
            self.request(lambda: self.client.cancel(ref))
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.request(lambda: self.client.cancel(ref))

        left = run.jobs_total - run.jobs_done
        self.app.push_screen(
            ConfirmScreen(
                f"Cancel run {run.ref} ({run.name})?\n"
                f"Its unfinished jobs stop ({left} of {run.jobs_total}); r queues them again.",
                yes="Cancel run",
            ),
            answered,
        )

    def action_retry(self) -> None:
        ref = self.target()
        if ref is not None:
            self.request(lambda: self.client.retry(ref))

    def action_priority(self, delta: int) -> None:
        ref = self.target()
        if ref is None:
            return

        def move() -> str:
            priority = self.client.move(ref, delta)
            return f"{ref} moved {'up' if delta > 0 else 'down'}: priority {priority}"

        self.request(move)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # `p` pauses or resumes; only the one that applies is bound (and in the footer).
        if action == "pause":
            return not self.paused
        if action == "resume":
            return self.paused
        return True

    def action_pause(self) -> None:
        self._set_paused(True)

    def action_resume(self) -> None:
        self._set_paused(False)

    def _set_paused(self, paused: bool) -> None:
        # Shown at once: the footer's `p` must do the other thing on the next press.
        self.paused = paused
        self.refresh_bindings()

        def change() -> str:
            self.client.set_paused(paused)
            self.app.call_from_thread(self.studio.poll_state)
            if paused:
                return "Queue paused: the running job finishes, nothing new starts."
            return "Queue resumed."

        self.request(change)

    def action_follow(self) -> None:
        self.follow = True
        self._show_runs_title()
        self.tick()

    def action_review(self) -> None:
        key = highlighted_key(self.runs_table)
        run = self.runs.get(int(key)) if key is not None else None
        if run is None:
            self.notify("No run is highlighted.", severity="warning")
        elif run.status != "review":
            self.notify(
                f"{run.ref} is {run.status}; only runs waiting in review open the review.",
                severity="warning",
            )
        else:
            self.app.push_screen(ReviewScreen(run.id, run.name))

    def action_switch_table(self) -> None:
        other = self.runs_table if self.jobs_table.has_focus else self.jobs_table
        other.focus()

    def action_page(self, direction: int) -> None:
        if self.jobs_table.has_focus:
            if direction > 0 and self.jobs_table.row_count < JOBS_PAGE:
                self.notify("This is the last page of jobs.")
                return
            self.jobs_offset = max(0, self.jobs_offset + direction * JOBS_PAGE)
            self.jobs_table.clear()
        else:
            if direction > 0 and len(self.runs) < RUNS_PAGE:
                self.notify("This is the last page of runs.")
                return
            self.follow = False  # another page of runs: the user is looking for one
            self.runs_offset = max(0, self.runs_offset + direction * RUNS_PAGE)
        self.tick()
