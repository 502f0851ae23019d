"""Screen 2, Queue: runs and their jobs, the running job's live preview, the worker log.

Everything on the screen comes from one poll every 0.5 s in a thread worker; a
poll never starts while the previous one runs, and rows are updated in place (or
rebuilt with the cursor put back on the same key) so the cursor stays where the
user left it.
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
from medialab_tui.screens.common import StudioScreen, plain_cells
from medialab_tui.screens.review import ReviewScreen
from medialab_tui.screens.thumbs import ImageWidget, cell_width, image_widget, load_image
from medialab_tui.text import visible, visible_lines

POLL_S = 0.5
RUNS_PAGE = 100
JOBS_PAGE = 200
LOG_LINES = 14
ERROR_CELL = 48
PREVIEW_ROWS = 10
PREVIEW_TALL = 18

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


def eta(job: JobView, now: datetime) -> str:
    """Time left for a running job, extrapolated from its progress since it started."""
    if job.status != "running":
        return ""
    if job.started_at is None or job.progress <= 0:
        return "…"
    elapsed = (now - aware(job.started_at)).total_seconds()
    return duration(elapsed * (1 - job.progress) / job.progress)


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
        f"{run.stage}/{run.stages}",
        f"{run.jobs_done}/{run.jobs_total}",
        f"{run.priority:+d}" if run.priority else "0",
        created(run.created_at, now),
    )


def job_cells(job: JobView, now: datetime) -> tuple[object, ...]:
    return plain_cells(
        job.ref,
        f"{job.stage_index + 1} {job.stage}",
        status_text(job.status),
        progress_bar(1.0 if job.status == "succeeded" else job.progress),
        eta(job, now),
        str(job.attempts),
        first_line(job.error),
    )


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
    run_id: int | None
    jobs: list[JobView]
    running: JobView | None
    preview: PILImage.Image | None
    preview_stamp: tuple[int, float] | None
    log: list[str]
    paused: bool


class QueueScreen(StudioScreen):
    """Runs (newest first) and the highlighted run's jobs, with the live job on the right."""

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
    """
    BINDINGS = [
        Binding(
            "c",
            "cancel",
            "Cancel",
            id="queue.cancel",
            tooltip="Cancel the highlighted job (jobs table) or run; retry undoes it",
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
        Binding(
            "p",
            "toggle_pause",
            "Pause",
            id="queue.pause",
            tooltip="Pause the whole queue (the running job finishes first) or resume it",
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
        self.runs_offset = 0
        self.jobs_offset = 0
        self.preview_stamp: tuple[int, float] | None = None
        self._poll: Worker[None] | None = None

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="queue-body"):
            with Vertical(id="queue-tables"):
                yield Static("Runs", id="runs-title", classes="panel-title")
                yield DataTable(id="runs", cursor_type="row", zebra_stripes=True)
                yield Static("Jobs", id="jobs-title", classes="panel-title")
                yield DataTable(id="jobs", cursor_type="row", zebra_stripes=True)
                yield Static("", id="job-error")
            with Vertical(id="queue-detail"):
                yield Static("Running", classes="panel-title")
                yield Static("", id="running-info")
                yield image_widget(self.studio.config.graphics, id="running-preview")
                yield Static("Worker log", classes="panel-title")
                yield Static("", id="worker-log")

    @property
    def runs_table(self) -> DataTable[object]:
        return self.query_one("#runs", DataTable)

    @property
    def jobs_table(self) -> DataTable[object]:
        return self.query_one("#jobs", DataTable)

    def set_up(self) -> None:
        self.runs_table.add_columns("id", "name", "status", "stage", "done", "prio", "created")
        self.jobs_table.add_columns("id", "stage", "status", "progress", "ETA", "tries", "error")
        self.query_one("#job-error").display = False
        self.runs_table.focus()
        self.set_interval(POLL_S, self.tick)
        self.tick()

    def on_screen_resume(self) -> None:
        self.tick()

    def on_resize(self) -> None:
        self.size_preview()

    def size_preview(self) -> None:
        """Give the preview the cells its aspect needs; taller on tall terminals."""
        preview = self.query_one("#running-preview", ImageWidget)
        image = preview.image
        if not isinstance(image, PILImage.Image):
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
        self._poll = self.poll(self.run_id, self.runs_offset, self.jobs_offset, self.preview_stamp)

    @work(thread=True, exclusive=True, group="queue-poll")
    def poll(
        self,
        run_id: int | None,
        runs_offset: int,
        jobs_offset: int,
        stamp: tuple[int, float] | None,
    ) -> None:
        client = self.client
        runs = client.runs(limit=RUNS_PAGE, offset=runs_offset)
        if run_id not in {r.id for r in runs}:
            run_id = runs[0].id if runs else None
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
        self.app.call_from_thread(self.show, snapshot)

    def show(self, snap: QueueSnapshot) -> None:
        """Apply a poll's snapshot to the widgets."""
        now = datetime.now(UTC)
        self.runs = {r.id: r for r in snap.runs}
        sync_rows(self.runs_table, {str(r.id): run_cells(r, now) for r in snap.runs})
        first = self.runs_offset + 1
        self.query_one("#runs-title", Static).update(
            f"Runs {first}–{self.runs_offset + len(snap.runs)}, newest first"
            if snap.runs
            else "Runs: none yet (build a pipeline on 1, or use medialab run FILE)"
        )
        if self.run_id is None:
            self.run_id = snap.run_id
        if snap.run_id == self.run_id:
            self.jobs = {j.id: j for j in snap.jobs}
            sync_rows(self.jobs_table, {str(j.id): job_cells(j, now) for j in snap.jobs})
            self._show_jobs_title()
            self._show_job_error()
        self._show_running(snap, now)
        self.query_one("#worker-log", Static).update(Text(visible_lines("\n".join(snap.log))))

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
        steps = f"step {job.step}/{job.total_steps}" if job.total_steps else "starting"
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
        # Read the cursor now, not the event: rebuilds post stale highlights.
        key = highlighted_key(self.runs_table)
        run_id = int(key) if key is not None else None
        if run_id == self.run_id:
            return
        self.run_id = run_id
        self.jobs_offset = 0
        self.jobs = {}
        self.jobs_table.clear()
        self._show_jobs_title()
        self._show_job_error()
        self.tick()

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
        if ref is not None:
            self.request(lambda: self.client.cancel(ref))

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

    def action_toggle_pause(self) -> None:
        def toggle() -> str:
            paused = self.client.summary().state != "paused"
            self.client.set_paused(paused)
            self.app.call_from_thread(self.studio.poll_state)
            if paused:
                return "Queue paused: the running job finishes, nothing new starts."
            return "Queue resumed."

        self.request(toggle)

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
            self.runs_offset = max(0, self.runs_offset + direction * RUNS_PAGE)
        self.tick()
