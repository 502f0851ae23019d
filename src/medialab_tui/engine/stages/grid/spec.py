"""`grid`: every image of the stage before, laid out as one labelled contact sheet
(A1111's X/Y/Z plot grid).

One job takes every image at once. Images made by a sweep are placed by their cells:
the first swept key runs along the columns, the second down the rows, and the
values of any further keys make one sheet each; without a sweep the images are laid
out in order. The sheet's `medialab` chunk lists every cell: its image, its swept
values and where it sits on the sheet. A sheet never has more pixels than
`max_output_pixels` (config): the cells of a plot that would are scaled down, the
labels kept at their readable size.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from medialab_tui.engine.stages.base import ResolveContext, StageParams, StageSpec


class GridParams(StageParams):
    """Parameters of a `grid` stage."""

    type: Literal["grid"] = "grid"
    columns: int | None = Field(
        default=None, ge=1, le=256, description="Columns without a sweep (default: about square)"
    )
    cell_size: int | None = Field(
        default=None, ge=8, le=4096, description="Longest side of a cell in px (default: as made)"
    )
    gap: int = Field(default=4, ge=0, le=256, description="Pixels between cells")
    labels: bool = Field(default=True, description="Label columns, rows and sheets")


def resolve_pixel_cap(stage: GridParams, ctx: ResolveContext) -> dict[str, Any]:
    """The config's cap on an output's pixels, which the sheets are drawn to fit."""
    return {"max_pixels": ctx.max_output_pixels}


SPEC = StageSpec(
    type="grid",
    order=75,
    title="Grid (contact sheet)",
    takes="image",
    gives="image",
    params=GridParams,
    uses_model=False,
    gathers=True,
    min_gathered=1,
    guess_job_seconds=0.2,
    resolve=resolve_pixel_cap,
)
