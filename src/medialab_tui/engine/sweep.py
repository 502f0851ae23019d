"""Sweeps (A1111's X/Y/Z plot): `sweep = { cfg = [4, 7], steps = [10, 20] }` on a
generation stage makes its jobs over the product of the listed values.

Each combination is a *cell* (`{"cfg": 4, "steps": 10}`, in the order the keys are
written); every job of the stage is made once per cell, its parameters holding the
cell's values and its item the cell itself, which every output records in its
metadata and passes down the chain, so a later `grid` stage can lay the images out
by their cells. `seed` is swept as the item's seed; every other key is one of the
stage's own and each of its values is held to the same rules as the key itself.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from pydantic import ValidationError

from medialab_tui.engine.stages import STAGES, StageParams
from medialab_tui.engine.stages.base import SEED_MAX, ModelProblem
from medialab_tui.errors import ErrorLoc, InputError, describe_invalid, key_path

SWEEP_KEY = "sweep"
# Keys a sweep may not vary: what the stage is, and what is resolved once at submit
# (its model, LoRAs, ControlNet) or does not change the image (review).
_FIXED = ("type", "model", "loras", "control", "detector", "review", SWEEP_KEY)
# More cells than this in one stage is a mistake, not a plot.
MAX_CELLS = 10_000

Cell = dict[str, Any]


def sweep_of(stage: StageParams) -> dict[str, list[Any]]:
    """The stage's sweep table ({} when it has none)."""
    return dict(getattr(stage, SWEEP_KEY, None) or {})


def cells(stage: StageParams) -> list[Cell]:
    """Every combination of the stage's swept values, the first key changing slowest
    ([{}]: a stage without a sweep makes its jobs once)."""
    table = sweep_of(stage)
    keys = list(table)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*table.values())]


def apply_cell(stage: StageParams, cell: Cell) -> StageParams:
    """The stage as one cell runs it: the cell's stage keys set, no sweep left."""
    if SWEEP_KEY not in type(stage).model_fields:
        return stage
    update: dict[str, Any] = {k: v for k, v in cell.items() if k != "seed"}
    return stage.model_copy(update={**update, SWEEP_KEY: None})


def check_sweep(stage: StageParams, raw: dict[str, Any], where: ErrorLoc) -> None:
    """Refuse a sweep that is not a table of non-empty lists, names a key the stage
    does not have, or holds a value the key itself would refuse (the same sentence,
    at `sweep.<key>`)."""
    table = raw.get(SWEEP_KEY)
    if table is None:
        return
    at = replace(where, key=SWEEP_KEY)
    spec = STAGES[stage.type]
    fields = spec.params.model_fields
    sweepable = [k for k in fields if k not in _FIXED] + ["seed"]
    count = 1
    for key, values in table.items():
        loc = replace(where, key=f"{SWEEP_KEY}.{key}")
        if key not in sweepable:
            what = "a key sweep cannot vary" if key in fields else "not a key of this stage"
            raise InputError(
                f"'{key}' is {what}; it sweeps {', '.join(sweepable)}", loc=at, predicate=False
            )
        if not isinstance(values, list):
            raise InputError(f"must be a list of values (got {values!r})", loc=loc)
        if not values:
            raise InputError("is an empty list; give it one value or more", loc=loc)
        for value in values:
            _check_value(spec.params, raw, key, value, loc)
        count *= len(values)
    if count > MAX_CELLS:
        raise InputError(
            f"makes {count:,} combinations; a sweep may make at most {MAX_CELLS:,}", loc=at
        )


def _check_value(
    params: type[StageParams], raw: dict[str, Any], key: str, value: Any, loc: ErrorLoc
) -> None:
    if key == "seed":
        if not isinstance(value, int) or isinstance(value, bool):
            raise InputError(f"must hold integers (got {value!r})", loc=loc)
        if not 0 <= value <= SEED_MAX:
            raise InputError(f"holds seed {value}, outside 0…{SEED_MAX}", loc=loc)
        return
    try:
        params.model_validate({**raw, SWEEP_KEY: None, key: value})
    except ValidationError as exc:
        err = exc.errors()[0]
        inner = tuple(err.get("loc", ()))
        rest = key_path(inner[1:]) if inner[:1] == (key,) else ""
        at = replace(
            loc, key=f"{loc.key}{'.' + rest if rest and not rest.startswith('[') else rest}"
        )
        raise InputError(describe_invalid(err), loc=at) from None


def describe(stage: StageParams) -> str:
    """`cfg 4, 7 × steps 10, 20` ("" without a sweep), as the dry run shows the axes."""
    return " × ".join(
        f"{key} {', '.join(label(v) for v in values)}" for key, values in sweep_of(stage).items()
    )


def label(value: Any) -> str:
    """A swept value as labels show it: 4 rather than 4.0."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return f"{value:g}" if isinstance(value, float) else str(value)


def model_problem(
    check: Callable[[Any, str], str | ModelProblem | None] | None, stage: StageParams, arch: str
) -> str | ModelProblem | None:
    """What a stage's model rule (`StageSpec.check_model`) finds wrong with the stage,
    or else with any cell of its sweep (a swept key's problem placed at `sweep.<key>`)."""
    if check is None:
        return None
    problem = check(stage, arch)
    for cell in cells(stage) if problem is None and sweep_of(stage) else []:
        problem = check(apply_cell(stage, cell), arch)
        if isinstance(problem, ModelProblem) and problem.key in cell:
            return ModelProblem(problem.text, f"{SWEEP_KEY}.{problem.key}")
        if problem is not None:
            return problem
    return problem
