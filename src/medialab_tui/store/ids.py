"""Ids as people type them: `r12` (run), `j40` (job), `a7` (artifact); bare numbers are runs."""

from __future__ import annotations

from medialab_tui.errors import InputError

KINDS = {"r": "run", "j": "job", "a": "artifact"}
# Ids are SQLite integers: 64-bit, so no id is larger than this.
MAX_ID = 2**63 - 1


def parse_ref(ref: str) -> tuple[str, int]:
    """`r12` → ("run", 12), `j3` → ("job", 3), `a7` → ("artifact", 7); bare numbers are runs."""
    text = ref.strip().lower()
    kind = "run"
    if text[:1] in KINDS:
        kind, text = KINDS[text[0]], text[1:]
    # ASCII digits only: str.isdigit() also takes "²" and other scripts' digits.
    shown = ref if len(ref) <= 40 else ref[:39] + "…"
    if not (text.isascii() and text.isdigit()):
        raise InputError(f"'{shown}' is not an id (ids look like r12, j40 or a7)")
    if len(text) > len(str(MAX_ID)) or int(text) > MAX_ID:
        raise InputError(f"'{shown}' is not an id: no id is larger than {MAX_ID}")
    return kind, int(text)
