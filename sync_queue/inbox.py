"""The hook fast path: append one event to the ``inbox`` table and return.

Standard library only, and nothing from this package that imports persistqueue: Stash makes
the user's save wait for the hook process, whose budget (< 100 ms median, Python start-up
included) leaves room for ``sqlite3`` and ``json`` only.

Why an inbox rather than writing jobs directly: a hook must never decide anything that needs
the queue's state (merging, in-flight checks, the ledger), because hundreds of hooks run at
once and only the single processor may change jobs. An append-only table makes concurrent
hooks trivially safe: each one is a single-row INSERT under SQLite's write lock, retried on
contention, and the processor turns rows into jobs in ``JobQueue.ingest``.

Event kinds:

* ``scene``: sync this scene.
* ``scene_destroyed``: drop its pending job and ledger row.
* ``performer``, ``studio``, ``tag``, ``group``: something many scenes show changed; a processor expands
  the event into the affected scenes (the queue only keeps these until it is told they are
  done, see ``JobQueue.pending_fanout``).
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sync_queue.db import BUSY_TIMEOUT_S, LOCK_RETRIES, connect, retry_locked
from sync_queue.schema import ensure_schema

SCENE = "scene"
SCENE_DESTROYED = "scene_destroyed"
FANOUT_KINDS = frozenset({"performer", "studio", "tag", "group"})
KINDS = frozenset({SCENE, SCENE_DESTROYED}) | FANOUT_KINDS

#: The one way an event enters the inbox (the hook, the spool and a replaced database use it).
INSERT_EVENT = "INSERT INTO inbox (kind, entity_id, reason, payload, created_at) VALUES (?, ?, ?, ?, ?)"


@dataclass(frozen=True)
class InboxEvent:
    """One recorded event, as the processor reads it back."""

    event_id: int
    kind: str
    entity_id: int
    reason: str
    payload: dict[str, Any] | None
    created_at: float


def record_event(
    data_dir: Path,
    kind: str,
    entity_id: int,
    reason: str,
    now: float,
    payload: dict[str, Any] | None = None,
    wait: float | None = None,
) -> None:
    """Durably record one event; returns once it is committed.

    Raises ValueError for an unknown kind or a non-positive id, so a caller's bug is loud
    instead of becoming a job nobody can process. Creates the database and schema if this is
    the first process ever to touch it. Lock contention is retried, never raised, unless
    ``wait`` bounds it: then a lock held longer than ``wait`` seconds raises, so the hook can
    put the event in the spool instead (``sync_queue.spool``).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown event kind {kind!r}; expected one of {sorted(KINDS)}")
    if int(entity_id) <= 0:
        raise ValueError(f"entity id must be positive, got {entity_id!r}")
    row = (kind, int(entity_id), str(reason), json.dumps(payload) if payload is not None else None, float(now))
    Path(data_dir).mkdir(parents=True, exist_ok=True)
    retries = LOCK_RETRIES if wait is None else 1
    conn = connect(Path(data_dir), busy_timeout=BUSY_TIMEOUT_S if wait is None else wait, retries=retries)
    try:
        try:
            retry_locked(lambda: conn.execute(INSERT_EVENT, row), retries)
        except sqlite3.OperationalError as exc:
            if "no such table" not in str(exc):
                raise
            # First touch of a new database: an extra round-trip only this once, not per hook.
            ensure_schema(conn)
            retry_locked(lambda: conn.execute(INSERT_EVENT, row), retries)
    finally:
        conn.close()


def read_inbox(conn: sqlite3.Connection, limit: int) -> list[InboxEvent]:
    """The oldest ``limit`` events, in arrival order."""
    rows = conn.execute(
        "SELECT id, kind, entity_id, reason, payload, created_at FROM inbox ORDER BY id LIMIT ?", (limit,)
    ).fetchall()
    return [InboxEvent(r[0], r[1], r[2], r[3], json.loads(r[4]) if r[4] else None, r[5]) for r in rows]


def inbox_size(conn: sqlite3.Connection) -> int:
    return conn.execute("SELECT COUNT(*) FROM inbox").fetchone()[0]


def has_events(data_dir: Path) -> bool:
    """Whether an event waits to be turned into a job: what a processor checks before it
    lets go for good, since a hook that found the lock held started no worker. Events a
    hook had to spool count too."""
    from sync_queue.spool import has_spooled

    if has_spooled(Path(data_dir)):
        return True
    conn = connect(Path(data_dir))
    try:
        return inbox_size(conn) > 0
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return False
        raise
    finally:
        conn.close()
