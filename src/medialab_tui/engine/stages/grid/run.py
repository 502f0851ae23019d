"""`grid` in the worker: the contact sheets, drawn with Pillow (no model, no torch).

The layout is worked out from the cells first (`plan_sheets`), then each sheet is
drawn: labels in Pillow's default font (built in, nothing downloaded), every image
centred in a box as large as the largest one, white where a cell has no image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from medialab_tui.engine.stages.grid.spec import GridParams
from medialab_tui.engine.sweep import label
from medialab_tui.engine.worker.context import JobContext, JobFailed, Timings
from medialab_tui.engine.worker.images import open_rgb
from medialab_tui.store.artifacts import read_png_meta_quietly

BACKGROUND = (255, 255, 255)
INK = (0, 0, 0)
MIN_FONT_PX = 12  # labels stay readable however small the cells get
MIN_CELL_PX = 8  # the smallest cell a sheet is scaled down to (as `cell_size` allows)


@dataclass
class Sheet:
    """One sheet: its title (the values of keys past the second), its column and row
    labels, and which image (an index into the job's images) sits in each slot."""

    title: str
    columns: list[str]
    rows: list[str]
    slots: dict[tuple[int, int], int] = field(default_factory=dict)  # (row, column) → image


def _ordered(values: list[Any]) -> list[Any]:
    """An axis's values: numbers ascending, anything else in the order first met."""
    unique = list(dict.fromkeys(values))
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in unique):
        return sorted(unique)
    return unique


def _text(key: str, value: Any) -> str:
    return f"{key}: {label(value)}" if value is not None else f"{key}: –"


def plan_sheets(cells: list[dict[str, Any]], columns: int | None) -> tuple[list[str], list[Sheet]]:
    """The axes (swept keys that vary, in the order they were swept) and the sheets for
    images with these cells: first key → columns, second → rows, the rest → one sheet
    per combination. Images sharing a cell go to further rows (one swept key) or
    sheets (two or more). Without a sweep: one unlabelled sheet, in order."""
    first_seen: dict[str, list[Any]] = {}
    for cell in cells:
        for key, value in cell.items():
            first_seen.setdefault(key, []).append(value)
    axes = [k for k, vs in first_seen.items() if len(set(map(repr, vs))) > 1 or len(cells) == 1]
    if not axes:
        across = columns or max(1, math.ceil(math.sqrt(len(cells))))
        sheet = Sheet("", [], [])
        sheet.slots = {(i // across, i % across): i for i in range(len(cells))}
        return [], [sheet]
    x, y, rest = axes[0], (axes[1] if len(axes) > 1 else None), axes[2:]
    xs = _ordered([c.get(x) for c in cells])
    ys = _ordered([c.get(y) for c in cells]) if y else [None]
    groups = _ordered([tuple(c.get(k) for k in rest) for c in cells]) if rest else [()]
    sheets: dict[tuple[Any, ...], Sheet] = {}
    taken: dict[tuple[Any, ...], int] = {}
    for index, cell in enumerate(cells):
        group = tuple(cell.get(k) for k in rest)
        spot = (group, cell.get(y) if y else None, cell.get(x))
        repeat = taken.get(spot, 0)
        taken[spot] = repeat + 1
        row = ys.index(spot[1]) if y else repeat
        page = (groups.index(group), repeat if y else 0)
        if page not in sheets:
            title = ", ".join(_text(k, v) for k, v in zip(rest, group, strict=True))
            sheets[page] = Sheet(
                title=title + (f" (#{repeat + 1})" if repeat else ""),
                columns=[_text(x, v) for v in xs],
                rows=[_text(y, v) for v in ys] if y else [],
            )
        sheets[page].slots[(row, xs.index(spot[2]))] = index
    return axes, [sheets[k] for k in sorted(sheets)]


def _fit(image: Image.Image, longest: int | None) -> Image.Image:
    if longest is None or max(image.size) == longest:
        return image
    scale = longest / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS)


def _scaled(images: list[Image.Image], factor: float) -> list[Image.Image]:
    """The cells `factor` times as large (each its own shape, at least 1 px a side)."""
    if factor >= 1:
        return images
    return [_fit(im, max(1, math.floor(max(im.size) * factor))) for im in images]


def fit_to_pixels(
    sheets: list[Sheet], images: list[Image.Image], params: GridParams, max_pixels: int | None
) -> tuple[list[Image.Image], float]:
    """The cells, scaled down so that the largest sheet has at most `max_pixels` pixels
    (config `max_output_pixels`), and the factor they were scaled by (1: as they were).

    The labels keep their size (their font never goes under `MIN_FONT_PX`), so the
    factor is found again until the sheet fits; a plot whose labels alone would pass
    the cap, or whose cells would go under `MIN_CELL_PX`, fails the job naming the cap."""
    factor = 1.0
    cells = images
    while max_pixels is not None:
        largest = max(_layout(sheet, cells, params).pixels for sheet in sheets)
        if largest <= max_pixels:
            break
        factor *= math.sqrt(max_pixels / largest) * 0.98
        longest = max(max(im.size) for im in images) * factor
        if longest < MIN_CELL_PX:
            raise JobFailed(
                "validation",
                f"the grid's sheet does not fit in {max_pixels:,} pixels "
                f"(max_output_pixels in config.toml) even with cells of {MIN_CELL_PX} px; "
                "make fewer cells or raise the cap",
            )
        cells = _scaled(images, factor)
    return cells, factor


def run(job: JobContext, params: GridParams) -> Timings:
    """One sheet (or one per value of the third swept key) from every image of the item."""
    paths = [Path(p) for p in job.item.images]
    if not paths:
        raise JobFailed("validation", "grid got no images")
    cells = list(job.item.cells)
    cells += [{}] * (len(paths) - len(cells))
    parents = list(job.item.parents)
    images = []
    for i, path in enumerate(paths):
        images.append(_fit(open_rgb(str(path)), params.cell_size))
        job.progress(i + 1, len(paths) + 1)
    axes, sheets = plan_sheets(cells[: len(paths)], params.columns)
    images, factor = fit_to_pixels(sheets, images, params, job.extras.max_pixels)
    cell_w = max(im.width for im in images)
    cell_h = max(im.height for im in images)
    base = job.base_meta(params)
    for number, sheet in enumerate(sheets):
        job.check_cancel()
        drawn, boxes = _draw(sheet, images, params)
        listed = []
        for (row, column), index in sorted(sheet.slots.items()):
            made = read_png_meta_quietly(paths[index])
            listed.append(
                {
                    "image": str(paths[index]),
                    "artifact": parents[index] if index < len(parents) else None,
                    "cell": cells[index],
                    "seed": made.get("seed"),
                    "row": row,
                    "column": column,
                    "box": boxes[index],
                }
            )
        meta = {
            **base,
            "grid": {
                "axes": axes,
                "along": dict(
                    zip(axes, ["columns", "rows"] + ["sheets"] * len(axes), strict=False)
                ),
                "title": sheet.title,
                "sheet": number + 1,
                "sheets": len(sheets),
                "columns": max(c for _, c in sheet.slots) + 1,
                "rows": max(r for r, _ in sheet.slots) + 1,
                "cell_width": cell_w,
                "cell_height": cell_h,
                # Below 1 when the cells were scaled down to fit max_output_pixels.
                "scale": round(factor, 4),
            },
            "cells": listed,
        }
        job.save_image(drawn, f"grid-{number + 1:02d}", meta)
    job.progress(len(paths) + 1, len(paths) + 1)
    return {"load_seconds": 0.0, "cache_hit": True}


@dataclass(frozen=True)
class Layout:
    """Where everything of a sheet goes: the font, the label margins (`left`, `top`),
    one column's width and one row's height, and the sheet's size."""

    font: ImageFont.FreeTypeFont | ImageFont.ImageFont
    font_px: int
    pad: int
    left: int
    top: int
    col_w: int
    row_h: int
    size: tuple[int, int]

    @property
    def pixels(self) -> int:
        return self.size[0] * self.size[1]

    def width_of(self, text: str) -> int:
        return math.ceil(self.font.getlength(text))


def _layout(sheet: Sheet, images: list[Image.Image], params: GridParams) -> Layout:
    """The sheet's layout with cells as large as the largest of `images`."""
    cell_w = max(im.width for im in images)
    cell_h = max(im.height for im in images)
    font_px = max(MIN_FONT_PX, min(48, round(cell_h / 8)))
    font = ImageFont.load_default(size=font_px)
    pad = font_px // 2
    labelled = params.labels

    def width_of(text: str) -> int:
        return math.ceil(font.getlength(text))

    line_h = font_px + 2 * pad
    columns = max(len(sheet.columns), max(c for _, c in sheet.slots) + 1)
    rows = max(len(sheet.rows), max(r for r, _ in sheet.slots) + 1)
    col_w = max([cell_w] + ([width_of(t) + 2 * pad for t in sheet.columns] if labelled else []))
    row_h = max(cell_h, line_h if labelled and sheet.rows else 0)
    left = max([width_of(t) + 2 * pad for t in sheet.rows], default=0) if labelled else 0
    top = (line_h if sheet.columns else 0) + (line_h if sheet.title else 0) if labelled else 0
    if labelled and sheet.title:
        # A long title widens the sheet rather than being cut.
        title_w = left + params.gap + width_of(sheet.title) + pad
    else:
        title_w = 0
    gap = params.gap
    width = max(left + gap + columns * (col_w + gap), title_w)
    size = (width, top + gap + rows * (row_h + gap))
    return Layout(font, font_px, pad, left, top, col_w, row_h, size)


def _draw(
    sheet: Sheet, images: list[Image.Image], params: GridParams
) -> tuple[Image.Image, dict[int, list[int]]]:
    """The sheet's picture and each image's box on it ([left, top, right, bottom])."""
    at = _layout(sheet, images, params)
    gap = params.gap
    canvas = Image.new("RGB", at.size, BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    if params.labels:
        line_h = at.font_px + 2 * at.pad
        if sheet.title:
            draw.text((at.left + gap, at.pad), sheet.title, fill=INK, font=at.font)
        heading = at.top - line_h
        for c, text in enumerate(sheet.columns):
            x = at.left + gap + c * (at.col_w + gap) + (at.col_w - at.width_of(text)) // 2
            draw.text((x, heading + at.pad), text, fill=INK, font=at.font)
        for r, text in enumerate(sheet.rows):
            y = at.top + gap + r * (at.row_h + gap) + (at.row_h - at.font_px) // 2
            draw.text((at.pad, y), text, fill=INK, font=at.font)
    boxes: dict[int, list[int]] = {}
    for (r, c), index in sheet.slots.items():
        image = images[index]
        x = at.left + gap + c * (at.col_w + gap) + (at.col_w - image.width) // 2
        y = at.top + gap + r * (at.row_h + gap) + (at.row_h - image.height) // 2
        canvas.paste(image, (x, y))
        boxes[index] = [x, y, x + image.width, y + image.height]
    return canvas, boxes
