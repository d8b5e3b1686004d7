"""Small named state records shared by every process: the circuit breaker, a processing halt.

They live in the ``meta`` table of the one database, so a worker spawned by the next hook
sees an open breaker or a halt for a bad token instead of starting over and hammering Plex.
Values are opaque text (the owner serialises, e.g. ``Breaker.to_json``); this module only
stores them. ``update`` is a read-modify-write inside one write transaction, so two processes
asking for the breaker's single probe cannot both be granted it.

Standard library only, like the inbox: reading the state must not cost an import.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

from sync_queue.db import connect, write_txn
from sync_queue.schema import ensure_schema

BREAKER = "breaker"
HALT = "halt"
LAST_RECONCILE = "last_reconcile"
#: When the background worker said the current Plex outage (a worker started by the next
#: hook does not say it again); cleared once Plex answers.
OUTAGE_SAID = "outage_said"
#: Set when a damaged database was replaced: the record of which Plex locks the plugin set
#: went with it. Until a whole-library reconcile has run, a scene with no ledger row counts
#: the locks on its item as the plugin's own (see ``plex.sync.PlexSync.own_unknown_locks``).
LOCKS_FORGOTTEN = "locks_forgotten"

_PREFIX = "state."


class StateStore:
    """Named text values in ``meta``; keys are namespaced so they never meet schema_version."""

    def __init__(self, data_dir: Path) -> None:
        self._conn = connect(Path(data_dir))
        ensure_schema(self._conn)

    def get(self, key: str) -> str | None:
        return _get(self._conn, key)

    def put(self, key: str, value: str | None) -> None:
        """Store ``value``; ``None`` deletes the key."""
        with write_txn(self._conn) as conn:
            _put(conn, key, value)

    def update(self, key: str, change: Callable[[str | None], str | None]) -> str | None:
        """Apply ``change`` to the stored value atomically across processes; the new value."""
        with write_txn(self._conn) as conn:
            value = change(_get(conn, key))
            _put(conn, key, value)
        return value

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _get(conn: sqlite3.Connection, key: str) -> str | None:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (_PREFIX + key,)).fetchone()
    return row[0] if row else None


def _put(conn: sqlite3.Connection, key: str, value: str | None) -> None:
    if value is None:
        conn.execute("DELETE FROM meta WHERE key = ?", (_PREFIX + key,))
    else:
        conn.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (_PREFIX + key, value),
        )
