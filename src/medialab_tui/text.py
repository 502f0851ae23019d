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
