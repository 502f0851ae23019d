"""Errors a user can cause, carried as values with one clear sentence.

An `InputError` keeps where the mistake is as data (`ErrorLoc`: the file, the
stage, the key) beside the words that describe it; the sentence people read is
rendered from both at the edge, and the builder finds the field from `loc`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any


class MedialabError(Exception):
    """Base class: the message is shown to the user as it is."""

    exit_code = 1


@dataclass(frozen=True)
class ErrorLoc:
    """Where an input error is: a file (or other source), a stage (1-based, as people
    count), and a key inside that stage or the file (`steps`, `loras[0].model`,
    `inputs.images`). An `inputs.…` key is the file's: a stage beside it is the one
    the inputs fail (the sentence names it in its text)."""

    file: str | None = None
    stage: int | None = None
    stage_type: str | None = None
    key: str | None = None

    @property
    def file_key(self) -> bool:
        """True when the key is one of the file's own (`inputs.…`), not a stage's."""
        return bool(self.key) and (self.key or "").split(".")[0] in ("inputs", "name", "mode")

    def parts(self) -> list[str]:
        """The location as the leading parts of a sentence."""
        parts = [self.file] if self.file else []
        if self.stage is not None and not self.file_key:
            parts.append(
                f"stage {self.stage}" + (f" ({self.stage_type})" if self.stage_type else "")
            )
        if self.key:
            parts.append(f"key '{self.key}'")
        return parts


class InputError(MedialabError):
    """Invalid input: a pipeline file, a flag, an id. Nothing was changed.

    `text` says what is wrong. A `predicate` text continues the key (or the stage)
    in `loc` ("must be at most 500", "takes images but …"); otherwise it is a clause
    of its own, after a colon ("LoRA 'x' is for sdxl models").
    """

    exit_code = 2

    def __init__(self, text: str, *, loc: ErrorLoc | None = None, predicate: bool = True) -> None:
        self.text = text
        self.loc = loc or ErrorLoc()
        self.predicate = predicate
        super().__init__(self.sentence)

    @property
    def sentence(self) -> str:
        """The one sentence users see."""
        parts = self.loc.parts()
        if not parts:
            return self.text
        head = ": ".join(parts)
        continues = self.loc.key or self.loc.stage is not None
        joiner = " " if continues and self.predicate else ": "
        return f"{head}{joiner}{self.text}"

    def to_dict(self) -> dict[str, Any]:
        """The error as JSON values (a host's reply to a client), back with `of_dict`."""
        return {"text": self.text, "loc": asdict(self.loc), "predicate": self.predicate}

    @classmethod
    def of_dict(cls, value: Mapping[str, Any]) -> InputError:
        fields = ErrorLoc.__dataclass_fields__
        loc = {k: v for k, v in dict(value.get("loc") or {}).items() if k in fields}
        return cls(
            str(value.get("text", "invalid input")),
            loc=ErrorLoc(**loc),
            predicate=bool(value.get("predicate", True)),
        )

    def at(self, file: str | None = None, stage: int | None = None) -> InputError:
        """This error with more of its location filled in (what is known stays)."""
        loc = replace(self.loc, file=self.loc.file or file, stage=self.loc.stage or stage)
        return type(self)(self.text, loc=loc, predicate=self.predicate)


# How a pydantic type error names what was wanted (`int_type` → "an integer").
_WANTED = {
    "int": "an integer",
    "float": "a number",
    "string": "text",
    "bool": "true or false",
    "list": "a list",
    "dict": "a table",
    "model": "a table",
    "path": "a path",
}


def describe_invalid(err: Mapping[str, Any]) -> str:
    """One pydantic validation error (an item of `ValidationError.errors()`) as the end
    of a sentence about its key: "must be at least 1 (got 0)", "is not a known key".

    Shared by pipeline files and `config.toml`, so both say the same thing the same way.
    """
    kind = str(err.get("type", ""))
    ctx = err.get("ctx") or {}
    got = err.get("input")
    shown = repr(got) if len(repr(got)) <= 60 else repr(got)[:59] + "…"
    tail = f" (got {shown})" if kind not in ("missing", "extra_forbidden") else ""
    if kind == "extra_forbidden":
        return "is not a known key"
    if kind == "missing":
        return "is required"
    if kind == "greater_than_equal":
        return f"must be at least {_number(ctx.get('ge'))}{tail}"
    if kind == "greater_than":
        return f"must be greater than {_number(ctx.get('gt'))}{tail}"
    if kind == "less_than_equal":
        return f"must be at most {_number(ctx.get('le'))}{tail}"
    if kind == "multiple_of":
        return f"must be a multiple of {ctx.get('multiple_of')}{tail}"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected')}{tail}"
    if kind == "string_too_long":
        return f"must be at most {ctx.get('max_length')} characters (got {len(str(got))})"
    if kind in ("too_short", "string_too_short"):
        return f"must not be empty{tail}"
    if kind.endswith("_type") or kind.endswith("_parsing"):
        wanted = kind.removesuffix("_type").removesuffix("_parsing")
        return f"must be {_WANTED.get(wanted, wanted)}{tail}"
    return str(err.get("msg", "is invalid")).rstrip(".").replace("Value error, ", "")


def _number(value: object) -> object:
    """A bound as people write it: 0 rather than 0.0."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def key_path(loc: tuple[Any, ...]) -> str:
    """A pydantic error location as people write the key: `loras[0].model`."""
    return ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in loc).replace(".[", "[")


class NotFound(InputError):
    """An id or a name that the store does not know."""


class EngineUnavailable(MedialabError):
    """No engine could be reached or started."""

    exit_code = 4
