"""What the queue holds, read without changing it: counts, deferred and in-flight jobs.

Every figure comes from SQL (persist-queue's in-memory counters drift and are never read),
and each reader is one statement, so it may run in any process beside the processor.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from sync_queue import counters, dlq, fanout, inbox, ledger
from sync_queue.db import named
from sync_queue.schedule import (
    DEFERRED_SQL,
    JOB_COLUMNS,
    LIVE,
    NEXT_DUE_SQL,
    STATUS_IN_FLIGHT,
    Job,
    job_from_row,
)
from sync_queue.spool import spooled


@dataclass(frozen=True)
class QueueCounts:
    due: int
    deferred: int
    in_flight: int
    dlq: int
    ledger: int
    inbox: int
    fanout: int


class QueueReport:
    """The readers, on the queue's connection."""

    def __init__(self, conn: sqlite3.Connection, data_dir: Path) -> None:
        self._conn = conn
        self._data_dir = data_dir

    def counts(self, now: float) -> QueueCounts:
        row = named(self._conn).execute(
            f"SELECT COALESCE(SUM(q.status < {STATUS_IN_FLIGHT} AND s.next_retry_at <= ?), 0) AS due, "
            f"COALESCE(SUM(q.status < {STATUS_IN_FLIGHT} AND s.next_retry_at > ?), 0) AS deferred, "
            f"COALESCE(SUM(q.status = {STATUS_IN_FLIGHT}), 0) AS in_flight {LIVE}",
            (now, now),
        ).fetchone()
        conn = self._conn
        return QueueCounts(due=row["due"], deferred=row["deferred"], in_flight=row["in_flight"],
                           dlq=dlq.size(conn), ledger=ledger.size(conn),
                           inbox=inbox.inbox_size(conn) + len(spooled(self._data_dir)),  # spooled events are new too
                           fanout=fanout.size(conn))

    def next_due_at(self) -> float | None:
        """When the earliest ready job falls due (maybe in the past), so a worker can sleep."""
        row = named(self._conn).execute(NEXT_DUE_SQL).fetchone()
        return row["next_retry_at"] if row else None

    def deferred(self, now: float, limit: int = 1000) -> list[Job]:
        """Ready jobs not yet due, soonest first."""
        return [job_from_row(r) for r in named(self._conn).execute(DEFERRED_SQL, (now, limit))]

    def in_flight(self) -> list[Job]:
        rows = named(self._conn).execute(
            f"SELECT {JOB_COLUMNS} {LIVE} WHERE q.status = {STATUS_IN_FLIGHT} ORDER BY s.job_id")
        return [job_from_row(r) for r in rows]

    def job_for_scene(self, scene_id: int) -> Job | None:
        """The scene's live job, ready or in flight."""
        row = named(self._conn).execute(
            f"SELECT {JOB_COLUMNS} {LIVE} WHERE s.scene_id = ? AND q.status <= {STATUS_IN_FLIGHT}", (scene_id,)
        ).fetchone()
        return job_from_row(row) if row else None

    def held(self, error_class: str, now: float) -> int:
        """Ready jobs deferred after a failure of this class and not yet due."""
        return self._conn.execute(
            f"SELECT COUNT(*) {LIVE} WHERE q.status < {STATUS_IN_FLIGHT} AND s.last_error_class = ? "
            "AND s.next_retry_at > ?", (error_class, now)).fetchone()[0]

    def counter(self, name: str) -> int:
        return counters.get(self._conn, name)
