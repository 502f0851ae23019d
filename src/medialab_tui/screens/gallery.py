"""Gallery (4): browse every artifact, page by page, as a list or as thumbnails.

Only one page of artifacts is ever loaded, so it stays fast at 100,000 rows: the
cursor running off either end of the page fetches the neighbouring one. A
poll of the filtered count notices new artifacts and reloads the page around the
highlighted one, so the cursor stays where it was.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

from PIL import Image as PILImage
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Container, Horizontal, Vertical
from textual.css.query import NoMatches
from textual.events import Resize
from textual.timer import Timer
from textual.widgets import ContentSwitcher, DataTable, Input, Select, Static
from textual.worker import Worker, get_current_worker

from medialab_tui.client import GALLERY_DAYS, GALLERY_SOURCES, ArtifactView, GalleryQuery
from medialab_tui.errors import InputError, MedialabError
from medialab_tui.screens.common import BuilderRequest, StudioScreen
from medialab_tui.screens.compare import CompareScreen, VideoCompareScreen
from medialab_tui.screens.dialogs import ConfirmScreen
from medialab_tui.screens.gallery_dialogs import ExportChoice, ExportScreen, PathScreen
from medialab_tui.screens.gallery_widgets import (
    GalleryTable,
    GridHighlighted,
    GridSelected,
    Inspector,
    PageRequest,
    ThumbGrid,
    VideoDetails,
    caption,
    video_clip,
)
from medialab_tui.screens.playback import Clip
from medialab_tui.screens.player import PlayerScreen
from medialab_tui.screens.thumbs import load_preview
from medialab_tui.text import visible

PAGE_SIZE = 100
POLL_S = 1.5
SEARCH_DELAY_S = 0.3
INSPECT_DELAY_S = 0.08  # holding an arrow key should not decode every image it passes
NARROW_BELOW = 140  # columns; below it the inspector sits under the list
KINDS = ("", "image", "video", "text")
THUMB_CACHE = 600
DETAILS_CACHE = 200  # videos opened for the inspector (codec, file size)

DAYS_LABELS = {0: "any time", 1: "today", 7: "this week", 30: "this month"}
SOURCE_LABELS = {"": "any source", "here": "made here", "imported": "imported"}


def playable_clip(view: ArtifactView) -> Clip:
    """The clip to play for a video artifact: its rate and frame count from its
    metadata, else from opening the file (blocking: call it from a thread worker).

    Raises MedialabError (one sentence naming the file) when the file is gone or is
    no longer a readable video.
    """
    path = Path(view.path)
    if not path.is_file():
        raise InputError(f"the file of {view.ref} is missing: {path}")
    return video_clip(view) or file_clip(path, caption(view))


def file_clip(path: Path, caption: str) -> Clip:
    """The clip of a video file, by opening it (an input clip has no medialab
    metadata); BadVideo when it cannot be read. Blocking: call it from a thread worker."""
    from medialab_tui.store.videos import probe_video

    info = probe_video(path)
    return Clip(path, info.fps, info.frames, caption)


def import_summary(results: list[Any]) -> str:
    """`Imported 3 images (2 a1111, 1 comfyui); 1 imported before; 2 skipped.`"""
    imported = [r for r in results if r.status == "imported"]
    if not imported and not any(r.status == "duplicate" for r in results):
        return "Nothing to import: no PNG, JPEG or WebP images there."
    sources: dict[str, int] = {}
    for r in imported:
        sources[r.source] = sources.get(r.source, 0) + 1
    said = ", ".join(f"{n} {source}" for source, n in sorted(sources.items()))
    parts = [f"Imported {len(imported)} image{'s' if len(imported) != 1 else ''}"]
    if said:
        parts[0] += f" ({said})"
    again = sum(r.status == "duplicate" for r in results)
    skipped = sum(r.status == "skipped" for r in results)
    if again:
        parts.append(f"{again} imported before")
    if skipped:
        parts.append(f"{skipped} skipped")
    return "; ".join(parts) + "."


def _left(hidden: int, before: str = " ") -> str:
    """What a batch action says of the marks the filters hide (it leaves them alone)."""
    if not hidden:
        return ""
    those = "1 more marked artifact is" if hidden == 1 else f"{hidden:,} more marked artifacts are"
    return f"{before}({those} hidden by the filters and left alone.)"


class GalleryScreen(StudioScreen):
    """Every artifact, filtered and sorted, with an inspector for the highlighted one."""

    TITLE_TEXT = "Gallery"
    DEFAULT_CSS = """
    GalleryScreen #gallery-filters { height: 3; }
    GalleryScreen #gallery-search { width: 1fr; }
    GalleryScreen #gallery-model { width: 30; }
    GalleryScreen #gallery-views { height: 1fr; }
    GalleryScreen #gallery-status { height: auto; }
    GalleryScreen #gallery-range { width: 1fr; min-width: 16; }
    GalleryScreen #gallery-chips { width: auto; }
    GalleryScreen #gallery-empty { display: none; }
    GalleryScreen.-empty #gallery-empty { display: block; }
    GalleryScreen #gallery-body { layout: horizontal; height: 1fr; }
    GalleryScreen #gallery-main { width: 2fr; }
    GalleryScreen #gallery-inspector { width: 1fr; min-width: 40; }
    GalleryScreen.-narrow #gallery-body { layout: vertical; }
    GalleryScreen.-narrow #gallery-main { width: 1fr; height: 1fr; }
    GalleryScreen.-narrow #gallery-inspector { width: 1fr; height: 45%; max-height: 14;
                                               layout: horizontal; }
    GalleryScreen.-cramped #gallery-status { layout: vertical; }
    GalleryScreen.-cramped #gallery-chips { width: 1fr; }
    GalleryScreen.-narrow Inspector > #inspector-preview { width: 26; height: 1fr; }
    """
    # The footer shows the first of these that fit: most used first.
    BINDINGS = [
        Binding(
            "p,enter",
            "play",
            "Play",
            id="gallery.play",
            tooltip="Play the highlighted video in the terminal (shown only on a video)",
        ),
        Binding(
            "b",
            "settings_to_builder",
            "Settings to builder",
            id="gallery.settings_to_builder",
            tooltip="Open the pipeline that made this artifact (its stages, prompt and seed) "
            "in the builder",
        ),
        Binding(
            "i",
            "image_to_builder",
            "Image to builder",
            id="gallery.image_to_builder",
            tooltip="Open the builder with this image as an input",
        ),
        Binding(
            "slash",
            "focus_search",
            "Search",
            id="gallery.search",
            tooltip="Type to keep only artifacts whose prompt contains the text",
        ),
        Binding(
            "space",
            "toggle_mark",
            "Mark",
            id="gallery.mark",
            tooltip="Mark or unmark the highlighted artifact (and move on): star, delete "
            "and export then act on every marked one",
        ),
        Binding(
            "s",
            "star",
            "Star",
            id="gallery.star",
            tooltip="Star or unstar the marked artifacts, else the highlighted one",
        ),
        Binding(
            "R",
            "rerun",
            "Re-run",
            id="gallery.rerun",
            tooltip="Queue a new run that repeats the job that made this artifact",
        ),
        Binding(
            "c",
            "compare",
            "Compare",
            id="gallery.compare",
            tooltip="Before/after: this image beside the image its stage started from; an "
            "interpolated video plays beside its source, in step",
        ),
        Binding(
            "d",
            "delete",
            "Delete",
            id="gallery.delete",
            tooltip="Delete the marked artifacts, else the highlighted one, after asking once; "
            "their files go to trash/",
        ),
        Binding(
            "x",
            "export",
            "Export",
            id="gallery.export",
            tooltip="Copy the marked artifacts, else the highlighted one, with their "
            "metadata into a folder or a .zip file (nothing there is replaced)",
        ),
        Binding(
            "I",
            "import",
            "Import",
            id="gallery.import",
            tooltip="Copy images made by other tools (A1111, ComfyUI, InvokeAI, SwarmUI) "
            "from a file or folder into the gallery, their metadata read",
        ),
        Binding(
            "y",
            "copy_prompt",
            "Copy prompt",
            id="gallery.copy_prompt",
            tooltip="Copy the highlighted artifact's prompt to the clipboard (OSC 52)",
        ),
        Binding(
            "g",
            "toggle_grid",
            "Grid/list",
            id="gallery.grid",
            tooltip="Switch between the list and a grid of thumbnails",
        ),
        Binding(
            "Y",
            "copy_seed",
            "Copy seed",
            id="gallery.copy_seed",
            show=False,
            tooltip="Copy the highlighted artifact's seed to the clipboard (OSC 52)",
        ),
        Binding(
            "u",
            "unmark_all",
            "Unmark all",
            id="gallery.unmark",
            show=False,
            tooltip="Clear every mark",
        ),
        Binding(
            "e",
            "cycle_source",
            "Source",
            id="gallery.source",
            show=False,
            tooltip="Show everything, only what was made here, only imported images, "
            "or only those of one tool (a1111, comfyui, invokeai, swarmui…)",
        ),
        Binding(
            "k",
            "cycle_kind",
            "Kind",
            id="gallery.kind",
            show=False,
            tooltip="Show all artifacts, or only images, videos or texts",
        ),
        Binding(
            "t",
            "cycle_stage",
            "Stage",
            id="gallery.stage",
            show=False,
            tooltip="Show all stages, or only one stage type",
        ),
        Binding(
            "m",
            "focus_model",
            "Model",
            id="gallery.model",
            show=False,
            tooltip="Choose the model whose artifacts to show",
        ),
        Binding(
            "f",
            "toggle_starred",
            "Starred only",
            id="gallery.starred",
            show=False,
            tooltip="Show only starred artifacts, or all of them",
        ),
        Binding(
            "w",
            "cycle_days",
            "When",
            id="gallery.when",
            show=False,
            tooltip="Show what was made today, this week, this month, or any time",
        ),
        Binding(
            "o",
            "toggle_order",
            "Newest/oldest",
            id="gallery.order",
            show=False,
            tooltip="Sort newest first or oldest first",
        ),
        Binding(
            "right_square_bracket",
            "page(1)",
            "Next page",
            id="gallery.next_page",
            show=False,
            tooltip=f"Load the next {PAGE_SIZE} artifacts",
        ),
        Binding(
            "left_square_bracket",
            "page(-1)",
            "Previous page",
            id="gallery.prev_page",
            show=False,
            tooltip=f"Load the previous {PAGE_SIZE} artifacts",
        ),
        Binding(
            "escape",
            "focus_list",
            "Back to list",
            id="gallery.focus_list",
            show=False,
            tooltip="Leave the search box or the model filter",
        ),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.gallery_query = GalleryQuery()
        self.page: list[ArtifactView] = []
        self.page_offset = 0
        self.total = 0
        self.cursor = 0
        self.loaded = False
        self.shown_before = False  # a first show opens on the newest artifact
        self.stages: list[str] = []
        self.grid_mode = False
        self._poll_worker: Worker[None] | None = None
        # Pages asked for so far, and the ask whose page is on show: a page on its way
        # brings its own total, and a count begun before the latest ask is stale.
        self._reloads = 0
        self._shown_reload = 0
        self._search_timer: Timer | None = None
        self._inspect_timer: Timer | None = None
        self._thumbs: dict[int, PILImage.Image | None] = {}
        self._thumbs_lock = threading.Lock()
        self._details: dict[int, VideoDetails] = {}
        self._playable = False  # the highlighted artifact is a video: `p` shows
        self.marked: set[int] = set()  # artifact ids marked with space, on any page
        # The marks the filters hide (as of the page shown): batch actions leave them alone.
        self.hidden_marks: set[int] = set()
        self.importing = False

    @property
    def graphics(self) -> str:
        return self.studio.config.graphics

    @property
    def current(self) -> ArtifactView | None:
        """The highlighted artifact, if any."""
        return self.page[self.cursor] if 0 <= self.cursor < len(self.page) else None

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="gallery-filters"):
            yield Input(placeholder="search prompts  ( / )", id="gallery-search")
            yield Select[str]([], prompt="all models  (m)", id="gallery-model")
        with Container(id="gallery-body"):
            with Vertical(id="gallery-main"):
                yield Static("", id="gallery-empty", classes="hint")
                with ContentSwitcher(initial="gallery-table", id="gallery-views"):
                    yield GalleryTable(id="gallery-table", cursor_type="row", zebra_stripes=True)
                    yield ThumbGrid(id="gallery-grid")
                with Horizontal(id="gallery-status"):
                    yield Static("loading…", id="gallery-range", classes="hint")
                    yield Static(id="gallery-chips", classes="hint")
            yield Inspector(self.graphics, id="gallery-inspector")

    def set_up(self) -> None:
        self.query_one(GalleryTable).marked = self.marked
        self._show_chips()
        self.query_one(GalleryTable).focus()
        self.reload()
        self._load_facets()
        self.set_interval(POLL_S, self._poll)

    def on_screen_resume(self) -> None:
        if not self.is_current:  # Textual resumes a screen built ahead, off screen
            return
        first, self.shown_before = not self.shown_before, True
        if not self.loaded:
            return
        if first:
            # Built ahead while hidden: nobody picked the row its cursor is on, and
            # what arrived since goes above it. Open on the newest, like a fresh build.
            self.reload(offset=0, row=0)
        else:
            self.reload(keep=self.current.id if self.current else None)

    def on_resize(self, event: Resize) -> None:
        self.set_class(event.size.width < NARROW_BELOW, "-narrow")
        self._fit_status()

    def _fit_status(self) -> None:
        """The filter chips go on a line of their own (wrapped there when they must)
        when they and the row range do not fit side by side: nothing is cut."""
        width = self.size.width
        if not width:
            return
        # The list's width: all of it when narrow, else two thirds (the inspector 1fr).
        main = width if width < NARROW_BELOW else width * 2 // 3
        try:
            parts = [self.query_one(f"#gallery-{part}", Static) for part in ("range", "chips")]
        except NoMatches:
            return  # a resize before the body is mounted: fitted once its text is set
        used = sum(Text.from_markup(str(part.content)).cell_len for part in parts)
        self.set_class(used + 2 > main, "-cramped")

    # -- loading pages -----------------------------------------------------------------

    def reload(
        self, *, keep: int | None = None, offset: int | None = None, row: int | None = None
    ) -> None:
        """Fetch the page holding artifact `keep`, else the page at `offset` (default: this one).

        The cursor goes to `keep`, else to `row` (-1: the last row; None: the row it is on).
        """
        offset = self.page_offset if offset is None else offset
        self._reloads += 1
        self._fetch(self.gallery_query, offset, keep, row, frozenset(self.marked), self._reloads)

    @work(thread=True, exclusive=True, group="gallery-page")
    def _fetch(
        self,
        query: GalleryQuery,
        offset: int,
        keep: int | None,
        row: int | None,
        marked: frozenset[int],
        ask: int,
    ) -> None:
        total = self.client.gallery_count(query)
        hidden = set(marked - self.client.gallery_shown(query, marked)) if marked else set()
        if keep is not None:
            position = self.client.gallery_position(query, keep)
            if position is not None:
                offset = position // PAGE_SIZE * PAGE_SIZE
        offset = max(0, min(offset, (total - 1) // PAGE_SIZE * PAGE_SIZE if total else 0))
        views = self.client.gallery(query, limit=PAGE_SIZE, offset=offset)
        images = self._load_thumbs(views) if self.grid_mode else {}
        if not get_current_worker().is_cancelled:
            self.from_worker(
                self._show_page, query, offset, total, views, images, keep, row, hidden, ask
            )

    def _show_page(
        self,
        query: GalleryQuery,
        offset: int,
        total: int,
        views: list[ArtifactView],
        images: dict[int, PILImage.Image | None],
        keep: int | None,
        row: int | None,
        hidden: set[int],
        ask: int,
    ) -> None:
        if query != self.gallery_query:
            return  # the filters changed while this page was on its way
        self._shown_reload = ask
        self.hidden_marks = hidden & self.marked
        ids = [v.id for v in views]
        if keep in ids:
            cursor = ids.index(keep)
        elif row is None:
            cursor = self.cursor
        else:
            cursor = row if row >= 0 else len(views) - 1
        self.page, self.page_offset, self.total, self.loaded = views, offset, total, True
        self.cursor = max(0, min(cursor, len(views) - 1))
        self.query_one(GalleryTable).show_page(views, self.cursor)
        if self.grid_mode:
            self.query_one(ThumbGrid).set_items(
                views, images, self.cursor, self.graphics, self.marked
            )
        self._show_range()
        self._schedule_inspect()

    def _load_thumbs(self, views: list[ArtifactView]) -> dict[int, PILImage.Image | None]:
        """Decode a page's thumbnails (blocking), reusing the ones decoded before."""
        images: dict[int, PILImage.Image | None] = {}
        for view in views:
            with self._thumbs_lock:
                cached = view.id in self._thumbs
                image = self._thumbs.get(view.id)
            if not cached:
                image = load_preview(view.kind, view.path, 160)
                with self._thumbs_lock:
                    if len(self._thumbs) >= THUMB_CACHE:
                        self._thumbs.pop(next(iter(self._thumbs)))
                    self._thumbs[view.id] = image
            images[view.id] = image
        return images

    @work(thread=True, exclusive=True, group="gallery-grid")
    def _fill_grid(self, views: list[ArtifactView]) -> None:
        images = self._load_thumbs(views)
        if not get_current_worker().is_cancelled:
            self.from_worker(self._show_grid, views, images)

    def _show_grid(self, views: list[ArtifactView], images: dict[int, Any]) -> None:
        if views is self.page and self.grid_mode:
            self.query_one(ThumbGrid).set_items(
                views, images, self.cursor, self.graphics, self.marked
            )

    def _show_range(self) -> None:
        label = self.query_one("#gallery-range", Static)
        self.set_class(not self.total, "-empty")
        if not self.total:
            filtered = self.gallery_query != GalleryQuery(
                newest_first=self.gallery_query.newest_first
            )
            # On a line of its own: the filters stay in view, to be changed.
            self.query_one("#gallery-empty", Static).update(
                "No artifact matches the filters: change them below, or clear the search (/)."
                if filtered
                else "No artifacts yet: build and run a pipeline on the Builder (1)."
            )
            label.update("no rows")
            self._fit_status()
            return
        first, last = self.page_offset + 1, self.page_offset + len(self.page)
        marked = ""
        if self.marked:
            hidden = len(self.hidden_marks & self.marked)
            unseen = f", {hidden:,} hidden by the filters" if hidden else ""
            marked = f" · [b]{len(self.marked):,} marked[/]{unseen} (u clears)"
        label.update(f"rows {first:,}–{last:,} of {self.total:,}{marked}")
        self._fit_status()

    @on(PageRequest)
    def _page_requested(self, event: PageRequest) -> None:
        event.stop()
        self.action_page(event.direction)

    def action_page(self, direction: int) -> None:
        """Load the next (+1) or previous (-1) page; the cursor lands at the near end."""
        offset = self.page_offset + direction * PAGE_SIZE
        if 0 <= offset < self.total:
            self.reload(offset=offset, row=-1 if direction < 0 else 0)

    # -- polling for new artifacts -------------------------------------------------------

    def _poll(self) -> None:
        # Skip while hidden or while the last count is still running: never two at once.
        if not self.is_current or not self.loaded:
            return
        if self._poll_worker is not None and self._poll_worker.is_running:
            return
        if self._shown_reload != self._reloads:
            return  # a page is on its way, with its own count
        self._poll_worker = self._count(self.gallery_query, self._reloads)

    @work(thread=True, group="gallery-poll")
    def _count(self, query: GalleryQuery, reloads: int) -> None:
        total = self.client.gallery_count(query)
        self.from_worker(self._counted, query, total, reloads)

    def _counted(self, query: GalleryQuery, total: int, reloads: int) -> None:
        # A page asked for since the count began brings its own total: the count would
        # move the cursor back to where it was before that page (a row chosen since).
        if reloads != self._reloads or self._shown_reload != self._reloads:
            return
        if query == self.gallery_query and total != self.total:
            self._load_facets()
            self.reload(keep=self.current.id if self.current else None)

    @work(thread=True, exclusive=True, group="gallery-facets")
    def _load_facets(self) -> None:
        models, stages = self.client.gallery_facets()
        self.from_worker(self._show_facets, models, stages)

    def _show_facets(self, models: list[str], stages: list[str]) -> None:
        self.stages = stages
        select = self.query_one("#gallery-model", Select)
        chosen = self.gallery_query.model
        with select.prevent(Select.Changed):
            # Model names come from files on disk: plain text, control characters shown.
            names = sorted({*models, *([chosen] if chosen else [])})
            select.set_options((Text(visible(m)), m) for m in names)
            if chosen:
                select.value = chosen

    # -- the highlighted artifact --------------------------------------------------------

    @on(DataTable.RowHighlighted, "#gallery-table")
    def _row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._highlight(event.cursor_row)

    @on(GridHighlighted)
    def _thumb_highlighted(self, event: GridHighlighted) -> None:
        self._highlight(event.index)

    def _highlight(self, index: int) -> None:
        if index != self.cursor:
            self.cursor = index
            self._schedule_inspect()

    @on(DataTable.RowSelected, "#gallery-table")
    @on(GridSelected)
    def _selected(self) -> None:
        """enter on a row or a thumbnail plays a video (other kinds have nothing to open)."""
        if self._playable:
            self.action_play()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "play":
            return self._playable
        return True

    def _schedule_inspect(self) -> None:
        playable = self.current is not None and self.current.kind == "video"
        if playable != self._playable:
            self._playable = playable
            self.refresh_bindings()
        if self._inspect_timer is not None:
            self._inspect_timer.stop()
        self._inspect_timer = self.set_timer(INSPECT_DELAY_S, self._inspect_current)

    def _inspect_current(self) -> None:
        view = self.current
        if view is None:
            self.query_one(Inspector).show(None, None)
        else:
            self._inspect(view)

    @work(thread=True, exclusive=True, group="gallery-inspect")
    def _inspect(self, view: ArtifactView) -> None:
        try:
            full = self.client.artifact(view.ref)
        except InputError:
            full = view  # deleted by someone else meanwhile: show what the page knew
        image = load_preview(full.kind, full.path, 512)
        if not get_current_worker().is_cancelled:
            self.from_worker(self._inspected, full, image)

    def _inspected(self, view: ArtifactView, image: PILImage.Image | None) -> None:
        current = self.current
        if current is None or current.id != view.id:
            return
        inspector = self.query_one(Inspector)
        inspector.show(view, image)
        if view.kind == "video":
            details = self._details.get(view.id)
            if details is None:
                self._open_video(view)
            else:
                inspector.show_details(view.id, details)

    @work(thread=True, exclusive=True, group="gallery-probe")
    def _open_video(self, view: ArtifactView) -> None:
        """Open the video for the facts its metadata does not hold (codec, audio, file
        size): it decodes every frame to count them, so only for the inspector, and once."""
        from medialab_tui.store.videos import probe_video

        path = Path(view.path)
        try:
            info = probe_video(path)
            details = VideoDetails(
                codec=info.codec,
                audio=info.has_audio,
                file_size=path.stat().st_size,
                fps=info.fps,
                frames=info.frames,
            )
        except MedialabError as exc:
            details = VideoDetails(error=str(exc))
        except OSError:
            details = VideoDetails(error="the file is missing")
        # Kept even when the cursor moved on meanwhile: the file is not opened again.
        self.from_worker(self._video_opened, view.id, details)

    def _video_opened(self, artifact_id: int, details: VideoDetails) -> None:
        if len(self._details) >= DETAILS_CACHE:
            self._details.pop(next(iter(self._details)))
        self._details[artifact_id] = details
        self.query_one(Inspector).show_details(artifact_id, details)

    # -- filters -----------------------------------------------------------------------

    def _set_query(self, **changes: Any) -> None:
        self.gallery_query = replace(self.gallery_query, **changes)
        self._show_chips()
        self.reload(keep=self.current.id if self.current else None, offset=0, row=0)

    def _show_chips(self) -> None:
        q = self.gallery_query
        self.query_one("#gallery-chips", Static).update(
            f"[b]k[/] {q.kind or 'all kinds'} · [b]t[/] {q.stage or 'all stages'} · "
            f"[b]f[/] {'starred only' if q.starred else 'any star'} · "
            f"[b]e[/] {SOURCE_LABELS.get(q.source, q.source)} · "
            f"[b]w[/] {DAYS_LABELS[q.days]} · "
            f"[b]o[/] {'newest' if q.newest_first else 'oldest'} first"
        )
        self._fit_status()

    @on(Input.Changed, "#gallery-search")
    def _search_changed(self, event: Input.Changed) -> None:
        if self._search_timer is not None:
            self._search_timer.stop()
        text = event.value.strip()
        self._search_timer = self.set_timer(SEARCH_DELAY_S, lambda: self._search(text))

    @on(Input.Submitted, "#gallery-search")
    def _search_submitted(self, event: Input.Submitted) -> None:
        if self._search_timer is not None:
            self._search_timer.stop()
        self._search(event.value.strip())
        self.action_focus_list()

    def _search(self, text: str) -> None:
        if text != self.gallery_query.search:
            self._set_query(search=text)

    @on(Select.Changed, "#gallery-model")
    def _model_changed(self, event: Select.Changed) -> None:
        model = "" if event.value is Select.BLANK else str(event.value)
        if model != self.gallery_query.model:
            self._set_query(model=model)

    def action_focus_search(self) -> None:
        self.query_one("#gallery-search", Input).focus()

    def action_focus_model(self) -> None:
        self.query_one("#gallery-model", Select).focus()

    def action_focus_list(self) -> None:
        view = ThumbGrid if self.grid_mode else GalleryTable
        self.query_one(view).focus()

    def action_cycle_kind(self) -> None:
        kind = self.gallery_query.kind
        self._set_query(kind=KINDS[(KINDS.index(kind) + 1) % len(KINDS)])

    def action_cycle_stage(self) -> None:
        choices = ["", *self.stages]
        stage = self.gallery_query.stage
        index = choices.index(stage) if stage in choices else 0
        self._set_query(stage=choices[(index + 1) % len(choices)])

    def action_toggle_starred(self) -> None:
        self._set_query(starred=not self.gallery_query.starred)

    def action_cycle_days(self) -> None:
        days = self.gallery_query.days
        index = GALLERY_DAYS.index(days) if days in GALLERY_DAYS else 0
        self._set_query(days=GALLERY_DAYS[(index + 1) % len(GALLERY_DAYS)])

    def action_cycle_source(self) -> None:
        source = self.gallery_query.source
        index = GALLERY_SOURCES.index(source) if source in GALLERY_SOURCES else 0
        self._set_query(source=GALLERY_SOURCES[(index + 1) % len(GALLERY_SOURCES)])

    def action_toggle_order(self) -> None:
        self._set_query(newest_first=not self.gallery_query.newest_first)

    def action_toggle_grid(self) -> None:
        self.grid_mode = not self.grid_mode
        switcher = self.query_one(ContentSwitcher)
        switcher.current = "gallery-grid" if self.grid_mode else "gallery-table"
        if self.grid_mode:
            self._fill_grid(self.page)
        else:
            self.query_one(GalleryTable).move_cursor(row=self.cursor, animate=False)
        self.action_focus_list()

    # -- actions on the highlighted artifact ---------------------------------------------

    def _need_current(self) -> ArtifactView | None:
        view = self.current
        if view is None:
            self.notify("No artifact is highlighted.", severity="warning")
        return view

    def action_play(self) -> None:
        view = self._need_current()
        if view is None:
            return
        if view.kind != "video":
            self.notify(f"{view.ref} is {view.kind}, not a video.", severity="warning")
            return
        self._play(view)

    @work(thread=True, exclusive=True, group="gallery-play")
    def _play(self, view: ArtifactView) -> None:
        try:
            clip = playable_clip(view)
        except MedialabError as exc:
            self.app.call_from_thread(self.notify, str(exc), severity="error")
            return
        prompt = visible(view.prompt.splitlines()[0]) if view.prompt.strip() else ""
        title = " · ".join(p for p in (view.ref, view.stage, prompt) if p)
        self.from_worker(self.app.push_screen, PlayerScreen([clip], title, self.graphics))

    def action_compare(self) -> None:
        view = self._need_current()
        if view is not None:
            self._compare(view)

    @work(thread=True, exclusive=True, group="gallery-compare")
    def _compare(self, view: ArtifactView) -> None:
        """Find what this artifact was made from (its parent, or the input file its job
        took) and open the two side by side: two pictures (a video by its first frame),
        or a video and the video it was interpolated from, playing in step."""
        try:
            after = self.client.artifact(view.ref)
            before = self.client.artifact(f"a{after.parents[0]}") if after.parents else None
            sources = [] if before else self.client.source_images(after.job_id)
            clips: list[Clip] = []
            if after.kind == "video" and before is not None and before.kind == "video":
                clips = [playable_clip(before), playable_clip(after)]
            elif after.kind == "video" and before is None and not sources:
                # Made from a clip of `[inputs] videos`: the stored copy the job read.
                clip_from = self.client.source_videos(after.job_id)[:1]
                clips = [file_clip(Path(p), f"input {Path(p).name}") for p in clip_from]
                clips += [playable_clip(after)] if clips else []
            if clips:
                interpolated = after.stage == "interpolate"
                self.from_worker(
                    self.app.push_screen,
                    VideoCompareScreen(
                        clips,
                        f"{view.ref} and the video it was made from",
                        self.graphics,
                        ("source", "interpolated") if interpolated else ("before", "after"),
                    ),
                )
                return
        except MedialabError as exc:
            self.app.call_from_thread(self.notify, str(exc), severity="error")
            return
        pictured = ("image", "video")
        if (
            after.kind not in pictured
            or (before is None and not sources)
            or (before is not None and before.kind not in pictured)
        ):
            self.app.call_from_thread(
                self.notify,
                f"{view.ref} was not made from an earlier image ({view.stage}); "
                "nothing to compare it with.",
                severity="warning",
            )
            return
        if before is not None:
            first: tuple[str, PILImage.Image | None] = (
                caption(before),
                load_preview(before.kind, before.path, 1024),
            )
        else:
            image = load_preview("image", sources[0], 1024)
            size = f" · {image.width}×{image.height}" if image else ""
            first = (f"input {Path(sources[0]).name}{size}", image)
        frame = " · first frame" if after.kind == "video" else ""
        screen = CompareScreen(
            first,
            (caption(after) + frame, load_preview(after.kind, after.path, 1024)),
            f"{view.ref} and what it started from",
            self.graphics,
        )
        self.from_worker(self.app.push_screen, screen)

    def action_copy_prompt(self) -> None:
        view = self._need_current()
        if view is not None:
            self.app.copy_to_clipboard(view.prompt)
            self.notify(f"Copied the prompt of {view.ref}")

    def action_copy_seed(self) -> None:
        view = self._need_current()
        if view is None:
            return
        if view.seed is None:
            self.notify(f"{view.ref} has no seed.", severity="warning")
            return
        self.app.copy_to_clipboard(str(view.seed))
        self.notify(f"Copied seed {view.seed} of {view.ref}")

    def _targets(self) -> tuple[list[int], int] | None:
        """What a batch action acts on: the marked artifacts that the filters show (ids,
        newest first) and how many marked ones they hide, else the highlighted one.

        A marked artifact the filters hide is never acted on: what is done is what can be
        seen. When every mark is hidden, nothing is done and the user is told why."""
        if self.marked:
            shown = self.client.gallery_shown(self.gallery_query, self.marked)
            self.hidden_marks = self.marked - shown
            self._show_range()
            if not shown:
                count = len(self.marked)
                self.notify(
                    f"The {count} marked artifact{'s are' if count != 1 else ' is'} hidden by "
                    "the filters: nothing was done (change the filters to see them, or u "
                    "to clear the marks).",
                    severity="warning",
                )
                return None
            return sorted(shown, reverse=True), len(self.hidden_marks)
        view = self._need_current()
        return None if view is None else ([view.id], 0)

    def action_toggle_mark(self) -> None:
        view = self._need_current()
        if view is None:
            return
        self.marked.symmetric_difference_update({view.id})
        self.query_one(GalleryTable).update_mark(view)
        self.query_one(ThumbGrid).update_view(view, view.id in self.marked)
        self._show_range()
        if self.grid_mode:
            self.query_one(ThumbGrid).action_move(1)
        elif self.cursor < len(self.page) - 1:
            self.query_one(GalleryTable).action_cursor_down()

    def action_unmark_all(self) -> None:
        if self.marked:
            count = len(self.marked)
            self._set_marks(set())
            self.notify(f"Unmarked {count} artifact{'s' if count != 1 else ''}")

    def _set_marks(self, marked: set[int]) -> None:
        """Replace the marks and redraw the rows and thumbnails of this page."""
        changed = self.marked ^ marked
        self.marked.clear()
        self.marked.update(marked)
        for view in self.page:
            if view.id in changed:
                self.query_one(GalleryTable).update_mark(view)
                self.query_one(ThumbGrid).update_view(view, view.id in self.marked)
        self._show_range()

    def action_star(self) -> None:
        if not self.marked:
            view = self._need_current()
            if view is not None:
                self._star([view.id], not view.starred)
            return
        targets = self._targets()
        if targets is None:
            return
        ids, hidden = targets
        shown = {v.id: v for v in self.page}
        # Star them all, unless every one of them is starred already: then unstar.
        starred = not all(shown[i].starred for i in ids if i in shown)
        self._star(ids, starred, hidden)

    @work(thread=True, group="gallery-edit")
    def _star(self, ids: list[int], starred: bool, hidden: int = 0) -> None:
        done: list[int] = []
        for artifact_id in ids:
            try:
                self.client.star(artifact_id, starred)
            except InputError as e:  # deleted meanwhile: the others are still starred
                self.app.call_from_thread(self.notify, str(e), severity="error")
            else:
                done.append(artifact_id)
        self.from_worker(self._starred, done, starred, hidden)

    def _starred(self, ids: list[int], starred: bool, hidden: int = 0) -> None:
        if not ids:
            return
        said = f"a{ids[0]}" if len(ids) == 1 else f"{len(ids)} artifacts"
        self.notify((f"Starred {said}" if starred else f"Unstarred {said}") + _left(hidden))
        if self.gallery_query.starred and not starred:
            self.reload()  # they no longer match the filter
            return
        for i, view in enumerate(self.page):
            if view.id in ids:
                self.page[i] = replace(view, starred=starred)
                self.query_one(GalleryTable).update_star(self.page[i])
                self.query_one(ThumbGrid).update_view(self.page[i], view.id in self.marked)
        self._schedule_inspect()

    def action_delete(self) -> None:
        targets = self._targets()
        if targets is None:
            return
        ids, hidden = targets
        view = self.current
        if len(ids) == 1 and view is not None and view.id == ids[0] and not hidden:
            question = (
                f"Delete {view.ref} ({view.prompt or view.kind})?\n"
                "Its files move to the trash folder of the data directory."
            )
        else:
            question = (
                f"Delete {len(ids)} marked artifact{'s' if len(ids) != 1 else ''}?\n"
                "Their files move to the trash folder of the data directory." + _left(hidden, "\n")
            )

        def answered(yes: bool | None) -> None:
            if yes:
                self._delete(ids)

        self.app.push_screen(ConfirmScreen(question, yes="Delete"), answered)

    @work(thread=True, group="gallery-edit")
    def _delete(self, ids: list[int]) -> None:
        done: list[int] = []
        for artifact_id in ids:
            try:
                self.client.delete_artifact(artifact_id)
            except InputError as e:
                self.app.call_from_thread(self.notify, str(e), severity="error")
            else:
                done.append(artifact_id)
        self.from_worker(self._deleted, done)

    def _deleted(self, ids: list[int]) -> None:
        if len(ids) == 1:
            self.notify(f"Deleted a{ids[0]}; its files are in trash/")
        elif ids:
            self.notify(f"Deleted {len(ids)} artifacts; their files are in trash/")
        self.marked.difference_update(ids)
        self.reload()

    def action_export(self) -> None:
        targets = self._targets()
        if targets is None:
            return
        ids, hidden = targets
        what = f"a{ids[0]}" if len(ids) == 1 else f"the {len(ids)} marked artifacts"

        def answered(choice: ExportChoice | None) -> None:
            if choice is not None:
                self._export([f"a{i}" for i in ids], choice)

        self.app.push_screen(
            ExportScreen(
                f"Export {what} to:",
                "a folder, or a file ending in .zip",
                "A name already in the folder gets -2, -3…; an existing zip is not replaced."
                + _left(hidden, "\n"),
            ),
            answered,
        )

    @work(thread=True, group="gallery-export")
    def _export(self, refs: list[str], choice: ExportChoice) -> None:
        target = Path(choice.path).expanduser()
        try:
            results = self.client.export(refs, target, strip=choice.strip)
        except MedialabError as exc:
            self.app.call_from_thread(self.notify, str(exc), severity="error")
            return
        except OSError as exc:
            self.app.call_from_thread(
                self.notify, f"Could not write {target}: {exc.strerror or exc}", severity="error"
            )
            return
        count = f"{len(results)} artifact{'s' if len(results) != 1 else ''}"
        how = " without their metadata" if choice.strip else ""
        self.app.call_from_thread(self.notify, visible(f"Exported {count}{how} to {target}"))

    def action_import(self) -> None:
        if self.importing:
            self.notify("An import is already running.", severity="warning")
            return

        def answered(path: str | None) -> None:
            if path:
                self.importing = True
                self._import(path)

        self.app.push_screen(
            PathScreen(
                "Import images from:",
                "a PNG, JPEG or WebP file, or a folder",
                "A folder is read recursively. Copies go into the gallery with their "
                "metadata read; the originals are only read. An image imported before "
                "is recognised.",
            ),
            answered,
        )

    @work(thread=True, group="gallery-import")
    def _import(self, path: str) -> None:
        def progress(done: int, total: int) -> None:
            self.from_worker(self._import_progress, done, total)

        try:
            results = self.client.import_images([Path(path).expanduser()], progress)
        except MedialabError as exc:
            self.from_worker(self._imported, str(exc), "error")
            return
        except OSError as exc:
            self.from_worker(self._imported, f"Could not import: {exc.strerror or exc}", "error")
            return
        self.from_worker(self._imported, import_summary(results), "information")

    def _import_progress(self, done: int, total: int) -> None:
        self.query_one("#gallery-range", Static).update(f"importing {done:,}/{total:,}…")

    def _imported(self, message: str, severity: Any) -> None:
        self.importing = False
        self.notify(visible(message), severity=severity)
        self._load_facets()
        self.reload(offset=0, row=0)

    def action_rerun(self) -> None:
        view = self._need_current()
        if view is not None:
            self._rerun(view.ref)

    @work(thread=True, group="gallery-edit")
    def _rerun(self, ref: str) -> None:
        try:
            run = self.client.rerun(ref)
        except InputError as e:
            self.app.call_from_thread(self.notify, str(e), severity="error")
            return
        self.app.call_from_thread(self.notify, f"Run {run} queued (re-run of {ref})")

    def action_image_to_builder(self) -> None:
        view = self._need_current()
        if view is None:
            return
        if view.kind != "image":
            self.notify(f"{view.ref} is a {view.kind}, not an image.", severity="error")
            return
        self.post_message(BuilderRequest(images=(view.path,)))

    def action_settings_to_builder(self) -> None:
        view = self._need_current()
        if view is not None:
            self._send_settings(view.ref)

    @work(thread=True, exclusive=True, group="gallery-settings")
    def _send_settings(self, ref: str) -> None:
        try:
            settings = self.client.settings(ref)
        except MedialabError as exc:
            self.app.call_from_thread(self.notify, str(exc), severity="error")
            return
        self.app.call_from_thread(self.post_message, BuilderRequest(settings=settings))
