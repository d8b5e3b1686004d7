"""The sync ledger: per scene, what was last written to Plex.

This is what keeps a bulk or reconcile pass from requeueing work already done: a pass enqueues a scene only when its current Stash state differs from what we last
wrote, when it was never synced, or when Plex lost the item. No time window is involved, so
Sync All followed by Reconcile enqueues nothing for an unchanged library however long ago
the last sync was, and an edit made after a sync always gets through.

The locks in flight (table ``locks_in_flight``) belong to the same record: per scene, the
Plex item and the locks a write may set on it, noted before the write goes out, so a
process killed between Plex taking an edit and its ledger row still counts the locks that
edit set as its own. The row that records the write (``put``) clears them in the same
transaction; a failed attempt leaves them, since its edit may have landed; a scene that is
forgotten (``delete``) loses them too. Plex losing the item (``mark_lost``) leaves them:
they name their item and count on it only. One row per scene at most, so they cannot pile up.

Standard library only. The rule itself (``needs_sync``) and the hash (``state_hash``) are
pure functions; the SQL helpers take a connection and never commit (the caller owns the
transaction).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from sync_queue.db import named, write_txn

#: Key of ``written`` under which the worker keeps the Stash ids a sync showed
#: (``{"performer": [..], "studio": [..], "tag": [..]}``).
LEDGER_REFS = "refs"


@dataclass(frozen=True)
class LedgerRow:
    """A scene's ledger row: the columns the ledger rule and the queries read, and in
    ``written`` the whole record the last successful sync kept (``plex.records.LedgerEntry``
    as a dict, plus the Stash ids it showed under ``LEDGER_REFS``).

    ``written`` holds the values themselves (not just their hash) because a three-way merge
    with edits made in Plex needs to know what we wrote last time.
    """

    scene_id: int
    fields_hash: str
    plex_key: str | None
    poster_hash: str | None
    art_hash: str | None
    written: dict[str, Any]
    synced_at: float
    lost: bool


def state_hash(fields: Mapping[str, Any]) -> str:
    """sha256 of canonical JSON (sorted keys, no spaces, UTF-8).

    Stable across processes and Python versions. Lists keep their order, so a caller whose
    lists are sets in spirit (tags, performers) should sort them first. Values must be JSON
    types: a silent ``default=str`` would make two different states hash alike.
    """
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def needs_sync(entry: LedgerRow | None, current_hash: str) -> bool:
    """The ledger rule for bulk and reconcile sources."""
    return entry is None or entry.lost or entry.fields_hash != current_hash


_COLUMNS = "scene_id, fields_hash, plex_key, poster_hash, art_hash, written, synced_at, lost"


def _entry(row: sqlite3.Row) -> LedgerRow:
    return LedgerRow(row["scene_id"], row["fields_hash"], row["plex_key"], row["poster_hash"], row["art_hash"],
                       json.loads(row["written"]), row["synced_at"], bool(row["lost"]))


def get(conn: sqlite3.Connection, scene_id: int) -> LedgerRow | None:
    row = named(conn).execute(f"SELECT {_COLUMNS} FROM ledger WHERE scene_id = ?", (scene_id,)).fetchone()
    return _entry(row) if row else None


#: Ids per `IN (...)` list: well under SQLite's oldest limit on bound parameters (999).
_IN_CHUNK = 500


def get_many(conn: sqlite3.Connection, scene_ids: Iterable[int]) -> dict[int, LedgerRow]:
    """The rows of `scene_ids` that exist, by scene id: a page of a pass in one query, not one per scene."""
    ids = list(dict.fromkeys(scene_ids))
    out: dict[int, LedgerRow] = {}
    for i in range(0, len(ids), _IN_CHUNK):
        chunk = ids[i:i + _IN_CHUNK]
        rows = named(conn).execute(
            f"SELECT {_COLUMNS} FROM ledger WHERE scene_id IN ({','.join('?' * len(chunk))})", chunk).fetchall()
        out.update((row["scene_id"], _entry(row)) for row in rows)
    return out


def put(
    conn: sqlite3.Connection,
    scene_id: int,
    fields_hash: str,
    plex_key: str | None,
    poster_hash: str | None,
    art_hash: str | None,
    written: Mapping[str, Any],
    now: float,
) -> None:
    """Record a successful write; clears the 'lost in Plex' mark and the locks in flight."""
    conn.execute(
        f"INSERT INTO ledger ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, 0) "
        "ON CONFLICT (scene_id) DO UPDATE SET fields_hash = excluded.fields_hash, plex_key = excluded.plex_key, "
        "poster_hash = excluded.poster_hash, art_hash = excluded.art_hash, written = excluded.written, "
        "synced_at = excluded.synced_at, lost = 0",
        (scene_id, fields_hash, plex_key, poster_hash, art_hash, json.dumps(dict(written), sort_keys=True), now),
    )
    conn.execute("DELETE FROM locks_in_flight WHERE scene_id = ?", (scene_id,))  # `written` holds them now


def holder(conn: sqlite3.Connection, plex_key: str, other_than: int) -> LedgerRow | None:
    """Another scene whose live row holds this Plex item (the oldest, should there be two):
    one item, one scene (`plex.claims`)."""
    row = named(conn).execute(
        f"SELECT {_COLUMNS} FROM ledger WHERE plex_key = ? AND scene_id != ? AND lost = 0 "
        "ORDER BY synced_at, scene_id LIMIT 1", (plex_key, other_than)).fetchone()
    return _entry(row) if row else None


def user_locked(conn: sqlite3.Connection, limit: int) -> tuple[int, list[tuple[int, list[str]]]]:
    """Scenes whose last sync left fields alone under someone else's Plex lock: how many,
    and the first `limit` by id with those fields (the ``user_locked`` list in ``written``)."""
    where = "json_array_length(written, '$.user_locked') > 0"
    count = conn.execute(f"SELECT COUNT(*) FROM ledger WHERE {where}").fetchone()[0]
    rows = named(conn).execute(f"SELECT scene_id, json_extract(written, '$.user_locked') AS fields FROM ledger "
                               f"WHERE {where} ORDER BY scene_id LIMIT ?", (limit,)).fetchall()
    return count, [(row["scene_id"], json.loads(row["fields"])) for row in rows]


def mark_lost(conn: sqlite3.Connection, scene_id: int) -> bool:
    """Plex no longer has the item: the next bulk or reconcile pass must enqueue the scene."""
    return conn.execute("UPDATE ledger SET lost = 1 WHERE scene_id = ?", (scene_id,)).rowcount > 0


def delete(conn: sqlite3.Connection, scene_id: int) -> bool:
    """Forget the scene: its row and its locks in flight."""
    conn.execute("DELETE FROM locks_in_flight WHERE scene_id = ?", (scene_id,))
    return conn.execute("DELETE FROM ledger WHERE scene_id = ?", (scene_id,)).rowcount > 0


def in_flight(conn: sqlite3.Connection, scene_id: int) -> tuple[str, frozenset[str]] | None:
    """The Plex item and the locks a write not recorded yet may have set on it, if any."""
    row = conn.execute("SELECT plex_key, locks FROM locks_in_flight WHERE scene_id = ?", (scene_id,)).fetchone()
    return (row[0], frozenset(json.loads(row[1]))) if row else None


def note_in_flight(conn: sqlite3.Connection, scene_id: int, plex_key: str, locks: Iterable[str], now: float) -> None:
    """Before a write goes out: the locks it may set on the item (none: the row goes)."""
    names = sorted(set(locks))
    if not names:
        conn.execute("DELETE FROM locks_in_flight WHERE scene_id = ?", (scene_id,))
        return
    conn.execute(
        "INSERT INTO locks_in_flight (scene_id, plex_key, locks, noted_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (scene_id) DO UPDATE SET plex_key = excluded.plex_key, locks = excluded.locks, "
        "noted_at = excluded.noted_at", (scene_id, plex_key, json.dumps(names), now))


def iterate(conn: sqlite3.Connection, batch: int = 1000) -> Iterator[LedgerRow]:
    """All entries by scene id, read in pages so a 100,000-row ledger never sits in memory."""
    last = -1
    while True:
        rows = named(conn).execute(
            f"SELECT {_COLUMNS} FROM ledger WHERE scene_id > ? ORDER BY scene_id LIMIT ?", (last, batch)
        ).fetchall()
        if not rows:
            return
        for row in rows:
            yield _entry(row)
        last = rows[-1]["scene_id"]


def size(conn: sqlite3.Connection) -> int:
    return conn.execute("SELECT COUNT(*) FROM ledger").fetchone()[0]


def scenes_referencing(conn: sqlite3.Connection, kind: str, entity_ids: Iterable[int], after: int = 0,
                       limit: int = 1000) -> list[int]:
    """Scenes whose last sync showed one of these performers/studios/tags, by scene id.

    Reads ``written[LEDGER_REFS][kind]`` (ids the worker stores at sync time), because
    after a delete or merge Stash no longer relates any scene to the old id. A full scan
    of the ledger, inside SQLite: it serves deletes and merges, which are rare.
    """
    ids = sorted({int(i) for i in entity_ids})
    if not ids:
        return []
    marks = ", ".join("?" for _ in ids)
    rows = named(conn).execute(
        f"SELECT DISTINCT l.scene_id FROM ledger AS l, json_each(l.written, ?) AS j "
        f"WHERE l.scene_id > ? AND j.value IN ({marks}) ORDER BY l.scene_id LIMIT ?",
        (f"$.{LEDGER_REFS}.{kind}", after, *ids, limit),
    )
    return [r["scene_id"] for r in rows]


#: A member's place in groups when it is in none (most scenes): one shared, read-only mapping.
NO_GROUPS: Mapping[str, int | None] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Member:
    """A scene our ledger says we put in a collection: its item and its place in its groups.
    Slotted, and sharing `NO_GROUPS`: a flush holds one per item of every collection."""

    scene_id: int
    plex_key: str
    group_index: Mapping[str, int | None]
    released: str | None = None  # the item's release date as our last sync left it (None: unknown)


def collection_members(conn: sqlite3.Connection, section: str, titles: Iterable[str]) -> dict[str, list[Member]]:
    """Per title (case folded), the live scenes whose last sync put their item in `section`
    into a collection of that name (``written.collection`` of the record ``plex`` keeps).

    One pass over the ledger for all titles, inside SQLite: a flush of many collections
    costs one scan, not one per collection."""
    folded = sorted({t.casefold() for t in titles})
    out: dict[str, list[Member]] = {t: [] for t in folded}
    if not folded:
        return out
    rows = named(conn).execute(
        "SELECT l.scene_id, l.plex_key, j.value AS title, json_extract(l.written, '$.group_index') AS idx, "
        "json_extract(l.written, '$.released') AS released "
        "FROM ledger AS l, json_each(l.written, '$.written.collection') AS j "
        "WHERE l.lost = 0 AND l.plex_key IS NOT NULL AND json_extract(l.written, '$.section_id') = ? "
        "ORDER BY l.scene_id", (section,))
    for row in rows:
        title = str(row["title"]).casefold()
        if title in out:
            idx = row["idx"]
            out[title].append(Member(row["scene_id"], str(row["plex_key"]),
                                     json.loads(idx) if idx and idx != "{}" else NO_GROUPS, row["released"]))
    return out


class LedgerTable:
    """The ledger verbs callers use, on the queue's connection; each write its own transaction."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def get(self, scene_id: int) -> LedgerRow | None:
        return get(self._conn, scene_id)

    def get_many(self, scene_ids: Iterable[int]) -> dict[int, LedgerRow]:
        return get_many(self._conn, scene_ids)

    def put(self, scene_id: int, fields_hash: str, plex_key: str | None, poster_hash: str | None,
            art_hash: str | None, written: Mapping[str, Any], now: float) -> None:
        """Record what a successful sync wrote; call before ``JobQueue.complete`` for that job."""
        with write_txn(self._conn) as conn:
            put(conn, scene_id, fields_hash, plex_key, poster_hash, art_hash, written, now)

    def mark_lost(self, scene_id: int) -> bool:
        with write_txn(self._conn) as conn:
            return mark_lost(conn, scene_id)

    def in_flight(self, scene_id: int) -> tuple[str, frozenset[str]] | None:
        return in_flight(self._conn, scene_id)

    def note_in_flight(self, scene_id: int, plex_key: str, locks: Iterable[str], now: float) -> None:
        """Committed before the write is handed on: a kill after Plex took it must find it."""
        with write_txn(self._conn) as conn:
            note_in_flight(conn, scene_id, plex_key, locks, now)

    def iterate(self) -> Iterator[LedgerRow]:
        return iterate(self._conn)

    def holder(self, plex_key: str, other_than: int) -> LedgerRow | None:
        return holder(self._conn, plex_key, other_than)

    def user_locked(self, limit: int) -> tuple[int, list[tuple[int, list[str]]]]:
        return user_locked(self._conn, limit)

    def scenes_referencing(self, kind: str, entity_ids: Iterable[int], after: int = 0,
                           limit: int = 1000) -> list[int]:
        return scenes_referencing(self._conn, kind, entity_ids, after, limit)

    def collection_members(self, section: str, titles: Iterable[str]) -> dict[str, list[Member]]:
        return collection_members(self._conn, section, titles)
