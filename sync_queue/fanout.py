"""The fan-out table: performer/studio/tag changes waiting to be expanded into scenes.

One row per (kind, entity): a second event for the same performer merges into the row
instead of adding one, so a burst of edits to one tag is expanded once. The expansion itself
(which scenes show the entity, and queueing them) is ``reconciliation.fanout``; it stores how
far it got under ``payload[FANOUT_CURSOR]`` so a crash resumes there, and deletes the row when
done.

The functions take a connection and never commit (the caller owns the transaction);
``FanOutTable`` is the same verbs on the queue's connection, one transaction each.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sync_queue.db import named, write_txn
from sync_queue.inbox import InboxEvent
from sync_queue.schedule import merge_reasons

#: Key of a fan-out row's payload that holds its resume cursor.
FANOUT_CURSOR = "cursor"


@dataclass(frozen=True)
class FanOutEvent:
    """A performer/studio/tag change waiting to be expanded into scenes by a processor."""

    event_id: int
    kind: str
    entity_id: int
    reasons: tuple[str, ...]
    payload: dict[str, Any] | None
    created_at: float


def merge_fanout_payload(stored: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> str | None:
    """A fan-out row's payload after another event for the same entity merged into it.

    Lists (the tags a merge removed) are united, so two merges into one tag both count; the
    resume cursor is dropped, since the new event may concern scenes a pass already passed.
    """
    merged: dict[str, Any] = {k: v for k, v in (stored or {}).items() if k != FANOUT_CURSOR}
    for key, value in (new or {}).items():
        old = merged.get(key)
        if isinstance(old, list) and isinstance(value, list) and all(isinstance(v, int) for v in old + value):
            merged[key] = sorted(set(old) | set(value))
        else:
            merged[key] = value
    return json.dumps(merged) if merged else None


def _loads(text: str | None) -> Any:
    return json.loads(text) if text else None


def store(conn: sqlite3.Connection, event: InboxEvent) -> None:
    """Add the event's row, or merge it into the entity's row (reasons united, payload merged)."""
    row = named(conn).execute(
        "SELECT id, reasons, payload FROM fanout WHERE kind = ? AND entity_id = ?", (event.kind, event.entity_id)
    ).fetchone()
    if row is None:
        conn.execute(
            "INSERT INTO fanout (kind, entity_id, reasons, payload, created_at) VALUES (?, ?, ?, ?, ?)",
            (event.kind, event.entity_id, json.dumps([event.reason]),
             json.dumps(event.payload) if event.payload is not None else None, event.created_at),
        )
        return
    conn.execute(
        "UPDATE fanout SET reasons = ?, payload = ? WHERE id = ?",
        (json.dumps(merge_reasons(json.loads(row["reasons"]), (event.reason,))),
         merge_fanout_payload(_loads(row["payload"]), event.payload), row["id"]),
    )


def pending(conn: sqlite3.Connection) -> list[FanOutEvent]:
    """Every stored fan-out, oldest first."""
    rows = named(conn).execute("SELECT id, kind, entity_id, reasons, payload, created_at FROM fanout ORDER BY id")
    return [FanOutEvent(r["id"], r["kind"], r["entity_id"], tuple(json.loads(r["reasons"])), _loads(r["payload"]),
                        r["created_at"]) for r in rows]


def delete(conn: sqlite3.Connection, event_id: int) -> bool:
    return conn.execute("DELETE FROM fanout WHERE id = ?", (event_id,)).rowcount > 0


def set_cursor(conn: sqlite3.Connection, event_id: int, cursor: Mapping[str, Any] | None) -> None:
    row = named(conn).execute("SELECT payload FROM fanout WHERE id = ?", (event_id,)).fetchone()
    if row is None:
        return
    payload = _loads(row["payload"]) or {}
    if cursor is None:
        payload.pop(FANOUT_CURSOR, None)
    else:
        payload[FANOUT_CURSOR] = dict(cursor)
    conn.execute("UPDATE fanout SET payload = ? WHERE id = ?", (json.dumps(payload) if payload else None, event_id))


def clear(conn: sqlite3.Connection) -> int:
    return conn.execute("DELETE FROM fanout").rowcount


def size(conn: sqlite3.Connection) -> int:
    return named(conn).execute("SELECT COUNT(*) FROM fanout").fetchone()[0]


class FanOutTable:
    """The fan-out verbs a processor calls, each its own transaction on the queue's connection."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def pending(self) -> list[FanOutEvent]:
        return pending(self._conn)

    def done(self, event_id: int) -> bool:
        """The fan-out is expanded: its row goes."""
        with write_txn(self._conn) as conn:
            return delete(conn, event_id)

    def progress(self, event_id: int, cursor: Mapping[str, Any] | None) -> None:
        """Remember how far a fan-out got, so a crash resumes there.

        An event that merges into the row later drops the cursor (see ``store``): it may
        change scenes the earlier pass already went by.
        """
        with write_txn(self._conn) as conn:
            set_cursor(conn, event_id, cursor)
