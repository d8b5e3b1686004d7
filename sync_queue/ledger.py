"""The sync ledger: per scene, what was last written to Plex.

This is what makes "dedup including recently completed rows" exact (seed 001): a bulk or
reconcile pass enqueues a scene only when its current Stash state differs from what we last
wrote, when it was never synced, or when Plex lost the item. No time window is involved, so
Sync All followed by Reconcile enqueues nothing for an unchanged library however long ago
the last sync was, and an edit made after a sync always gets through.

Standard library only. The rule itself (``needs_sync``) and the hash (``state_hash``) are
pure functions; the SQL helpers take a connection and never commit (the caller owns the
transaction).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class LedgerEntry:
    """What the last successful sync of a scene wrote.

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


def needs_sync(entry: LedgerEntry | None, current_hash: str) -> bool:
    """The ledger rule for bulk and reconcile sources."""
    return entry is None or entry.lost or entry.fields_hash != current_hash


_COLUMNS = "scene_id, fields_hash, plex_key, poster_hash, art_hash, written, synced_at, lost"


def _entry(row: tuple[Any, ...]) -> LedgerEntry:
    return LedgerEntry(row[0], row[1], row[2], row[3], row[4], json.loads(row[5]), row[6], bool(row[7]))


def get(conn: sqlite3.Connection, scene_id: int) -> LedgerEntry | None:
    row = conn.execute(f"SELECT {_COLUMNS} FROM ledger WHERE scene_id = ?", (scene_id,)).fetchone()
    return _entry(row) if row else None


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
    """Record a successful write; clears the 'lost in Plex' mark."""
    conn.execute(
        f"INSERT INTO ledger ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, 0) "
        "ON CONFLICT (scene_id) DO UPDATE SET fields_hash = excluded.fields_hash, plex_key = excluded.plex_key, "
        "poster_hash = excluded.poster_hash, art_hash = excluded.art_hash, written = excluded.written, "
        "synced_at = excluded.synced_at, lost = 0",
        (scene_id, fields_hash, plex_key, poster_hash, art_hash, json.dumps(dict(written), sort_keys=True), now),
    )


def holder(conn: sqlite3.Connection, plex_key: str, other_than: int) -> LedgerEntry | None:
    """Another scene whose live row holds this Plex item (the oldest, should there be two):
    one item, one scene (`plex.claims`)."""
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM ledger WHERE plex_key = ? AND scene_id != ? AND lost = 0 "
        "ORDER BY synced_at, scene_id LIMIT 1", (plex_key, other_than)).fetchone()
    return _entry(row) if row else None


def user_locked(conn: sqlite3.Connection, limit: int) -> tuple[int, list[tuple[int, list[str]]]]:
    """Scenes whose last sync left fields alone under someone else's Plex lock: how many,
    and the first `limit` by id with those fields (the ``user_locked`` list in ``written``)."""
    where = "json_array_length(written, '$.user_locked') > 0"
    count = conn.execute(f"SELECT COUNT(*) FROM ledger WHERE {where}").fetchone()[0]
    rows = conn.execute(f"SELECT scene_id, json_extract(written, '$.user_locked') FROM ledger WHERE {where} "
                        "ORDER BY scene_id LIMIT ?", (limit,)).fetchall()
    return count, [(row[0], json.loads(row[1])) for row in rows]


def mark_lost(conn: sqlite3.Connection, scene_id: int) -> bool:
    """Plex no longer has the item: the next bulk or reconcile pass must enqueue the scene."""
    return conn.execute("UPDATE ledger SET lost = 1 WHERE scene_id = ?", (scene_id,)).rowcount > 0


def delete(conn: sqlite3.Connection, scene_id: int) -> bool:
    return conn.execute("DELETE FROM ledger WHERE scene_id = ?", (scene_id,)).rowcount > 0


def iterate(conn: sqlite3.Connection, batch: int = 1000) -> Iterator[LedgerEntry]:
    """All entries by scene id, read in pages so a 100,000-row ledger never sits in memory."""
    last = -1
    while True:
        rows = conn.execute(
            f"SELECT {_COLUMNS} FROM ledger WHERE scene_id > ? ORDER BY scene_id LIMIT ?", (last, batch)
        ).fetchall()
        if not rows:
            return
        for row in rows:
            yield _entry(row)
        last = rows[-1][0]


def size(conn: sqlite3.Connection) -> int:
    return conn.execute("SELECT COUNT(*) FROM ledger").fetchone()[0]
