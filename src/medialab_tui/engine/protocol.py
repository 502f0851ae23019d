"""The worker protocol: one JSON object per line over the worker's stdin/stdout.

Commands (engine → worker): `run`, `cancel`, `unload`, `shutdown`.
Events (worker → engine): `ready`, `started`, `progress`, `artifact`, `done`,
`failed` (with a `kind`), `cancelled`, `unloaded`.
"""

from __future__ import annotations

import json
from typing import Any, Literal

FailureKind = Literal["validation", "oom", "missing_model", "internal"]
FAILURE_KINDS: tuple[str, ...] = ("validation", "oom", "missing_model", "internal")

COMMANDS = ("run", "cancel", "unload", "shutdown")
EVENTS = (
    "ready",
    "started",
    "progress",
    "artifact",
    "done",
    "failed",
    "cancelled",
    "unloaded",
)


def encode(message: dict[str, Any]) -> bytes:
    """One message as a protocol line."""
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


def decode(line: bytes | str) -> dict[str, Any]:
    """Parse one protocol line; raises ValueError on anything but a JSON object."""
    message = json.loads(line)
    if not isinstance(message, dict):
        raise ValueError("a protocol line must hold a JSON object")
    return message
