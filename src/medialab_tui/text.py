"""Small text helpers shared by the command line and the screens."""

from __future__ import annotations


def human_size(n: int) -> str:
    """Bytes as people read them: `812 B`, `6.5 MB`, `2.1 GB`."""
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"


def human_seconds(seconds: float) -> str:
    """`12.5 s`, `4.2 min`, `1.5 h`."""
    if seconds < 90:
        return f"{seconds:.1f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _shown_controls() -> dict[int, str]:
    """How each control character is shown: C0 and DEL in caret notation (`^[`, `^G`,
    `^?`), C1 (U+0080–U+009F, which some terminals obey like ESC sequences) by name."""
    shown = {code: "^" + chr(code ^ 0x40) for code in (*range(0x20), 0x7F)}
    shown.update({code: f"<U+{code:04X}>" for code in range(0x80, 0xA0)})
    return shown


_ONE_LINE = {**_shown_controls(), ord("\n"): "⏎"}
_LINES = {code: text for code, text in _ONE_LINE.items() if chr(code) not in "\n\t"}


def visible(text: str) -> str:
    """`text` safe to print on one line of a terminal: every control character shown
    instead of obeyed (`\\x1b` → `^[`, `\\x9b` → `<U+009B>`, a newline → `⏎`).

    Prompts, names, paths and typed ids can hold escape sequences (OSC 52 writes the
    clipboard, OSC 0 the window title); everything people or files wrote passes
    through here, or `visible_lines`, before it reaches a terminal. JSON output does
    not: `json.dumps` escapes control characters itself and must stay exact.
    """
    return text.translate(_ONE_LINE)


def visible_lines(text: str) -> str:
    """Like `visible`, but line breaks (and tabs) stay: for multi-line prompts and
    sentences. A `\\r\\n` is one line break; any other carriage return is shown (`^M`)."""
    return text.replace("\r\n", "\n").translate(_LINES)
