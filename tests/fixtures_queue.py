"""Helpers shared by the sync_queue tests (no fixtures here: each module declares its own)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sync_queue.db import DB_FILE
from sync_queue.jobs import JobQueue
from sync_queue.schedule import PQ_TABLE

T0 = 1_700_000_000.0


def raw_conn(data_dir: Path) -> sqlite3.Connection:
    return sqlite3.connect(str(Path(data_dir) / DB_FILE), timeout=30)


def pq_rows(data_dir: Path) -> list[tuple[int, int]]:
    """(_id, status) of every persist-queue row."""
    with raw_conn(data_dir) as conn:
        return conn.execute(f"SELECT _id, status FROM {PQ_TABLE} ORDER BY _id").fetchall()


def live_scene_counts(data_dir: Path) -> dict[int, int]:
    """Live jobs per scene, counted from persist-queue's rows (not from our UNIQUE index)."""
    import json

    with raw_conn(data_dir) as conn:
        rows = conn.execute(f"SELECT data FROM {PQ_TABLE} WHERE status <= 2").fetchall()
    counts: dict[int, int] = {}
    for (data,) in rows:
        scene = json.loads(data)["scene_id"]
        counts[scene] = counts.get(scene, 0) + 1
    return counts


def drain(queue: JobQueue, now: float) -> list[int]:
    """Take and complete everything due at ``now``; the scene ids in order."""
    done = []
    while (job := queue.take_due(now)) is not None:
        queue.complete(job, now)
        done.append(job.scene_id)
    return done
