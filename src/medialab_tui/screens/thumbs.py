"""Small images for the queue and review screens, drawn with textual-image.

Files are decoded in thread workers (`load_image`, `load_preview`) and the widgets
are handed a PIL image, so the event loop never reads a file the engine may be
rewriting. A video's picture is its first frame: the `<name>.thumb.png` written
beside it, else the frame decoded from the file.
`ImageWidget` is the base of every textual-image widget, with its `image` property.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from PIL import Image as PILImage
from PIL import UnidentifiedImageError
from rich.color import Color, ColorType
from rich.color_triplet import ColorTriplet
from rich.console import Console, ConsoleOptions
from rich.segment import Segment
from rich.style import Style
from textual_image.renderable import Image as AutoRenderable
from textual_image.renderable.halfcell import Image as HalfcellRenderable
from textual_image.widget import BaseImage as ImageWidget
from textual_image.widget import HalfcellImage, SixelImage, TGPImage, get_cell_size
from textual_image.widget import Image as AutoImage

# `graphics` in config.toml names a protocol; "auto" lets textual-image ask the terminal.
IMAGE_WIDGETS: dict[str, type[HalfcellImage | SixelImage | TGPImage]] = {
    "halfcell": HalfcellImage,
    "kitty": TGPImage,
    "sixel": SixelImage,
}


def image_widget(
    graphics: str,
    image: PILImage.Image | None = None,
    *,
    id: str | None = None,
    classes: str | None = None,
) -> ImageWidget:
    """A textual-image widget for the configured graphics protocol."""
    return IMAGE_WIDGETS.get(graphics, AutoImage)(image, id=id, classes=classes)


# Cells of half-cell video frames, by their (upper, lower) colours: a clip repeats its
# colours frame after frame. Forgotten all at once when it grows past this.
HALFCELL_CACHE = 1 << 17
_halfcells: dict[int, Segment] = {}


def _truecolor(rgb: int) -> Color:
    triplet = ColorTriplet(rgb >> 16, rgb >> 8 & 0xFF, rgb & 0xFF)
    return Color(f"#{rgb:06x}", ColorType.TRUECOLOR, None, triplet)


class _HalfcellFrame(HalfcellRenderable):
    """textual-image's half-cell picture, drawn for video: each cell's (upper, lower)
    colour pair becomes a segment once and is reused in later frames, where the
    library makes two colours and a style for every cell of every frame."""

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> Iterator[Segment]:
        import numpy as np

        width, height = self._render_size.get_cell_size(
            options.max_width, options.max_height, get_cell_size()
        )
        if width <= 0 or height <= 0:
            return
        image = self._image_data.pil_image
        if image.size != (width, height * 2):
            image = image.resize((width, height * 2), PILImage.Resampling.BILINEAR)
        pixels = np.asarray(image.convert("RGB"), dtype=np.uint32)
        packed = pixels[..., 0] << 16 | pixels[..., 1] << 8 | pixels[..., 2]
        pairs = packed[0::2].astype(np.uint64) << 24 | packed[1::2]
        if len(_halfcells) > HALFCELL_CACHE:
            _halfcells.clear()
        newline = Segment.line()
        for row in pairs.tolist():
            for pair in row:
                cell = _halfcells.get(pair)
                if cell is None:
                    style = Style.from_color(_truecolor(pair >> 24), _truecolor(pair & 0xFFFFFF))
                    cell = _halfcells[pair] = Segment("▀", style)
                yield cell
            yield newline


class HalfcellFrameImage(ImageWidget, Renderable=_HalfcellFrame):
    """A textual-image widget for frames shown one after another (the player)."""


def frame_widget(graphics: str, *, classes: str | None = None) -> ImageWidget:
    """The widget the player shows frames in: the fast half-cell one where half cells
    are what the configured (or detected) protocol draws, else `image_widget`'s."""
    halfcell = graphics == "halfcell" or (
        graphics not in IMAGE_WIDGETS and AutoRenderable is HalfcellRenderable
    )
    if halfcell:
        return HalfcellFrameImage(classes=classes)
    return image_widget(graphics, classes=classes)


def load_image(path: str | Path, max_side: int = 256) -> PILImage.Image | None:
    """Decode an image file into memory, shrunk to `max_side`; None if it is missing or bad.

    Blocking: call it from a thread worker.
    """
    try:
        with PILImage.open(path) as im:
            image = im.convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError):
        return None
    image.thumbnail((max_side, max_side))
    return image


def video_thumb_path(path: str | Path) -> Path:
    """The first-frame thumbnail written beside a video: `<name>.thumb.png`."""
    return Path(path).with_suffix(".thumb.png")


def load_preview(kind: str, path: str | Path, max_side: int = 256) -> PILImage.Image | None:
    """The picture of an artifact of `kind`: an image itself, a video's first frame
    (its thumbnail file, else decoded from the video); None for texts and bad files.

    Blocking: call it from a thread worker.
    """
    if kind == "image":
        return load_image(path, max_side)
    if kind != "video":
        return None
    image = load_image(video_thumb_path(path), max_side)
    if image is not None:
        return image
    import av

    from medialab_tui.errors import MedialabError
    from medialab_tui.store.videos import first_frame

    try:
        image = first_frame(Path(path)).convert("RGB")
    except (MedialabError, av.error.FFmpegError, OSError, IndexError):
        return None  # missing, not a video, or no video stream: no picture, like a bad PNG
    image.thumbnail((max_side, max_side))
    return image


def cell_width(image: PILImage.Image, rows: int) -> int:
    """Columns that show `image` `rows` cells high at its aspect (a cell is about 1:2)."""
    return max(1, round(rows * 2 * image.width / max(1, image.height)))
