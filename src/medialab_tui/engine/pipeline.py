"""Pipeline files (SPEC §4): parsing, validation and clear errors.

Every error names the file, the stage and the key, e.g.
`portraits.toml: stage 1 (txt2img): key 'steps' must be at most 500 (got 900)`.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from medialab_tui.engine.stages import PLANNED, STAGES, StageParams
from medialab_tui.engine.stages.base import SEED_MAX, PromptText
from medialab_tui.engine.sweep import check_sweep
from medialab_tui.errors import ErrorLoc, InputError, describe_invalid, key_path
from medialab_tui.text import visible
from medialab_tui.tomlfile import read_toml


class Inputs(BaseModel):
    """`[inputs]`: what the first stage consumes."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    prompts: list[PromptText] = Field(default_factory=list)
    negative: PromptText = ""
    images: list[str] = Field(default_factory=list)
    videos: list[str] = Field(default_factory=list)
    seeds: list[int] | None = None
    seed: int | None = None
    count: int | None = Field(default=None, ge=1, le=100_000)

    @model_validator(mode="after")
    def _check_seeds(self) -> Inputs:
        if self.seeds is not None and (self.seed is not None or self.count is not None):
            raise ValueError("use either 'seeds' or 'seed' with 'count', not both")
        if self.seeds is not None and not self.seeds:
            raise ValueError("'seeds' is empty")
        for value in [*(self.seeds or []), *([self.seed] if self.seed is not None else [])]:
            if not 0 <= value <= SEED_MAX:
                raise ValueError(f"seed {value} is outside 0…{SEED_MAX}")
        return self

    def seed_list(self, fallback: int) -> list[int]:
        """The seeds to expand over; `fallback` stands in for an unset `seed`."""
        if self.seeds is not None:
            return list(self.seeds)
        base = self.seed if self.seed is not None else fallback
        return [(base + i) % (SEED_MAX + 1) for i in range(self.count or 1)]


class Pipeline(BaseModel):
    """A validated pipeline: top-level keys plus one typed model per stage."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    name: str = Field(default="pipeline", min_length=1)
    mode: Literal["auto", "checkpoint", "manual"] = "auto"
    expand: Literal["product", "zip"] = "product"
    inputs: Inputs = Field(default_factory=Inputs)
    stages: tuple[StageParams, ...]

    def to_dict(self) -> dict[str, Any]:
        """Plain data for the store and for saving back to TOML."""
        return {
            "name": self.name,
            "mode": self.mode,
            "expand": self.expand,
            "inputs": self.inputs.model_dump(exclude_none=True),
            "stages": [s.model_dump(exclude_none=True) for s in self.stages],
        }


_TOP_KEYS = ("name", "mode", "expand", "inputs", "stages")


def _first_error(exc: ValidationError, where: ErrorLoc, prefix: tuple[str, ...] = ()) -> InputError:
    err = exc.errors()[0]
    loc = prefix + tuple(err.get("loc", ()))
    if not loc:
        return InputError(describe_invalid(err), loc=where, predicate=False)
    if not err.get("loc"):  # a rule across keys, e.g. seeds vs seed
        rule_key = "inputs.seeds" if prefix == ("inputs",) else key_path(loc)
        return InputError(describe_invalid(err), loc=replace(where, key=rule_key), predicate=False)
    return InputError(describe_invalid(err), loc=replace(where, key=key_path(loc)))


def parse_stage(raw: Any, index: int, source: str) -> StageParams:
    """Validate one `[[stages]]` table; `index` counts from 1 as people do."""
    where = ErrorLoc(file=source, stage=index)
    if not isinstance(raw, dict):
        raise InputError(f"stage {index} must be a table", loc=ErrorLoc(file=source))
    stype = raw.get("type")
    if stype is None:
        raise InputError("is required", loc=replace(where, key="type"))
    if stype not in STAGES:
        if stype in PLANNED:
            raise InputError(
                f"stage type '{stype}' is not available in this "
                f"version yet (available: {', '.join(STAGES)})",
                loc=where,
                predicate=False,
            )
        raise InputError(
            f"unknown stage type {stype!r} (known: {', '.join([*STAGES, *PLANNED])})",
            loc=where,
            predicate=False,
        )
    try:
        stage = STAGES[stype].params.model_validate(raw)
    except ValidationError as exc:
        raise _first_error(exc, replace(where, stage_type=stype)) from None
    check_sweep(stage, raw, replace(where, stage_type=stype))
    return stage


# Control characters other than tabs and line breaks have no place in a prompt or a
# name: they would reach terminals raw (the builder's text fields draw them as they
# are) and every image's metadata.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def _check_text(value: Any, path: tuple[Any, ...], source: str) -> None:
    """Refuse a string anywhere in the document that holds a control character."""
    if isinstance(value, str):
        if (found := _CONTROL.search(value)) is not None:
            in_stage = path[:1] == ("stages",) and len(path) > 2
            raise InputError(
                f"holds a control character ({visible(found.group())} at character "
                f"{found.start() + 1}); remove it",
                loc=ErrorLoc(
                    file=source,
                    stage=path[1] + 1 if in_stage else None,
                    key=key_path(path[2:] if in_stage else path),
                ),
            )
    elif isinstance(value, dict):
        for k, v in value.items():
            _check_text(v, (*path, k), source)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_text(v, (*path, i), source)


def parse_pipeline(data: dict[str, Any], source: str, default_name: str = "pipeline") -> Pipeline:
    """Validate a pipeline given as plain data (a parsed TOML document)."""
    file = ErrorLoc(file=source)
    for key in data:
        if key not in _TOP_KEYS:
            raise InputError(f"unknown top-level key '{visible(str(key))}'", loc=file)
    _check_text(data, (), source)
    raw_stages = data.get("stages")
    if not isinstance(raw_stages, list) or not raw_stages:
        raise InputError("at least one [[stages]] table is required", loc=file)
    stages = tuple(parse_stage(raw, i, source) for i, raw in enumerate(raw_stages, start=1))
    top = {k: v for k, v in data.items() if k != "stages"}
    top.setdefault("name", default_name)
    raw_inputs = top.get("inputs", {})
    if not isinstance(raw_inputs, dict):
        raise InputError("must be a table", loc=replace(file, key="inputs"))
    try:
        inputs = Inputs.model_validate(raw_inputs)
    except ValidationError as exc:
        raise _first_error(exc, file, prefix=("inputs",)) from None
    try:
        pipeline = Pipeline.model_validate({**top, "inputs": inputs, "stages": stages})
    except ValidationError as exc:
        raise _first_error(exc, file) from None
    check_stage_chain(pipeline, source)
    return pipeline


def check_stage_chain(pipeline: Pipeline, source: str) -> None:
    """Each stage must take what the one before it gives (SPEC §4)."""
    first = STAGES[pipeline.stages[0].type]
    inputs = pipeline.inputs
    stage_one = f"stage 1 ({first.type})"
    given = {"image": inputs.images, "video": inputs.videos}
    if first.takes == "prompt" and not [p for p in inputs.prompts if p.strip()]:
        raise InputError(
            f"must hold at least one prompt for {stage_one}",
            loc=ErrorLoc(file=source, stage=1, key="inputs.prompts"),
        )
    for kind, paths in given.items():
        if paths and first.takes != kind:
            raise InputError(
                f"{stage_one} takes {first.takes}s, not {kind}s",
                loc=ErrorLoc(file=source, stage=1, key=f"inputs.{kind}s"),
                predicate=False,
            )
    if first.takes in given and not given[first.takes]:
        raise InputError(
            f"must list at least one {first.takes} for {stage_one}",
            loc=ErrorLoc(file=source, stage=1, key=f"inputs.{first.takes}s"),
        )
    pairs = zip(pipeline.stages, pipeline.stages[1:], strict=False)
    for i, (prev, cur) in enumerate(pairs, start=2):
        gives = STAGES[prev.type].gives
        takes = STAGES[cur.type].takes
        if gives != takes:
            raise InputError(
                f"takes {takes}s but stage {i - 1} ({prev.type}) gives {gives}s",
                loc=ErrorLoc(file=source, stage=i, stage_type=cur.type),
            )


def load_pipeline_file(path: Path) -> Pipeline:
    """Read and validate a pipeline TOML file (at most 1 MB, nesting bounded)."""
    return parse_pipeline(read_toml(path), str(path), default_name=path.stem)
