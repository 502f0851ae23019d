"""Reading the TOML files people hand medialab (pipelines, `config.toml`) safely.

A hostile or broken file gets one sentence naming it, never a traceback: a file too
large to be a pipeline (1 MB), nesting deeper than any pipeline needs (tomllib
recurses per level, so 100,000 nested arrays would otherwise end in a RecursionError
thousands of lines long), a device or a folder where a file should be, bytes that are
not UTF-8, a syntax error.
"""

from __future__ import annotations

import stat
import tomllib
from pathlib import Path
from typing import Any

from medialab_tui.errors import ErrorLoc, InputError

MAX_TOML_BYTES = 1_000_000
# Tables and arrays inside each other; a pipeline needs 4 (stages → loras → a LoRA).
MAX_TOML_DEPTH = 32


def read_toml(path: Path) -> dict[str, Any]:
    """The document in the TOML file `path`, or an `InputError` located at the file."""
    return parse_toml(read_toml_text(path), str(path))


def read_toml_text(path: Path) -> str:
    """The text of the TOML file `path`: a regular file of at most 1 MB of UTF-8."""
    where = ErrorLoc(file=str(path))
    try:
        info = path.stat()
        if stat.S_ISDIR(info.st_mode):
            raise InputError("a folder, not a file", loc=where, predicate=False)
        if not stat.S_ISREG(info.st_mode):
            raise InputError("not a regular file", loc=where, predicate=False)
        if info.st_size > MAX_TOML_BYTES:
            raise InputError(_too_large(info.st_size), loc=where, predicate=False)
        with path.open("rb") as fh:
            data = fh.read(MAX_TOML_BYTES + 1)  # the file may have grown since stat
    except FileNotFoundError:
        raise InputError("no such file", loc=where, predicate=False) from None
    except OSError as exc:
        reason = exc.strerror or exc.__class__.__name__
        raise InputError(f"cannot be read ({reason})", loc=where, predicate=False) from None
    if len(data) > MAX_TOML_BYTES:
        raise InputError(_too_large(len(data)), loc=where, predicate=False)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"not UTF-8 text (byte {exc.start + 1})", loc=where, predicate=False
        ) from None


def parse_toml(text: str, source: str) -> dict[str, Any]:
    """The TOML document `text` (read from `source`), bounded in size and nesting."""
    where = ErrorLoc(file=source)
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_TOML_BYTES:
        raise InputError(_too_large(size), loc=where, predicate=False)
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"TOML syntax error: {exc}", loc=where, predicate=False) from None
    except RecursionError:
        raise InputError(_too_deep(), loc=where, predicate=False) from None
    if _depth(document) > MAX_TOML_DEPTH:
        raise InputError(_too_deep(), loc=where, predicate=False)
    return document


def _too_large(size: int) -> str:
    return f"too large ({size:,} bytes; a TOML file may have at most {MAX_TOML_BYTES:,})"


def _too_deep() -> str:
    return f"tables or arrays nest more than {MAX_TOML_DEPTH} deep"


def _depth(value: Any) -> int:
    """How deeply tables and arrays nest in `value`, without recursion (dotted keys
    build deep tables that tomllib itself reads without recursing)."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        deepest = max(deepest, depth)
        if depth > MAX_TOML_DEPTH:
            break
        stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))
    return deepest
