"""Compaction: finished persist-queue rows deleted, free pages handed back to the OS.

persist-queue never removes an acked row by itself, and nothing of ours reads finished rows
(dedup is the ledger's job, not a window over acked rows), so the queue deletes them every
``COMPACT_EVERY`` finished jobs and when it closes.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

from sync_queue.db import retry_locked
from sync_queue.schedule import PQ_TABLE, STATUS_ACK_FAILED, STATUS_ACKED

#: Free pages worth an incremental vacuum: more than this many, and over a quarter of the file.
FREE_PAGES_MIN = 256


def compact(conn: sqlite3.Connection, clear_finished: Callable[[], Any]) -> int:
    """Delete finished rows with `clear_finished` (persist-queue's own call), then vacuum if
    that frees enough; how many rows were finished."""
    before = conn.execute(f"SELECT COUNT(*) FROM {PQ_TABLE} WHERE status IN (?, ?)",
                          (STATUS_ACKED, STATUS_ACK_FAILED)).fetchone()[0]
    if before:
        retry_locked(clear_finished)
    free = conn.execute("PRAGMA freelist_count").fetchone()[0]
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    if free > FREE_PAGES_MIN and free * 4 > pages:
        # executescript, not execute: the pragma frees one page per step of its statement,
        # and execute() steps a statement that returns no rows only once (one page freed).
        retry_locked(lambda: conn.executescript("PRAGMA incremental_vacuum;"))
    return before
