"""A1111's "infotext": the generation parameters as text, written and read back.

The format (A1111's `modules/infotext_utils.py`, which Forge, SD.Next, Civitai and
many others follow): the prompt (any number of lines), then optionally lines starting
`Negative prompt:`, then one last line of `Key: value` pairs joined by `, `. A value
holding `,`, `:` or a newline is written as a JSON string. A last line with fewer
than three pairs is not a parameter line but part of the prompt.

`parse_infotext` is written from that documented format (the `re_param` regex, the
`Negative prompt:` and last-line rules), so what we write is read the way those tools
read it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

# A1111's `re_param`: a key (a word, then words, spaces, '-' or '/'), a colon, and a
# value that is a JSON string or runs to the next comma.
RE_PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
RE_IMAGE_SIZE = re.compile(r"^(\d+)x(\d+)$")
# Civitai's resource hashes, a JSON object written as it is (not quoted), as its
# extension writes and reads it: `Hashes: {"model": "…", "lora:name": "…"}`.
RE_HASHES = re.compile(r",?\s*Hashes:\s*(\{.*?\})")
NEGATIVE = "Negative prompt:"


class Unquoted(str):
    """A value written as it is, never quoted (Civitai's `Hashes` object)."""


def quote(value: Any) -> str:
    """A1111's quoting: a value with `,`, `:` or a newline becomes a JSON string."""
    if isinstance(value, Unquoted):
        return str(value)
    text = str(value)
    if "," not in text and ":" not in text and "\n" not in text:
        return text
    return json.dumps(text, ensure_ascii=False)


def unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        try:
            loaded = json.loads(value)
        except ValueError:
            return value
        return loaded if isinstance(loaded, str) else value
    return value


def format_infotext(prompt: str, negative: str, settings: Iterable[tuple[str, Any]]) -> str:
    """The infotext of one image: `settings` in order, empty values left out.

    The parameter line must start with `Steps: ` for Civitai to see a generation, so
    callers put `Steps` first."""
    lines = [prompt]
    if negative:
        lines.append(f"{NEGATIVE} {negative}")
    pairs = [f"{key}: {quote(value)}" for key, value in settings if value not in (None, "")]
    lines.append(", ".join(pairs))
    return "\n".join(lines)


@dataclass
class Infotext:
    """What an infotext says: the prompts and the `Key: value` pairs (raw strings)."""

    prompt: str = ""
    negative: str = ""
    params: dict[str, str] = field(default_factory=dict)

    def get(self, key: str) -> str | None:
        return self.params.get(key)


def parse_infotext(text: str) -> Infotext:
    """Read an infotext as A1111 does (and Civitai's `Hashes` object as Civitai does).
    `Size: 512x768` also gives `Size-1`/`Size-2`."""
    *lines, last = text.strip().split("\n")
    if len(RE_PARAM.findall(last)) < 3:
        lines.append(last)
        last = ""
    prompt: list[str] = []
    negative: list[str] = []
    done_with_prompt = False
    for raw in lines:
        line = raw.strip()
        if line.startswith(NEGATIVE):
            done_with_prompt = True
            line = line[len(NEGATIVE) :].strip()
        (negative if done_with_prompt else prompt).append(line)
    params: dict[str, str] = {}
    hashes = RE_HASHES.search(last)
    if hashes is not None:
        params["Hashes"] = hashes.group(1)
        last = last[: hashes.start()] + last[hashes.end() :]
    for key, value in RE_PARAM.findall(last):
        value = unquote(value)
        params[key] = value
        size = RE_IMAGE_SIZE.match(value)
        if size is not None:
            params[f"{key}-1"], params[f"{key}-2"] = size.group(1), size.group(2)
    return Infotext("\n".join(prompt), "\n".join(negative), params)


def parse_hashes(value: str | None) -> dict[str, str]:
    """`Hashes: {"model": "…", "lora:name": "…"}` (Civitai's), as a dict."""
    if not value:
        return {}
    try:
        loaded = json.loads(value)
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in loaded.items()} if isinstance(loaded, dict) else {}


def parse_lora_hashes(value: str | None) -> dict[str, str]:
    """`Lora hashes: "name: hash12, other: hash12"`, as name → hash."""
    found: dict[str, str] = {}
    for part in (value or "").split(","):
        name, sep, digest = part.rpartition(":")
        if sep and name.strip() and digest.strip():
            found[name.strip()] = digest.strip()
    return found
