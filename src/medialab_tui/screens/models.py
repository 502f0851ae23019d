"""Screen 3, Models: the registry grouped by family, with kind, tags, size, safety,
root, architecture, format and hash; filter by kind or tag, tag and note models,
rescan, use one in the builder."""

from __future__ import annotations

from collections.abc import Callable

from rich.cells import cell_len
from rich.console import Group as RichGroup
from rich.console import RenderableType
from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.markup import escape
from textual.screen import ModalScreen
from textual.widgets import DataTable, Input, Static

from medialab_tui.client import ModelView
from medialab_tui.engine.families import family_of
from medialab_tui.engine.roots import Root
from medialab_tui.errors import InputError, MedialabError
from medialab_tui.screens.builder_form import PickScreen
from medialab_tui.screens.common import BuilderRequest, StudioScreen, plain_cells
from medialab_tui.screens.models_groups import Group, grouped, root_label, root_of
from medialab_tui.store.labels import clean_note, clean_tags
from medialab_tui.text import human_size, visible

KINDS = (
    "",
    "checkpoint",
    "lora",
    "vae",
    "controlnet",
    "video",
    "upscaler",
    "interpolator",
    "embedding",
    "unknown",
)
NARROW_BELOW = 100  # columns; below it the details sit under the table
# Most telling first: on a narrow screen the last columns are the ones cut.
COLUMNS = ("name", "kind", "size", "tags", "safe", "root", "arch", "format", "hash")
# The tags column's width in cells; longer tags end in "…" (the details show them all).
MIN_TAGS, MAX_TAGS = 8, 28
POLL_S = 2.0  # new files the engine host's watch registers show up by themselves
INDENT = "  "  # a model's name sits under its group's heading


def details(m: ModelView, root: Root | None) -> RichGroup:
    """The details panel: the name, then one labelled line per fact; a long value wraps
    in its own column, so every value starts under the one above it."""
    facts = Table.grid(padding=(0, 1))
    facts.add_column(style="bold", no_wrap=True)
    facts.add_column(overflow="fold")
    family = family_of(m.arch)
    # A person's own words first, then what the table may not show (it cuts its last
    # columns when narrow, and the details then sit under it, a few lines high).
    rows = [
        ("tags", ", ".join(m.tags) or "none (t adds)"),
        ("note", m.note or "none (n adds)"),
        ("family", family.title if family is not None else "none"),
        ("root", str(root.path) if root is not None else "not under a model root now"),
    ]
    if root is not None and root.source not in ("data", "model_roots"):
        rows.append(("from", root.source or "no longer a configured root"))
    rows += [
        ("kind", m.kind),
        ("arch", m.arch),
        ("format", m.format),
        ("size", human_size(m.size)),
        ("safe", "yes" if m.safe else "no (pickle: can run code)"),
        ("AutoV2", "being computed" if m.hash_pending else m.short_hash),
        ("sha256", "being computed" if m.hash_pending else m.sha256),
        ("path", m.path),
    ]
    for label, value in rows:
        # Names, paths, tags and notes come from files and people: shown, neither
        # markup nor terminal sequences.
        facts.add_row(label, Text(visible(value)))
    parts: list[RenderableType] = [Text(visible(m.label), style="bold"), facts]
    if m.demo:
        parts += [Text(), Text("random weights: makes abstract noise", style="dim")]
    return RichGroup(*parts)


def heading(group: Group) -> tuple[Text, Text]:
    """A group's row in the table: its title, and how many models it holds under kind."""
    count = len(group.models)
    return Text(group.title, style="bold"), Text(
        f"{count} model{'s' if count != 1 else ''}", style="dim"
    )


class LabelPrompt(ModalScreen[str | None]):
    """Edit one line (a model's tags or note): enter saves, an empty line clears,
    escape leaves it as it was. A value `check` refuses is said under the field."""

    DEFAULT_CSS = """
    LabelPrompt { align: center middle; }
    LabelPrompt > Vertical { width: 72; max-width: 100%; height: auto; border: round $accent;
                             background: $surface; padding: 1 2; }
    LabelPrompt Input { margin-top: 1; }
    LabelPrompt #label-error { color: $error; }
    """
    BINDINGS = [Binding("escape", "cancel", "Cancel", id="label.cancel")]

    def __init__(self, question: str, initial: str, check: Callable[[str], object]) -> None:
        super().__init__()
        self.question = question
        self.initial = initial
        self.check = check

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(Text(visible(self.question)))
            yield Input(self.initial, id="label-value", select_on_focus=False)
            yield Static("", id="label-error")
            yield Static("[dim]enter save · empty clears · esc cancel[/]")

    def on_mount(self) -> None:
        self.query_one(Input).action_end()

    @on(Input.Submitted)
    def _save(self, event: Input.Submitted) -> None:
        try:
            self.check(event.value)
        except InputError as exc:
            self.query_one("#label-error", Static).update(Text(visible(str(exc))))
            return
        self.dismiss(event.value)

    def action_cancel(self) -> None:
        self.dismiss(None)


class ModelsScreen(StudioScreen):
    """Every model the registry knows, grouped by family; filter by kind or tag, tag
    and note a model, rescan, use one in the builder."""

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
            "u",
            "use",
            "Use in builder",
            id="models.use",
            tooltip="Set the highlighted model on the builder's selected stage",
        ),
        Binding(
            "t",
            "edit_tags",
            "Tags",
            id="models.tags",
            tooltip="Edit the highlighted model's tags (words or phrases, comma-separated)",
        ),
        Binding(
            "n",
            "edit_note",
            "Note",
            id="models.note",
            tooltip="Edit the highlighted model's note",
        ),
        Binding(
            "f",
            "filter_tag",
            "Tag filter",
            id="models.tag_filter",
            tooltip="Show only the models with one tag (or every model again)",
        ),
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
    ]

    def __init__(self) -> None:
        super().__init__()
        self.kind = ""
        self.tag = ""
        self.models: list[ModelView] = []
        self.groups: list[Group] = []
        # One entry per table row: the model, or None for a group's heading.
        self.rows: list[ModelView | None] = []
        self.roots: list[Root] = []
        self._last_row = 0

    def compose_body(self) -> ComposeResult:
        with Vertical(id="models-body"):
            yield Static("", id="models-filter", classes="hint")
            yield Static("", id="models-empty", classes="hint")
            with Horizontal(id="models-main"):
                yield DataTable(id="models-table", cursor_type="row", zebra_stripes=True)
                yield Static("", id="model-details")

    def set_up(self) -> None:
        self.load(roots=True)
        self.set_interval(POLL_S, self._poll)

    def on_resize(self) -> None:
        self.set_class(self.size.width < NARROW_BELOW, "-narrow")
        # The tags column takes the room the columns before it leave, once laid out.
        self.call_after_refresh(self._fill)

    def on_screen_resume(self) -> None:
        self.load(roots=True)

    def _poll(self) -> None:
        # Never two reads at once; a listing asked again while nothing was committed
        # costs one pragma.
        if self.is_current and not any(w.is_running and w.group == "models" for w in self.workers):
            self._read(False)

    def load(self, roots: bool = False) -> None:
        """Read the registry (and, when asked, the model roots) and show what changed."""
        self._read(roots)

    @work(thread=True, exclusive=True, group="models")
    def _read(self, roots: bool) -> None:
        found = self.client.model_roots() if roots else None
        asked = (self.kind, self.tag)
        models = self.client.models(*asked)
        self.from_worker(self._show, models, found, asked)

    def _show(
        self,
        models: list[ModelView],
        roots: list[Root] | None = None,
        asked: tuple[str, str] | None = None,
    ) -> None:
        if asked is not None and asked != (self.kind, self.tag):
            return  # read for a filter changed since: the newer read shows its own
        if roots is not None:
            self.roots = roots
        elif models == self.models and self.rows:
            return  # a poll that found nothing new: the cursor and the table stay
        self.models = models
        self.groups = grouped(models)
        self._fill()
        self._filter_line()
        self.set_class(not models, "-empty")

    def _fill(self) -> None:
        """Put the groups in the table, keeping the highlighted model highlighted."""
        table = self.query_one(DataTable)
        current = self._current()
        headings = {g.key: heading(g) for g in self.groups}
        cells = {m.name: self._cells(m) for g in self.groups for m in g.models}
        tags_width = self._tags_width(table, [*headings.values(), *cells.values()])
        table.clear(columns=True)
        for name in COLUMNS:
            label = Text(name, justify="right") if name == "size" else name
            table.add_column(label, key=name, width=tags_width if name == "tags" else None)
        self.rows = []
        for group in self.groups:
            table.add_row(*headings[group.key], key=f"group:{group.key}")
            self.rows.append(None)
            for m in group.models:
                table.add_row(*plain_cells(*cells[m.name]), key=m.name)
                self.rows.append(m)
        if self.rows:
            names = [m.name if m else None for m in self.rows]
            keep = current.name if current is not None else None
            row = names.index(keep) if keep in names else min(self._last_row, len(self.rows) - 1)
            self._last_row = row
            table.move_cursor(row=row)
        self._details()

    @staticmethod
    def _tags_width(table: DataTable[object], rows: list[tuple[object, ...]]) -> int:
        """The tags column's width: what the table has left after the columns before it
        (at least `MIN_TAGS`, at most `MAX_TAGS`, enough for the longest tags)."""
        before = COLUMNS.index("tags")
        used = 0
        for index in range(before):
            texts = [row[index] for row in rows if index < len(row)]
            widest = max([len(COLUMNS[index]), *(cell_len(str(t)) for t in texts)])
            used += widest + 2 * table.cell_padding
        tags = [cell_len(str(row[before])) for row in rows if len(row) > before]
        wanted = max([len("tags"), *tags])
        room = table.scrollable_content_region.width - used - 2 * table.cell_padding
        return max(MIN_TAGS, min(MAX_TAGS, wanted, room))

    def _cells(self, m: ModelView) -> tuple[object, ...]:
        cells: dict[str, object] = {
            "name": INDENT + m.name,
            "kind": m.kind,
            "tags": Text(visible(", ".join(m.tags)), no_wrap=True, overflow="ellipsis"),
            "size": Text(human_size(m.size), justify="right"),
            "safe": "yes" if m.safe else "NO: pickle",
            "root": root_label(root_of(m, self.roots, self.studio.data.root)),
            "arch": m.arch,
            "format": m.format,
            "hash": "hashing…" if m.hash_pending else m.short_hash,
        }
        return tuple(cells[c] for c in COLUMNS)

    def _filter_line(self) -> None:
        count = len(self.models)
        shown = [f"{count} model{'s' if count != 1 else ''}"]
        if self.groups:
            shown.append(f"{len(self.groups)} group{'s' if len(self.groups) != 1 else ''}")
        shown.append(self.kind or "all kinds")
        if self.tag:
            shown.append(f"tag [b]{escape(visible(self.tag))}[/b]")
        self.query_one("#models-filter", Static).update(
            " · ".join(shown) + "  ·  [b]k[/b] kind  [b]f[/b] tag"
        )
        # Said on a line of its own: the filter line above keeps showing the filter.
        if self.tag:
            empty = (
                f"No {escape(self.kind)} models tagged {escape(visible(self.tag))}: "
                "[b]f[/b] picks another tag."
            )
        elif self.kind:
            empty = f"No {escape(self.kind)} models: [b]k[/b] shows the next kind."
        else:
            empty = (
                "No models yet: `medialab models demo` writes the demo models, "
                "or add a folder to model_roots in config.toml and press [b]r[/b]."
            )
        self.query_one("#models-empty", Static).update(empty)

    def _current(self) -> ModelView | None:
        table = self.query_one(DataTable)
        row = table.cursor_row
        return self.rows[row] if 0 <= row < len(self.rows) else None

    @on(DataTable.RowHighlighted)
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        row = event.cursor_row
        if row != event.data_table.cursor_row:
            return  # the cursor moved on since (a refill): its own event follows
        if 0 <= row < len(self.rows) and self.rows[row] is None:
            # A heading is passed over in the direction the cursor went.
            step = -1 if row < self._last_row and row > 0 else 1
            target = row + step if row + step < len(self.rows) else row - 1
            if 0 <= target < len(self.rows) and target != row:
                self._last_row = row
                event.data_table.move_cursor(row=target)
                return
        self._last_row = row
        self._details()

    def _details(self) -> None:
        m = self._current()
        panel = self.query_one("#model-details", Static)
        panel.update("" if m is None else details(m, root_of(m, self.roots, self.studio.data.root)))

    # -- filters ---------------------------------------------------------------------

    def action_cycle_kind(self) -> None:
        self.kind = KINDS[(KINDS.index(self.kind) + 1) % len(KINDS)]
        self.load()

    def action_filter_tag(self) -> None:
        self._pick_tag()

    @work(thread=True, exclusive=True, group="models-tags")
    def _pick_tag(self) -> None:
        tags = self.client.model_tags()
        self.from_worker(self._ask_tag, tags)

    def _ask_tag(self, tags: list[tuple[str, int]]) -> None:
        if not tags:
            self.notify("No model has a tag yet: t tags the highlighted one")
            return
        options = [("", "every model (no tag filter)")]
        options += [(tag, escape(visible(f"{tag}  ({count})"))) for tag, count in tags]
        self.app.push_screen(PickScreen("Show the models tagged:", options), self._tag_picked)

    def _tag_picked(self, tag: str | None) -> None:
        if tag is not None:
            self.tag = tag
            self.load()

    # -- labels ----------------------------------------------------------------------

    def action_edit_tags(self) -> None:
        m = self._current()
        if m is None:
            return
        question = f"Tags of {m.name} (comma-separated):"
        self.app.push_screen(
            LabelPrompt(question, ", ".join(m.tags), lambda value: clean_tags([value])),
            lambda value: self._label(m.name, tags=value),
        )

    def action_edit_note(self) -> None:
        m = self._current()
        if m is None:
            return
        self.app.push_screen(
            LabelPrompt(f"Note on {m.name}:", m.note, clean_note),
            lambda value: self._label(m.name, note=value),
        )

    def _label(self, name: str, *, tags: str | None = None, note: str | None = None) -> None:
        if tags is None and note is None:
            return  # cancelled
        self._save_label(name, None if tags is None else [tags], note)

    @work(thread=True, group="models-label")
    def _save_label(self, name: str, tags: list[str] | None, note: str | None) -> None:
        try:
            self.client.label_model(name, tags=tags, note=note)
        except MedialabError as exc:
            self.app.call_from_thread(
                self.notify, visible(str(exc)), severity="error", markup=False
            )
            return
        asked = (self.kind, self.tag)
        self.from_worker(self._show, self.client.models(*asked), None, asked)

    # -- registry --------------------------------------------------------------------

    def action_rescan(self) -> None:
        self.notify("Scanning the model roots…")
        self._rescan()

    @work(thread=True, exclusive=True, group="models")
    def _rescan(self) -> None:
        try:
            result = self.client.rescan()
        except MedialabError as exc:
            self.app.call_from_thread(
                self.notify, visible(str(exc)), severity="error", markup=False
            )
            return
        message = (
            f"{len(result.added)} added, {len(result.updated)} updated, "
            f"{len(result.removed)} removed, {result.unchanged} unchanged"
        )
        self.app.call_from_thread(self.notify, message)
        roots, asked = self.client.model_roots(), (self.kind, self.tag)
        self.from_worker(self._show, self.client.models(*asked), roots, asked)

    def action_use(self) -> None:
        m = self._current()
        if m is None:
            return
        if m.kind != "checkpoint":
            self.notify(
                visible(f"{m.name} is a {m.kind}; the builder's stages take checkpoints now"),
                severity="warning",
                markup=False,
            )
            return
        self.post_message(BuilderRequest(model=m.name))
