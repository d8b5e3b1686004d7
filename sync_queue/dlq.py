"""Dead letters: jobs that ran out of attempts or failed permanently.

One row per scene (a scene dead-lettered again replaces its row but keeps the first failure
time), so the list a user reads is a list of scenes, not of attempts. A later successful sync
of the scene removes its row (see ``JobQueue.complete``): a dead letter that no longer
describes reality would only mislead.

Standard library only; the helpers never commit, the caller owns the transaction.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

from sync_queue.db import named, write_txn

DAY_S = 86_400.0


@dataclass(frozen=True)
class DeadLetter:
    scene_id: int
    error_class: str
    message: str
    detail: str | None
    attempts: int
    reasons: tuple[str, ...]
    first_failed_at: float
    last_failed_at: float
    #: The Stash state a bulk or reconcile pass queued the scene for, if one did; a later pass
    #: that sees the same state leaves the letter alone.
    state_hash: str | None = None


@dataclass(frozen=True)
class DlqGroup:
    """Dead letters sharing an error class, for ``queue_status``."""

    error_class: str
    count: int
    oldest_failed_at: float
    newest_failed_at: float
    sample_scene_ids: tuple[int, ...]


_COLUMNS = "scene_id, error_class, message, detail, attempts, reasons, first_failed_at, last_failed_at, state_hash"


def _letter(row: sqlite3.Row) -> DeadLetter:
    return DeadLetter(row["scene_id"], row["error_class"], row["message"], row["detail"], row["attempts"],
                      tuple(json.loads(row["reasons"])), row["first_failed_at"], row["last_failed_at"],
                      row["state_hash"])


def add(
    conn: sqlite3.Connection,
    scene_id: int,
    error_class: str,
    message: str,
    detail: str | None,
    attempts: int,
    reasons: Sequence[str],
    first_failed_at: float,
    now: float,
    state_hash: str | None = None,
) -> None:
    conn.execute(
        f"INSERT INTO dlq ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (scene_id) DO UPDATE SET error_class = excluded.error_class, message = excluded.message, "
        "detail = excluded.detail, attempts = excluded.attempts, reasons = excluded.reasons, "
        "first_failed_at = MIN(dlq.first_failed_at, excluded.first_failed_at), last_failed_at = excluded.last_failed_at, "
        "state_hash = excluded.state_hash",
        (scene_id, error_class, message, detail, attempts, json.dumps(list(reasons)), first_failed_at, now, state_hash),
    )


def state_hash_of(conn: sqlite3.Connection, scene_id: int) -> str | None:
    """The state a scene's dead letter was queued for; None if unknown or no letter."""
    row = named(conn).execute("SELECT state_hash FROM dlq WHERE scene_id = ?", (scene_id,)).fetchone()
    return row["state_hash"] if row else None


def list_all(conn: sqlite3.Connection, error_class: str | None = None, limit: int | None = None) -> list[DeadLetter]:
    """Newest failure first; at most `limit` of them (None: all)."""
    where, args = ("WHERE error_class = ? ", [error_class]) if error_class is not None else ("", [])
    rows = named(conn).execute(
        f"SELECT {_COLUMNS} FROM dlq {where}ORDER BY last_failed_at DESC, scene_id LIMIT ?",
        (*args, -1 if limit is None else limit),
    ).fetchall()
    return [_letter(r) for r in rows]


def summary(conn: sqlite3.Connection, samples: int = 5) -> list[DlqGroup]:
    """Grouped by error class, largest group first."""
    groups = named(conn).execute(
        "SELECT error_class, COUNT(*) AS count, MIN(last_failed_at) AS oldest, MAX(last_failed_at) AS newest "
        "FROM dlq GROUP BY error_class ORDER BY COUNT(*) DESC, error_class"
    ).fetchall()
    result = []
    for group in groups:
        ids = named(conn).execute(
            "SELECT scene_id FROM dlq WHERE error_class = ? ORDER BY scene_id LIMIT ?", (group["error_class"], samples)
        )
        result.append(DlqGroup(group["error_class"], group["count"], group["oldest"], group["newest"],
                               tuple(r["scene_id"] for r in ids)))
    return result


def remove(conn: sqlite3.Connection, scene_id: int) -> bool:
    return conn.execute("DELETE FROM dlq WHERE scene_id = ?", (scene_id,)).rowcount > 0


def purge_older_than(conn: sqlite3.Connection, older_than_days: float, now: float) -> int:
    """Drop letters whose last failure is more than ``older_than_days`` before ``now``."""
    if older_than_days < 0:
        raise ValueError("older_than_days must not be negative")
    cutoff = now - older_than_days * DAY_S
    return conn.execute("DELETE FROM dlq WHERE last_failed_at < ?", (cutoff,)).rowcount


def clear(conn: sqlite3.Connection) -> int:
    return conn.execute("DELETE FROM dlq").rowcount


def size(conn: sqlite3.Connection) -> int:
    return named(conn).execute("SELECT COUNT(*) FROM dlq").fetchone()[0]


class DeadLetterTable:
    """The dead-letter verbs the tasks use, on the queue's connection; each write its own
    transaction. Re-queueing letters spans two tables and is ``JobQueue.retry_dlq``."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def list_all(self, error_class: str | None = None, limit: int | None = None) -> list[DeadLetter]:
        return list_all(self._conn, error_class, limit)

    def summary(self) -> list[DlqGroup]:
        return summary(self._conn)

    def purge(self, older_than_days: float, now: float) -> int:
        with write_txn(self._conn) as conn:
            return purge_older_than(conn, older_than_days, now)

    def clear(self) -> int:
        with write_txn(self._conn) as conn:
            return clear(conn)
