"""What the watch-history import has done: one row per Plex play, and a cursor per account scope.

A play's key (Plex's `historyKey`) and the cursor past it are written in ONE transaction
(`commit_page`), after that page's plays were sent to Stash. A process killed before the
commit leaves neither, so the page is read again; the plays it had already sent are then
found in Stash at their minute and recorded as such instead of being sent twice (see
`watch.plan.plays_to_add`). A process killed after the commit never sees those plays again.

Standard library only; helpers take a connection and, except `commit_page`, never commit.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sync_queue.db import connect, db_path, write_txn
from sync_queue.schema import ensure_schema

#: Outcomes that put (or found) the play in Stash: they count when a minute is compared.
IN_STASH = ("added", "in_stash")


@dataclass(frozen=True)
class PlayRecord:
    """One Plex play dealt with: `outcome` is added, in_stash, no_scene or other_library."""

    play_key: str
    scene_id: int | None
    rating_key: str | None
    account_id: int | None
    viewed_at: int
    outcome: str


@dataclass(frozen=True)
class Cursor:
    """Where the import of one account scope continues; `last_run` is its last summary."""

    scope: str
    viewed_at: int
    resume_at: int | None
    updated_at: float
    last_run: dict[str, Any]


def open_log(data_dir: Path, create: bool = True) -> sqlite3.Connection:
    """Our database; with `create` off (a dry run) a missing one is an empty one in memory,
    so looking creates no file."""
    if not create and not db_path(Path(data_dir)).exists():
        conn = sqlite3.connect(":memory:", isolation_level=None)
    else:
        conn = connect(Path(data_dir))
    ensure_schema(conn)
    return conn


def cursor(conn: sqlite3.Connection, scope: str) -> Cursor | None:
    row = conn.execute("SELECT scope, viewed_at, resume_at, updated_at, last_run FROM watch_cursor WHERE scope = ?",
                       (scope,)).fetchone()
    return _cursor(row) if row else None


def latest(conn: sqlite3.Connection) -> Cursor | None:
    """The scope imported most recently, for status reports."""
    row = conn.execute("SELECT scope, viewed_at, resume_at, updated_at, last_run FROM watch_cursor "
                       "ORDER BY updated_at DESC LIMIT 1").fetchone()
    return _cursor(row) if row else None


def _cursor(row: tuple[Any, ...]) -> Cursor:
    return Cursor(row[0], int(row[1]), None if row[2] is None else int(row[2]), float(row[3]),
                  json.loads(row[4]) if row[4] else {})


def known(conn: sqlite3.Connection, keys: Iterable[str]) -> set[str]:
    """Which of these play keys were dealt with before."""
    found: set[str] = set()
    wanted = list(keys)
    for start in range(0, len(wanted), 500):
        chunk = wanted[start:start + 500]
        marks = ",".join("?" * len(chunk))
        found.update(r[0] for r in conn.execute(f"SELECT play_key FROM watch_plays WHERE play_key IN ({marks})", chunk))
    return found


def recorded_minutes(conn: sqlite3.Connection, scene_ids: Iterable[int]) -> Counter[tuple[int, int]]:
    """Plays recorded as in Stash, counted per (scene, minute)."""
    counts: Counter[tuple[int, int]] = Counter()
    ids = sorted(set(scene_ids))
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        marks = ",".join("?" * len(chunk))
        rows = conn.execute(
            f"SELECT scene_id, viewed_at / 60, COUNT(*) FROM watch_plays WHERE scene_id IN ({marks}) "
            f"AND outcome IN ({','.join('?' * len(IN_STASH))}) GROUP BY scene_id, viewed_at / 60",
            [*chunk, *IN_STASH])
        for scene_id, minute, count in rows:
            counts[(int(scene_id), int(minute))] += int(count)
    return counts


def scenes_for_items(conn: sqlite3.Connection, rating_keys: Iterable[str]) -> dict[str, int]:
    """The sync ledger read backwards: Plex item -> the scene we synced to it."""
    out: dict[str, int] = {}
    keys = sorted(set(rating_keys))
    for start in range(0, len(keys), 500):
        chunk = keys[start:start + 500]
        marks = ",".join("?" * len(chunk))
        for plex_key, scene_id in conn.execute(
                f"SELECT plex_key, scene_id FROM ledger WHERE plex_key IN ({marks}) AND lost = 0", chunk):
            out[str(plex_key)] = int(scene_id)
    return out


def commit_page(conn: sqlite3.Connection, scope: str, plays: Sequence[PlayRecord], viewed_at: int,
                now: float) -> None:
    """Record a page's plays and move the cursor, atomically. A key logged before keeps its
    first record; any other failure (a record the table refuses) fails the whole page."""
    with write_txn(conn):
        conn.executemany(
            "INSERT INTO watch_plays (play_key, scene_id, rating_key, account_id, viewed_at, outcome, recorded_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (play_key) DO NOTHING",
            [(p.play_key, p.scene_id, p.rating_key, p.account_id, p.viewed_at, p.outcome, now) for p in plays])
        conn.execute(
            "INSERT INTO watch_cursor (scope, viewed_at, updated_at) VALUES (?, ?, ?) ON CONFLICT (scope) DO UPDATE "
            "SET viewed_at = max(watch_cursor.viewed_at, excluded.viewed_at), updated_at = excluded.updated_at",
            (scope, viewed_at, now))


def unmatched(conn: sqlite3.Connection, account_id: int | None, limit: int) -> list[PlayRecord]:
    """Plays logged without a scene (of one account, or of any with None), oldest first."""
    rows = conn.execute(
        "SELECT play_key, scene_id, rating_key, account_id, viewed_at, outcome FROM watch_plays "
        "WHERE outcome = 'no_scene' AND rating_key IS NOT NULL AND (? IS NULL OR account_id = ?) "
        "ORDER BY viewed_at LIMIT ?", (account_id, account_id, limit)).fetchall()
    return [PlayRecord(r[0], r[1], r[2], r[3], int(r[4]), r[5]) for r in rows]


def resolve(conn: sqlite3.Connection, plays: Sequence[PlayRecord], now: float) -> None:
    """Give plays logged without a scene their new outcome, atomically; a play resolved
    meanwhile (by another run) keeps what it has."""
    with write_txn(conn):
        conn.executemany(
            "UPDATE watch_plays SET scene_id = ?, outcome = ?, recorded_at = ? WHERE play_key = ? "
            "AND outcome = 'no_scene'",
            [(p.scene_id, p.outcome, now, p.play_key) for p in plays])


def finish_run(conn: sqlite3.Connection, scope: str, resume_at: int | None, summary: dict[str, Any],
               now: float) -> None:
    """Remember the resume scan's high-water mark and what the run did."""
    with write_txn(conn):
        conn.execute(
            "INSERT INTO watch_cursor (scope, viewed_at, resume_at, updated_at, last_run) VALUES (?, 0, ?, ?, ?) "
            "ON CONFLICT (scope) DO UPDATE SET resume_at = coalesce(excluded.resume_at, watch_cursor.resume_at), "
            "updated_at = excluded.updated_at, last_run = excluded.last_run",
            (scope, resume_at, now, json.dumps(summary, sort_keys=True)))

