"""Small images for the queue and review screens, drawn with textual-image.

Files are decoded in thread workers (`load_image`, `load_preview`) and the widgets
are handed a PIL image, so the event loop never reads a file the engine may be
rewriting. A video's picture is its first frame: the `<name>.thumb.png` written
beside it, else the frame decoded from the file.
`ImageWidget` is the base of every textual-image widget, with its `image` property.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image as PILImage
from PIL import UnidentifiedImageError
from textual_image.widget import BaseImage as ImageWidget
from textual_image.widget import HalfcellImage, SixelImage, TGPImage
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
