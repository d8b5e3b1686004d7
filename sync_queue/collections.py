"""The collections table: the Plex collections this plugin owns, and what it last wrote to each.

A row exists only for a collection we created (Plex did not list its name when one of our
item edits first put a scene into it). A collection a person made in Plex never gets a row,
so nothing but the items' own tags ever touches it. A row is keyed by where the collection
lives and what it stands for: (Plex section, kind, Stash id), so a renamed group keeps its
collection, its poster and its order.

Columns: `title` and `wanted` (summary, image URL, whether it is ordered) are what it should
show; `written` is what we last wrote (name, summary, poster source and hash, member order);
`past` keeps the names it had before (folded, newest last, at most `PAST_NAMES`): an item
edit that carried an old name and landed after a rename (from a process that died with
its request on the way, say) makes a collection under it, and only the name tells us that
collection and its items are ours. `dirty` says its collection-level writes are due: set when a scene joins or leaves, when the
group changed in Stash (a fan-out), cleared when a flush wrote it. `attempts` counts failed
flushes; a row that failed `MAX_ATTEMPTS` times is left alone until the next change marks it
again, so a collection Plex refuses cannot cost requests on every drain.

Standard library only; functions take a connection and never commit; `CollectionTable` is the
same verbs on the queue's connection, one transaction each.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sync_queue.db import named, write_txn

MAX_ATTEMPTS = 5
PAST_NAMES = 8


@dataclass(frozen=True)
class CollectionRow:
    section: str
    kind: str
    source_id: str
    title: str
    rating_key: str | None
    wanted: dict[str, Any]
    written: dict[str, Any]
    dirty: bool
    attempts: int
    last_error: str | None
    updated_at: float
    past: tuple[str, ...] = ()

    @property
    def key(self) -> tuple[str, str, str]:
        return self.section, self.kind, self.source_id


_COLUMNS = ("section, kind, source_id, title, rating_key, wanted, written, dirty, attempts, last_error, updated_at, "
            "past")


def _row(row: sqlite3.Row) -> CollectionRow:
    return CollectionRow(row["section"], row["kind"], row["source_id"], row["title"], row["rating_key"],
                         json.loads(row["wanted"]), json.loads(row["written"]), bool(row["dirty"]),
                         row["attempts"], row["last_error"], row["updated_at"], tuple(json.loads(row["past"])))


def get(conn: sqlite3.Connection, section: str, kind: str, source_id: str) -> CollectionRow | None:
    row = named(conn).execute(f"SELECT {_COLUMNS} FROM collections WHERE section = ? AND kind = ? AND source_id = ?",
                              (section, kind, source_id)).fetchone()
    return _row(row) if row else None


def by_title(conn: sqlite3.Connection, section: str, titles: Iterable[str]) -> list[CollectionRow]:
    """Our rows in `section` whose title is one of `titles` (ignoring case, as Plex does)."""
    folded = sorted({t.casefold() for t in titles})
    if not folded:
        return []
    rows = named(conn).execute(f"SELECT {_COLUMNS} FROM collections WHERE section = ?", (section,)).fetchall()
    return [_row(r) for r in rows if r["title"].casefold() in folded]


def _renamed_past(conn: sqlite3.Connection, key: tuple[str, str, str], title: str | None) -> None:
    """Before a row takes `title`: its current name joins its past names, if it changes."""
    row = conn.execute("SELECT title, past FROM collections WHERE section = ? AND kind = ? AND source_id = ?",
                       key).fetchone()
    if row is None or title is None or row[0].casefold() == title.casefold():
        return
    past = [p for p in json.loads(row[1]) if p not in (row[0].casefold(), title.casefold())]
    past = (past + [row[0].casefold()])[-PAST_NAMES:]
    conn.execute("UPDATE collections SET past = ? WHERE section = ? AND kind = ? AND source_id = ?",
                 (json.dumps(past), *key))


def claim(conn: sqlite3.Connection, section: str, kind: str, source_id: str, title: str,
          wanted: Mapping[str, Any], now: float) -> None:
    """A collection our edit is about to create is ours from now on; its writes are due."""
    _renamed_past(conn, (section, kind, source_id), title)
    conn.execute(
        "INSERT INTO collections (section, kind, source_id, title, rating_key, wanted, written, dirty, attempts, "
        "last_error, updated_at) VALUES (?, ?, ?, ?, NULL, ?, '{}', 1, 0, NULL, ?) "
        "ON CONFLICT (section, kind, source_id) DO UPDATE SET title = excluded.title, wanted = excluded.wanted, "
        "dirty = 1, attempts = 0, updated_at = excluded.updated_at",
        (section, kind, source_id, title, json.dumps(dict(wanted), sort_keys=True), now))


def touch(conn: sqlite3.Connection, section: str, kind: str, source_id: str, now: float,
          title: str | None = None, wanted: Mapping[str, Any] | None = None) -> bool:
    """Mark our row due (with its new name and wanted fields, when given); False if not ours."""
    _renamed_past(conn, (section, kind, source_id), title)
    return conn.execute(
        "UPDATE collections SET dirty = 1, attempts = 0, updated_at = ?, title = COALESCE(?, title), "
        "wanted = COALESCE(?, wanted) WHERE section = ? AND kind = ? AND source_id = ?",
        (now, title, json.dumps(dict(wanted), sort_keys=True) if wanted is not None else None,
         section, kind, source_id)).rowcount > 0


def touch_source(conn: sqlite3.Connection, kind: str, source_id: str, now: float,
                 title: str | None = None, wanted: Mapping[str, Any] | None = None) -> int:
    """Mark due every section's row of one Stash entity (a group changed in Stash)."""
    rows = named(conn).execute("SELECT section FROM collections WHERE kind = ? AND source_id = ?",
                               (kind, source_id)).fetchall()
    return sum(touch(conn, r["section"], kind, source_id, now, title, wanted) for r in rows)


def by_past_title(conn: sqlite3.Connection, section: str, titles: Iterable[str]) -> list[CollectionRow]:
    """Our rows in `section` that had one of `titles` (ignoring case) as a past name."""
    folded = {t.casefold() for t in titles}
    if not folded:
        return []
    rows = named(conn).execute(f"SELECT {_COLUMNS} FROM collections WHERE section = ? AND past != '[]'",
                               (section,)).fetchall()
    return [row for row in map(_row, rows) if folded.intersection(row.past)]


def due(conn: sqlite3.Connection) -> list[CollectionRow]:
    """Rows whose writes are due, failed ones past `MAX_ATTEMPTS` left out."""
    rows = named(conn).execute(f"SELECT {_COLUMNS} FROM collections WHERE dirty = 1 AND attempts < ? "
                               "ORDER BY section, kind, source_id", (MAX_ATTEMPTS,)).fetchall()
    return [_row(r) for r in rows]


def done(conn: sqlite3.Connection, row: CollectionRow, rating_key: str, written: Mapping[str, Any],
         now: float) -> None:
    """The flush wrote the row; it stays due if a change marked it again meanwhile."""
    conn.execute(
        "UPDATE collections SET rating_key = ?, written = ?, attempts = 0, last_error = NULL, "
        "dirty = CASE WHEN updated_at > ? THEN 1 ELSE 0 END WHERE section = ? AND kind = ? AND source_id = ?",
        (rating_key, json.dumps(dict(written), sort_keys=True), row.updated_at, *row.key))


def unwritten(conn: sqlite3.Connection, row: CollectionRow, keys: Iterable[str], now: float) -> None:
    """Forget what we wrote for `keys` (Plex shows something else now) and make the row due,
    so the next flush writes those parts again."""
    written = {k: v for k, v in row.written.items() if k not in set(keys)}
    conn.execute("UPDATE collections SET written = ?, dirty = 1, attempts = 0, updated_at = ? "
                 "WHERE section = ? AND kind = ? AND source_id = ?",
                 (json.dumps(written, sort_keys=True), now, *row.key))


def failed(conn: sqlite3.Connection, row: CollectionRow, error: str) -> None:
    conn.execute("UPDATE collections SET attempts = attempts + 1, last_error = ? "
                 "WHERE section = ? AND kind = ? AND source_id = ?", (error, *row.key))


def forget(conn: sqlite3.Connection, row: CollectionRow) -> None:
    conn.execute("DELETE FROM collections WHERE section = ? AND kind = ? AND source_id = ?", row.key)


def all_rows(conn: sqlite3.Connection) -> list[CollectionRow]:
    rows = named(conn).execute(f"SELECT {_COLUMNS} FROM collections ORDER BY section, kind, source_id").fetchall()
    return [_row(r) for r in rows]


def counts(conn: sqlite3.Connection) -> dict[str, int]:
    """Owned collections by kind, plus how many are due and how many gave up."""
    out = {kind: n for kind, n in conn.execute("SELECT kind, COUNT(*) FROM collections GROUP BY kind")}
    out["due"] = conn.execute("SELECT COUNT(*) FROM collections WHERE dirty = 1 AND attempts < ?",
                              (MAX_ATTEMPTS,)).fetchone()[0]
    out["failed"] = conn.execute("SELECT COUNT(*) FROM collections WHERE dirty = 1 AND attempts >= ?",
                                 (MAX_ATTEMPTS,)).fetchone()[0]
    return out


class CollectionTable:
    """The verbs on the queue's connection; each write its own transaction."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def get(self, section: str, kind: str, source_id: str) -> CollectionRow | None:
        return get(self._conn, section, kind, source_id)

    def by_title(self, section: str, titles: Iterable[str]) -> list[CollectionRow]:
        return by_title(self._conn, section, titles)

    def by_past_title(self, section: str, titles: Iterable[str]) -> list[CollectionRow]:
        return by_past_title(self._conn, section, titles)

    def claim(self, section: str, kind: str, source_id: str, title: str, wanted: Mapping[str, Any],
              now: float) -> None:
        with write_txn(self._conn) as conn:
            claim(conn, section, kind, source_id, title, wanted, now)

    def touch(self, section: str, kind: str, source_id: str, now: float, title: str | None = None,
              wanted: Mapping[str, Any] | None = None) -> bool:
        with write_txn(self._conn) as conn:
            return touch(conn, section, kind, source_id, now, title, wanted)

    def touch_source(self, kind: str, source_id: str, now: float, title: str | None = None,
                     wanted: Mapping[str, Any] | None = None) -> int:
        with write_txn(self._conn) as conn:
            return touch_source(conn, kind, source_id, now, title, wanted)

    def due(self) -> list[CollectionRow]:
        return due(self._conn)

    def done(self, row: CollectionRow, rating_key: str, written: Mapping[str, Any], now: float) -> None:
        with write_txn(self._conn) as conn:
            done(conn, row, rating_key, written, now)

    def unwritten(self, row: CollectionRow, keys: Iterable[str], now: float) -> None:
        with write_txn(self._conn) as conn:
            unwritten(conn, row, keys, now)

    def failed(self, row: CollectionRow, error: str) -> None:
        with write_txn(self._conn) as conn:
            failed(conn, row, error)

    def forget(self, row: CollectionRow) -> None:
        with write_txn(self._conn) as conn:
            forget(conn, row)

    def all(self) -> list[CollectionRow]:
        return all_rows(self._conn)

    def counts(self) -> dict[str, int]:
        return counts(self._conn)
