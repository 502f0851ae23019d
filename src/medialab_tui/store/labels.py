"""People's tags and notes on models: cleaned at the edge, kept by model name.

A tag is a short lowercase word or phrase (`portrait`, `anime style`); tags are
given as words, each of which may hold several separated by commas. Control
characters never get into a tag or a note (they could move a terminal's cursor or
write its clipboard when shown); what is stored is shown through `text.visible` all
the same, since another program may have written the database.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from medialab_tui.errors import InputError
from medialab_tui.store.db import Store
from medialab_tui.text import visible

MAX_TAGS = 16
MAX_TAG_CHARS = 32
MAX_NOTE_CHARS = 500

# C0, DEL and C1 controls; a line break or tab in a note becomes a space.
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_SPACES = re.compile(r"\s+")


def _plain(text: str) -> str:
    """`text` on one line with no control characters and single spaces."""
    return _SPACES.sub(" ", _CONTROLS.sub(" ", text.replace("\r\n", " "))).strip()


def clean_tags(words: Iterable[str]) -> tuple[str, ...]:
    """The tags `words` name, as stored: split at commas, lowercase, single-spaced,
    control characters dropped, each once, in the order given.

    `InputError` (nothing stored) for a tag longer than `MAX_TAG_CHARS` or more than
    `MAX_TAGS` of them.
    """
    tags: list[str] = []
    for word in words:
        for part in word.split(","):
            tag = _plain(part).lower()
            if not tag or tag in tags:
                continue
            if len(tag) > MAX_TAG_CHARS:
                raise InputError(
                    f"the tag '{visible(tag[:40])}…' is longer than {MAX_TAG_CHARS} characters"
                )
            tags.append(tag)
    if len(tags) > MAX_TAGS:
        raise InputError(f"a model takes at most {MAX_TAGS} tags ({len(tags)} given)")
    return tuple(tags)


def clean_note(text: str) -> str:
    """A note as stored: one line, control characters dropped; `InputError` when it is
    longer than `MAX_NOTE_CHARS`."""
    note = _plain(text)
    if len(note) > MAX_NOTE_CHARS:
        raise InputError(f"a note takes at most {MAX_NOTE_CHARS} characters ({len(note)} given)")
    return note


@dataclass(frozen=True)
class Labels:
    """A model's tags and note as they are after a change."""

    name: str
    tags: tuple[str, ...]
    note: str


def label_model(
    store: Store,
    name: str,
    *,
    tags: Iterable[str] | None = None,
    add: Iterable[str] = (),
    remove: Iterable[str] = (),
    note: str | None = None,
) -> Labels:
    """Change the labels of the registered model `name`, in one transaction with its
    audit event: `tags` replaces them all, then `add` and `remove` change them; a
    `note` replaces the note ("" clears it). Values are cleaned as `clean_tags` and
    `clean_note` say; an unknown model name is an `InputError` and nothing is stored.
    """
    from medialab_tui.store.tables import ModelLabel, utcnow

    replace = None if tags is None else clean_tags(tags)
    added, removed = clean_tags(add), set(clean_tags(remove))
    new_note = None if note is None else clean_note(note)
    with store.write() as s:
        # Only the model's id is needed: read without loading the whole registry row.
        model = s.connection().exec_driver_sql("SELECT id FROM model WHERE name = ?", (name,))
        model_id = model.scalar()
        if model_id is None:
            raise InputError(
                f"there is no model named '{visible(name)}' (`medialab models list` "
                "shows their names)"
            )
        existing = s.get(ModelLabel, name)
        row = existing or ModelLabel(name=name)
        current = tuple(row.tags) if replace is None else replace
        kept = [t for t in (*current, *added) if t not in removed]
        final = clean_tags(kept)
        row.tags = list(final)
        if new_note is not None:
            row.note = new_note
        row.updated_at = utcnow()
        if row.tags or row.note:
            s.add(row)
        elif existing is not None:  # nothing left to keep
            s.delete(existing)
        store.record(s, "model.label", "model", model_id, name=name, tags=row.tags, note=row.note)
        return Labels(name, final, row.note)


def tags_in_use(store: Store) -> list[tuple[str, int]]:
    """Every tag on a registered model with how many models carry it, by tag."""
    with store.reading() as conn:
        rows = conn.execute(
            "SELECT tag.value, count(*) FROM modellabel AS label"
            " JOIN model ON model.name = label.name, json_each(label.tags) AS tag"
            " GROUP BY tag.value ORDER BY tag.value"
        ).fetchall()
    return [(str(tag), int(count)) for tag, count in rows]
