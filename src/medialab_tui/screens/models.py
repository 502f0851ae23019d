"""Screen 3, Models: the registry with kind, architecture, format, size, hash, safety."""

from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.markup import escape
from textual.widgets import DataTable, Static

from medialab_tui.client import ModelView
from medialab_tui.errors import MedialabError
from medialab_tui.screens.common import BuilderRequest, StudioScreen, plain_cells
from medialab_tui.text import human_size, visible

KINDS = ("", "checkpoint", "lora", "vae", "controlnet", "upscaler", "embedding", "unknown")


class ModelsScreen(StudioScreen):
    """Every model the registry knows; filter by kind, rescan, use one in the builder."""

    TITLE_TEXT = "Models"
    DEFAULT_CSS = """
    ModelsScreen #models-body { height: 1fr; }
    ModelsScreen #models-table { width: 2fr; }
    ModelsScreen #model-details { width: 1fr; min-width: 30; border-left: solid $panel-lighten-2;
                                  padding: 0 1; }
    """
    BINDINGS = [
        Binding(
            "k",
            "cycle_kind",
            "Kind",
            id="models.kind",
            tooltip="Show only one kind of model (checkpoint, lora, vae, …)",
        ),
        Binding(
            "r",
            "rescan",
            "Rescan",
            id="models.rescan",
            tooltip="Look for new, changed and removed files under the model roots",
        ),
        Binding(
            "u",
            "use",
            "Use in builder",
            id="models.use",
            tooltip="Set the highlighted model on the builder's selected stage",
        ),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.kind = ""
        self.models: list[ModelView] = []

    def compose_body(self) -> ComposeResult:
        with Vertical(id="models-body"):
            yield Static("", id="models-filter", classes="hint")
            with Horizontal():
                yield DataTable(id="models-table", cursor_type="row", zebra_stripes=True)
                yield Static("", id="model-details")

    def set_up(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("name", "kind", "arch", "format", "size", "hash", "safe")
        self.load()

    def on_screen_resume(self) -> None:
        self.load()

    @work(thread=True, exclusive=True, group="models")
    def load(self) -> None:
        models = self.client.models(self.kind)
        self.app.call_from_thread(self._show, models)

    def _show(self, models: list[ModelView]) -> None:
        self.models = models
        table = self.query_one(DataTable)
        keep = table.cursor_row
        table.clear()
        for m in models:
            table.add_row(
                *plain_cells(
                    m.name + (" (demo)" if m.demo else ""),
                    m.kind,
                    m.arch,
                    m.format,
                    human_size(m.size),
                    m.short_hash,
                    "yes" if m.safe else "NO: pickle",
                ),
                key=m.path,
            )
        if models:
            table.move_cursor(row=min(keep, len(models) - 1))
        kind = self.kind or "all kinds"
        note = "" if models else "  ·  none: `medialab models demo` writes the demo models"
        self.query_one("#models-filter", Static).update(
            f"{len(models)} models · {kind} · [b]k[/b] kind  [b]r[/b] rescan  "
            f"[b]u[/b] use in builder{note}"
        )
        self._details()

    def _current(self) -> ModelView | None:
        table = self.query_one(DataTable)
        if not self.models or table.cursor_row < 0 or table.cursor_row >= len(self.models):
            return None
        return self.models[table.cursor_row]

    @on(DataTable.RowHighlighted)
    def _details(self) -> None:
        m = self._current()

        def shown(value: str) -> str:
            # Names and paths come from files on disk: shown, neither markup nor sequences.
            return escape(visible(value))

        text = (
            ""
            if m is None
            else (
                f"[b]{shown(m.name)}[/b]\n\nkind  {shown(m.kind)}\narch  {shown(m.arch)}\n"
                f"format  {shown(m.format)}\n"
                f"size  {human_size(m.size)}\n"
                f"safe  {'yes' if m.safe else 'no (pickle: can run code)'}\n"
                f"AutoV2  {m.short_hash}\nsha256  {m.sha256}\n\n{shown(m.path)}"
                + ("\n\n[dim]random weights: makes abstract noise[/]" if m.demo else "")
            )
        )
        self.query_one("#model-details", Static).update(text)

    def action_cycle_kind(self) -> None:
        self.kind = KINDS[(KINDS.index(self.kind) + 1) % len(KINDS)]
        self.load()

    def action_rescan(self) -> None:
        self.notify("Scanning the model roots…")
        self._rescan()

    @work(thread=True, exclusive=True, group="models")
    def _rescan(self) -> None:
        try:
            result = self.client.rescan()
        except MedialabError as exc:
            self.app.call_from_thread(self.notify, str(exc), severity="error")
            return
        message = (
            f"{len(result.added)} added, {len(result.updated)} updated, "
            f"{len(result.removed)} removed, {result.unchanged} unchanged"
        )
        self.app.call_from_thread(self.notify, message)
        models = self.client.models(self.kind)
        self.app.call_from_thread(self._show, models)

    def action_use(self) -> None:
        m = self._current()
        if m is None:
            return
        if m.kind != "checkpoint":
            self.notify(
                f"{m.name} is a {m.kind}; the builder's stages take checkpoints now",
                severity="warning",
            )
            return
        self.post_message(BuilderRequest(model=m.name))
