"""Ids as people type them: `r12` (run), `j40` (job), `a7` (artifact); bare numbers are runs."""

from __future__ import annotations

from sqlmodel import Session

from medialab_tui.errors import NotFound
from medialab_tui.store.db import Store
from medialab_tui.store.ids import parse_ref
from medialab_tui.store.tables import Artifact, Job, Run

__all__ = ["get", "get_row", "parse_ref"]


def get_row(session: Session, ref: str) -> Run | Job | Artifact:
    """The run, job or artifact `ref` names, or NotFound."""
    kind, ident = parse_ref(ref)
    row: Run | Job | Artifact | None
    if kind == "run":
        row = session.get(Run, ident)
    elif kind == "job":
        row = session.get(Job, ident)
    else:
        row = session.get(Artifact, ident)
    if row is None:
        raise NotFound(f"there is no {kind} {ref}")
    return row


def get(store: Store, ref: str) -> Run | Job | Artifact:
    with store.read() as s:
        return get_row(s, ref)
