"""Screen 3, Models: the registry with kind, architecture, format, size, hash, safety."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Static

from medialab_tui.client import ModelView
from medialab_tui.errors import MedialabError
from medialab_tui.screens.common import BuilderRequest, StudioScreen, plain_cells
from medialab_tui.text import human_size, visible

KINDS = ("", "checkpoint", "lora", "vae", "controlnet", "upscaler", "embedding", "unknown")
NARROW_BELOW = 100  # columns; below it the details sit under the table
# Most telling first: on a narrow screen the last columns are the ones cut.
COLUMNS = ("name", "kind", "size", "safe", "arch", "format", "hash")


def details(m: ModelView) -> Group:
    """The details panel: the name, then one labelled line per fact; a long value wraps
    in its own column, so every value starts under the one above it."""
    facts = Table.grid(padding=(0, 1))
    facts.add_column(style="bold", no_wrap=True)
    facts.add_column(overflow="fold")
    rows = (
        ("kind", m.kind),
        ("arch", m.arch),
        ("format", m.format),
        ("size", human_size(m.size)),
        ("safe", "yes" if m.safe else "no (pickle: can run code)"),
        ("AutoV2", m.short_hash),
        ("sha256", m.sha256),
        ("path", m.path),
    )
    for label, value in rows:
        # Names and paths come from files on disk: shown, neither markup nor sequences.
        facts.add_row(label, Text(visible(value)))
    parts: list[RenderableType] = [Text(visible(m.name), style="bold"), Text(), facts]
    if m.demo:
        parts += [Text(), Text("random weights: makes abstract noise", style="dim")]
    return Group(*parts)


class ModelsScreen(StudioScreen):
    """Every model the registry knows; filter by kind, rescan, use one in the builder."""

    TITLE_TEXT = "Models"
    DEFAULT_CSS = """
    ModelsScreen #models-body { height: 1fr; }
    ModelsScreen #models-main { height: 1fr; }
    ModelsScreen #models-table { width: 2fr; }
    ModelsScreen #model-details { width: 1fr; min-width: 30; border-left: solid $panel-lighten-2;
                                  padding: 0 1; }
    ModelsScreen #models-empty { display: none; }
    ModelsScreen.-empty #models-empty { display: block; }
    ModelsScreen.-narrow #models-main { layout: vertical; }
    ModelsScreen.-narrow #models-table { width: 1fr; height: 1fr; }
    ModelsScreen.-narrow #model-details { width: 1fr; height: 9; border-left: none;
                                          border-top: solid $panel-lighten-2; }
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
            yield Static("", id="models-empty", classes="hint")
            with Horizontal(id="models-main"):
                yield DataTable(id="models-table", cursor_type="row", zebra_stripes=True)
                yield Static("", id="model-details")

    def set_up(self) -> None:
        self._columns()
        self.load()

    def _columns(self) -> DataTable[object]:
        """The table, with its columns (a load may come back before `set_up` ran)."""
        table = self.query_one(DataTable)
        if not table.columns:
            for name in COLUMNS:
                label = Text(name, justify="right") if name == "size" else name
                table.add_column(label, key=name)
        return table

    def on_resize(self) -> None:
        self.set_class(self.size.width < NARROW_BELOW, "-narrow")

    def on_screen_resume(self) -> None:
        self.load()

    @work(thread=True, exclusive=True, group="models")
    def load(self) -> None:
        models = self.client.models(self.kind)
        self.from_worker(self._show, models)

    def _show(self, models: list[ModelView]) -> None:
        self.models = models
        table = self._columns()
        keep = table.cursor_row
        table.clear()
        for m in models:
            cells = {
                "name": m.name + (" (demo)" if m.demo else ""),
                "kind": m.kind,
                "size": Text(human_size(m.size), justify="right"),
                "safe": "yes" if m.safe else "NO: pickle",
                "arch": m.arch,
                "format": m.format,
                "hash": m.short_hash,
            }
            table.add_row(*plain_cells(*(cells[c] for c in COLUMNS)), key=m.path)
        if models:
            table.move_cursor(row=min(keep, len(models) - 1))
        kind = self.kind or "all kinds"
        self.query_one("#models-filter", Static).update(
            f"{len(models)} models · {kind} · [b]k[/b] kind  [b]r[/b] rescan  "
            "[b]u[/b] use in builder"
        )
        # Said on a line of its own: the filter line above keeps showing the filter.
        self.query_one("#models-empty", Static).update(
            f"No {self.kind} models: [b]k[/b] shows the next kind."
            if self.kind
            else "No models yet: `medialab models demo` writes the demo models, "
            "or add a folder to model_roots in config.toml and press [b]r[/b]."
        )
        self.set_class(not models, "-empty")
        self._details()

    def _current(self) -> ModelView | None:
        table = self.query_one(DataTable)
        if not self.models or table.cursor_row < 0 or table.cursor_row >= len(self.models):
            return None
        return self.models[table.cursor_row]

    @on(DataTable.RowHighlighted)
    def _details(self) -> None:
        m = self._current()
        self.query_one("#model-details", Static).update("" if m is None else details(m))

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
        self.from_worker(self._show, models)

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
