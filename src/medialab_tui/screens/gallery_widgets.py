"""The gallery's widgets: the paged list, the thumbnail grid and the inspector.

They only draw what the screen hands them (artifact views and decoded images);
the screen asks the store for pages and decodes files in thread workers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from PIL import Image as PILImage
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Container, ScrollableContainer, Vertical, VerticalScroll
from textual.events import Resize
from textual.message import Message
from textual.reactive import reactive
from textual.widgets import DataTable, Static

from medialab_tui.client import ArtifactView
from medialab_tui.screens.common import plain_cells
from medialab_tui.screens.playback import Clip
from medialab_tui.screens.thumbs import ImageWidget, image_widget
from medialab_tui.store.videos import fps_text
from medialab_tui.text import human_size, visible, visible_lines

MARK = "●"  # a row or thumbnail marked with space, for the batch actions
RAW_VALUE_MAX = 2000  # characters of one raw metadata value the inspector shows
THUMB_WIDTH = 22  # cells per grid column, border included
THUMB_HEIGHT = 10  # rows per grid row, border and caption included, where there is room
THUMB_MIN_HEIGHT = 5  # the border, two rows of picture and the caption
PLACEHOLDERS = {"text": "¶ text"}  # kinds without a picture; a video shows its first frame


class PageRequest(Message):
    """The cursor ran off the loaded page: load the next (+1) or the previous (-1) one."""

    def __init__(self, direction: int) -> None:
        super().__init__()
        self.direction = direction


class GridHighlighted(Message):
    """The grid's cursor moved to another thumbnail."""

    def __init__(self, index: int) -> None:
        super().__init__()
        self.index = index


class GridSelected(Message):
    """enter on the grid's highlighted thumbnail."""


def short_date(view: ArtifactView) -> str:
    return view.created_at.strftime("%m-%d %H:%M")


def size_text(view: ArtifactView) -> str:
    return f"{view.width}×{view.height}" if view.width else "—"


def video_clip(view: ArtifactView) -> Clip | None:
    """The clip a video artifact's metadata describes; None for other kinds, or a video
    whose metadata does not give its rate and frame count."""
    try:
        exact, frames = view.fps_exact, view.frames
        fps = Fraction(exact) if exact else None
    except (ValueError, TypeError, ZeroDivisionError):
        return None  # metadata written by hand or by another tool: the player opens the file
    if view.kind != "video" or not fps or fps <= 0 or not frames or frames < 1:
        return None
    return Clip(Path(view.path), fps, frames, caption(view))


def caption(view: ArtifactView) -> str:
    """`a12 · i2v · 64×64`: an artifact in a few words (compare, the player)."""
    return f"{view.ref} · {view.stage} · {size_text(view)}"


def short_rate(fps: Fraction) -> str:
    """`24`, `29.97`: a frame rate in few cells."""
    return str(fps.numerator) if fps.denominator == 1 else f"{float(fps):.2f}".rstrip("0")


def video_marker(view: ArtifactView) -> str:
    """`▶ 2.0s 24fps` for a video (`▶` alone when its length is not known); empty for
    other kinds."""
    if view.kind != "video":
        return ""
    found = video_clip(view)
    if found is None:
        return "▶"
    return f"▶ {float(found.duration):.1f}s {short_rate(found.fps)}fps"


@dataclass(frozen=True)
class VideoDetails:
    """What opening a video file tells (read on a thread, only for the inspector)."""

    codec: str = ""
    audio: bool = False
    file_size: int = 0
    fps: Fraction | None = None
    frames: int = 0
    error: str = ""


def clip(text: str, width: int) -> str:
    """`text` in at most `width` cells, with an ellipsis when cut."""
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


# (key, label, width); the prompt takes whatever width is left (0 here).
COLUMNS = (
    ("mark", "", 1),
    ("id", "id", 7),
    ("stage", "stage", 7),
    ("size", "size", 9),
    ("seed", "seed", 10),
    ("model", "model", 14),
    ("prompt", "prompt", 0),
    ("created", "created", 11),
    ("star", "★", 1),
)
MIN_PROMPT = 12
# Left out, in this order, when the prompt would get fewer than MIN_PROMPT cells.
OPTIONAL = ("model", "seed")


class GalleryTable(DataTable[Any]):
    """One page of artifacts; moving past either end asks for the neighbouring page."""

    BINDINGS = [
        Binding("home", "scroll_top", "First row", show=False),
        Binding("end", "scroll_bottom", "Last row", show=False),
    ]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.views: list[ArtifactView] = []
        self.marked: set[int] = set()  # the screen's marks (artifact ids), shared
        self.prompt_width = 0
        self.shown = COLUMNS

    def _fit(self) -> tuple[tuple[tuple[str, str, int], ...], int]:
        """The columns that fit the table's width, and the prompt's width among them."""
        # Leave room for the vertical scrollbar even before it shows, so no row ever scrolls
        # sideways.
        room = self.size.width - self.styles.scrollbar_size_vertical - 1
        columns = COLUMNS
        for left_out in (None, *OPTIONAL):
            columns = tuple(c for c in columns if c[0] != left_out)
            fixed = sum(w for *_, w in columns) + 2 * self.cell_padding * len(columns)
            if room - fixed >= MIN_PROMPT:
                break
        return columns, max(MIN_PROMPT, room - fixed)

    def show_page(self, views: list[ArtifactView], cursor: int) -> None:
        """Replace the rows with `views` and put the cursor on row `cursor`."""
        if views == self.views and self.row_count == len(views):
            # A reload that found the same page (each show of the screen reloads):
            # rebuilding it would lay out and paint the whole table again for nothing.
            if views and cursor != self.cursor_row:
                self.move_cursor(row=cursor, animate=False)
            return
        self.views = views
        self._rebuild(cursor)

    def _rebuild(self, cursor: int) -> None:
        self.shown, self.prompt_width = self._fit()
        self.clear(columns=True)
        for key, label, width in self.shown:
            self.add_column(label, width=width or self.prompt_width, key=key)
        for view in self.views:
            self.add_row(*self._cells(view), key=str(view.id))
        if self.views:
            self.move_cursor(row=cursor, animate=False)

    def _cells(self, view: ArtifactView) -> tuple[Any, ...]:
        cells = {
            "mark": Text(MARK, style="bold magenta") if view.id in self.marked else "",
            "id": view.ref,
            "stage": view.stage,
            "size": size_text(view),
            "seed": "—" if view.seed is None else str(view.seed),
            # Shown before clipping: `^[` takes two cells where ESC took none.
            "model": clip(visible(view.model), 14),
            "prompt": self._prompt(view),
            "created": short_date(view),
            "star": Text("★", style="bold yellow") if view.starred else "",
        }
        return plain_cells(*(cells[key] for key, *_ in self.shown))

    def _prompt(self, view: ArtifactView) -> str | Text:
        """The prompt, after a video's marker (`▶ 2.0s 24fps`)."""
        prompt = visible(view.prompt.replace("\n", " "))
        marker = video_marker(view)
        if not marker:
            return clip(prompt, self.prompt_width)
        text = Text(marker, style="bold cyan")
        room = self.prompt_width - len(marker) - 1
        if prompt and room > 0:
            text.append(" " + clip(prompt, room))
        return text

    def update_star(self, view: ArtifactView) -> None:
        """Redraw one row's star after it changed."""
        self.views = [view if v.id == view.id else v for v in self.views]
        self.update_cell(str(view.id), "star", self._cells(view)[-1])

    def update_mark(self, view: ArtifactView) -> None:
        """Redraw one row's mark after it was marked or unmarked."""
        if str(view.id) in self.rows:
            self.update_cell(str(view.id), "mark", self._cells(view)[0])

    def on_resize(self) -> None:
        if self.views and self._fit() != (self.shown, self.prompt_width):
            self._rebuild(self.cursor_row)

    def _at_last_row(self) -> bool:
        return self.row_count > 0 and self.cursor_row >= self.row_count - 1

    def action_cursor_down(self) -> None:
        if self._at_last_row():
            self.post_message(PageRequest(+1))
        else:
            super().action_cursor_down()

    def action_cursor_up(self) -> None:
        if self.row_count and self.cursor_row == 0:
            self.post_message(PageRequest(-1))
        else:
            super().action_cursor_up()

    def action_page_down(self) -> None:
        if self._at_last_row():
            self.post_message(PageRequest(+1))
        else:
            super().action_page_down()

    def action_page_up(self) -> None:
        if self.row_count and self.cursor_row == 0:
            self.post_message(PageRequest(-1))
        else:
            super().action_page_up()


class Thumb(Vertical):
    """One cell of the grid: the picture (or a placeholder) and a one-line caption."""

    DEFAULT_CSS = """
    Thumb { height: 100%; border: round $panel-lighten-2; }
    Thumb.-cursor { border: round $accent; background: $boost; }
    Thumb.-marked { border: round $secondary; }
    Thumb.-marked.-cursor { border: double $accent; }
    Thumb > .thumb-frame { height: 1fr; align: center middle; }
    Thumb .thumb-picture { width: auto; height: auto; }
    Thumb .thumb-placeholder { width: 100%; height: 100%; content-align: center middle;
                               color: $text-muted; }
    Thumb > .thumb-caption { width: 100%; height: 1; color: $text-muted; }
    """

    def __init__(
        self,
        view: ArtifactView,
        image: PILImage.Image | None,
        graphics: str,
        marked: bool = False,
    ) -> None:
        super().__init__(classes="-marked" if marked else None)
        self.view = view
        self.image = image
        self.graphics = graphics
        self.marked = marked

    def compose(self) -> ComposeResult:
        with Container(classes="thumb-frame"):
            if self.image is not None:
                yield image_widget(self.graphics, self.image, classes="thumb-picture")
            else:
                label = PLACEHOLDERS.get(self.view.kind, "missing file")
                yield Static(label, classes="thumb-placeholder")
        yield Static(self._caption(), classes="thumb-caption")

    def _caption(self) -> str:
        star = ("★ " if self.view.starred else "") + (f"{MARK} " if self.marked else "")
        seed = f" s{self.view.seed}" if self.view.seed is not None else ""
        marker = video_marker(self.view)
        return clip(f"{star}{marker}{' ' if marker else ''}{self.view.ref}{seed}", THUMB_WIDTH - 2)

    def set_view(self, view: ArtifactView, marked: bool) -> None:
        """Show a changed artifact (a star or a mark added or removed) without decoding
        it again."""
        self.view, self.marked = view, marked
        self.set_class(marked, "-marked")
        self.query_one(".thumb-caption", Static).update(self._caption())


class ThumbGrid(ScrollableContainer, can_focus=True):
    """The page as thumbnails; the arrow keys move a cursor across them."""

    DEFAULT_CSS = """
    ThumbGrid { layout: grid; grid-size: 4; grid-rows: 10; grid-gutter: 0 1; height: 1fr; }
    ThumbGrid:focus Thumb.-cursor { border: round $accent; }
    """
    BINDINGS = [
        Binding("left", "move(-1)", "Left", show=False),
        Binding("right", "move(1)", "Right", show=False),
        Binding("up", "move_rows(-1)", "Up", show=False),
        Binding("down", "move_rows(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home", "jump(0)", "First", show=False),
        Binding("end", "jump(-1)", "Last", show=False),
        Binding("enter", "select", "Open", show=False),
    ]

    cursor: reactive[int] = reactive(0, init=False)

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.columns = 4
        self.row_height = THUMB_HEIGHT

    def set_items(
        self,
        views: list[ArtifactView],
        images: dict[int, PILImage.Image | None],
        cursor: int,
        graphics: str,
        marked: set[int] | None = None,
    ) -> None:
        """Show a page of thumbnails with the cursor on `cursor`, `marked` ids marked."""
        marked = marked or set()
        self.remove_children()
        self.mount_all(Thumb(v, images.get(v.id), graphics, v.id in marked) for v in views)
        self.set_reactive(ThumbGrid.cursor, max(0, min(cursor, len(views) - 1)))
        self.call_after_refresh(self._show_cursor)

    def update_view(self, view: ArtifactView, marked: bool) -> None:
        """Redraw the caption of one artifact after it changed."""
        for thumb in self.query_children(Thumb):
            if thumb.view.id == view.id:
                thumb.set_view(view, marked)

    def on_resize(self, event: Resize) -> None:
        self.columns = max(1, event.size.width // THUMB_WIDTH)
        self.styles.grid_size_columns = self.columns
        # A whole thumbnail (its caption with the marks and stars too) fits a short
        # pane: the rows are as tall as the pane, up to THUMB_HEIGHT.
        self.row_height = max(THUMB_MIN_HEIGHT, min(THUMB_HEIGHT, event.size.height))
        self.styles.grid_rows = str(self.row_height)

    def watch_cursor(self) -> None:
        self._show_cursor()
        self.post_message(GridHighlighted(self.cursor))

    def _show_cursor(self) -> None:
        for i, thumb in enumerate(self.query_children(Thumb)):
            thumb.set_class(i == self.cursor, "-cursor")
            if i == self.cursor:
                self.scroll_to_widget(thumb, animate=False)

    def _move_to(self, index: int) -> None:
        count = len(self.children)
        if count == 0:
            return
        # Only a move that starts at the first or last cell leaves the page.
        if index >= count and self.cursor == count - 1:
            self.post_message(PageRequest(+1))
        elif index < 0 and self.cursor == 0:
            self.post_message(PageRequest(-1))
        else:
            self.cursor = max(0, min(index, count - 1))

    def action_move(self, delta: int) -> None:
        self._move_to(self.cursor + delta)

    def action_move_rows(self, rows: int) -> None:
        self._move_to(self.cursor + rows * self.columns)

    def action_page(self, direction: int) -> None:
        visible = max(1, self.scrollable_content_region.height // self.row_height)
        self._move_to(self.cursor + direction * visible * self.columns)

    def action_jump(self, index: int) -> None:
        self.cursor = max(0, len(self.children) - 1) if index < 0 else 0

    def action_select(self) -> None:
        if self.children:
            self.post_message(GridSelected())


class Inspector(Container):
    """The highlighted artifact: a larger preview and everything known about it."""

    DEFAULT_CSS = """
    Inspector { layout: vertical; border: round $panel-lighten-2; padding: 0 1; }
    Inspector > #inspector-preview { height: 14; align: center middle; }
    Inspector #inspector-picture { width: auto; height: auto; }
    Inspector #inspector-placeholder { width: 100%; height: 100%; content-align: center middle;
                                       color: $text-muted; }
    Inspector > VerticalScroll { height: 1fr; }
    """

    def __init__(self, graphics: str, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.graphics = graphics
        self.view: ArtifactView | None = None
        self.details: VideoDetails | None = None

    def compose(self) -> ComposeResult:
        with Container(id="inspector-preview"):
            yield image_widget(self.graphics, id="inspector-picture")
            yield Static("", id="inspector-placeholder")
        with VerticalScroll():
            yield Static("Nothing selected", id="inspector-meta")

    def show(self, view: ArtifactView | None, image: PILImage.Image | None) -> None:
        """Describe `view` (None: nothing highlighted) with its decoded picture (a
        video's first frame)."""
        self.view, self.details = view, None
        picture = self.query_one("#inspector-picture", ImageWidget)
        placeholder = self.query_one("#inspector-placeholder", Static)
        picture.image = image
        picture.display = image is not None
        placeholder.display = image is None
        if view is None:
            placeholder.update("")
            self.border_title = self.border_subtitle = ""
            self.query_one("#inspector-meta", Static).update("Nothing selected")
            return
        placeholder.update(PLACEHOLDERS.get(view.kind, "the file is missing"))
        self.border_title = f"{view.ref}{' ★' if view.starred else ''}"
        self.border_subtitle = "▶ p plays" if view.kind == "video" else ""
        self.query_one("#inspector-meta", Static).update(describe(view))

    def show_details(self, artifact_id: int, details: VideoDetails) -> None:
        """Add what opening the video told (codec, file size) when it is still shown."""
        if self.view is not None and self.view.id == artifact_id:
            self.details = details
            self.query_one("#inspector-meta", Static).update(describe(self.view, details))


def video_rows(view: ArtifactView, details: VideoDetails | None) -> list[tuple[str, str]]:
    """A video's rate (exact where it is not a whole number), frames, length, codec and
    file size; the codec and size once the file has been opened (`details`)."""
    found = video_clip(view)
    fps = found.fps if found else details.fps if details else None
    frames = found.frames if found else details.frames if details else 0
    if details is None:
        codec = file_size = "…"
    elif details.error:
        codec = file_size = details.error
    else:
        codec = details.codec + (" · with audio" if details.audio else "")
        file_size = human_size(details.file_size)
    return [
        ("fps", fps_text(fps) if fps else "—"),
        ("frames", str(frames) if frames else "—"),
        ("duration", f"{float(frames / fps):.2f} s" if fps and frames else "—"),
        ("codec", codec),
        ("file", file_size),
    ]


def describe(view: ArtifactView, details: VideoDetails | None = None) -> Text:
    """The inspector's text: one labelled line per fact, long values wrapped; a video's
    own facts (rate, frames, length) right after its prompt, where a short inspector
    still shows them."""
    meta = view.params
    stage_params = meta.get("params") or {}

    def param(name: str) -> Any:
        value = meta.get(name, stage_params.get(name))
        return "—" if value in (None, "") else value

    model_hash = meta.get("model_hash")
    parents = ", ".join(f"a{p}" for p in view.parents) or "—"
    rows: list[tuple[str, str]] = [
        ("prompt", view.prompt or "—"),
        *(video_rows(view, details) if view.kind == "video" else []),
        ("negative", str(param("negative"))),
        ("seed", "—" if view.seed is None else str(view.seed)),
        ("steps", str(param("steps"))),
        ("cfg", str(param("cfg"))),
        ("sampler", str(param("sampler"))),
        ("size", size_text(view)),
        ("model", f"{view.model or '—'}" + (f" [{model_hash}]" if model_hash else "")),
        ("stage", f"{view.stage} · {view.kind}"),
        ("run", f"r{view.run_id} · job j{view.job_id}"),
        ("parents", parents),
        ("created", view.created_at.strftime("%Y-%m-%d %H:%M:%S")),
        ("path", view.path),
        *(imported_rows(meta) if view.stage == "import" else []),
    ]
    text = Text()
    for i, (label, value) in enumerate(rows):
        if i:
            text.append("\n")
        text.append(f"{label:<8} ", style="bold")
        text.append(visible_lines(value))
    return text


def imported_rows(meta: dict[str, Any]) -> list[tuple[str, str]]:
    """An imported image's tool, original file and raw metadata (each chunk or tag as
    the tool wrote it, long ones cut; control characters are shown, not obeyed)."""
    found = meta.get("import") or {}
    rows = [
        ("source", str(meta.get("source") or "none")),
        ("original", str(found.get("original") or "—")),
    ]
    raw = meta.get("metadata") or {}
    for key, value in raw.items():
        shown = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        rows.append((f"[{key}]", clip(shown, RAW_VALUE_MAX)))
    return rows
