"""Small images for the queue and review screens, drawn with textual-image.

Files are decoded in thread workers (`load_image`) and the widgets are handed a
PIL image, so the event loop never reads a file the engine may be rewriting.
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


def cell_width(image: PILImage.Image, rows: int) -> int:
    """Columns that show `image` `rows` cells high at its aspect (a cell is about 1:2)."""
    return max(1, round(rows * 2 * image.width / max(1, image.height)))
