"""What the store's rows hold, importable without SQLModel: statuses and times.

The command line's listings read the database with plain `sqlite3` and must not pay
for importing SQLAlchemy, so the values they share with the tables live here.
"""

from __future__ import annotations

from datetime import UTC, datetime

RUN_STATUSES = ("pending", "running", "review", "succeeded", "failed", "cancelled")
JOB_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
TERMINAL_JOB = ("succeeded", "failed", "cancelled")
TERMINAL_RUN = ("succeeded", "failed", "cancelled")


def utcnow() -> datetime:
    """Now, in UTC: every time the store keeps is UTC."""
    return datetime.now(UTC)


def iso(ts: datetime | None) -> str | None:
    """A stored time as ISO 8601 with a `Z`."""
    if ts is None:
        return None
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# Setting rows: the queue's state (`active` or `paused`) and the host's worker, as JSON.
QUEUE_KEY = "queue_state"
WORKER_KEY = "worker_info"
