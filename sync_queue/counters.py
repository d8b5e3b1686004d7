"""Named counters the status report shows (skips by the ledger rule, merges into live jobs).

The functions take a connection and never commit: a counter moves in the transaction that
did what it counts.
"""

from __future__ import annotations

import sqlite3

#: The counters the queue keeps, by what they count.
SKIPPED_UNCHANGED = "skipped_unchanged"  # the ledger already holds this state
SKIPPED_DEAD_LETTERED = "skipped_dead_lettered"  # dead-lettered for exactly this state
SKIPPED_IN_FLIGHT = "skipped_in_flight"  # in flight for this very state
MERGED = "merged"  # an event merged into a ready job
MERGED_IN_FLIGHT = "merged_in_flight"  # an event marked an in-flight job to run again


def bump(conn: sqlite3.Connection, name: str, by: int = 1) -> None:
    conn.execute(
        "INSERT INTO counters (name, value) VALUES (?, ?) "
        "ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
        (name, by),
    )


def get(conn: sqlite3.Connection, name: str) -> int:
    row = conn.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
    return row[0] if row else 0
