"""Bounded growth (issue 4, point 7): repeated full syncs leave a database of the same size.

Every full sync here changes every scene, so each one queues, processes and finishes the whole
library (the worst case). Finished persist-queue rows are compacted as the worker goes and on
close, and freed pages are reused, so from the second sync on the file stops growing: what is
left is the ledger, one row per scene. Without compaction the same run grows by every finished
row of every sync (the second test shows the difference is measurable at this scale).
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

from sync_queue.db import DB_FILE
from sync_queue.jobs import JobQueue
from sync_queue.ledger import state_hash
from sync_queue.schedule import PQ_TABLE
from tests.fixtures_queue import T0

SCENES = 1000
SYNCS = 4


def full_sync(data_dir: Path, version: int, compact: bool = True) -> int:
    """Sync All over a library where every scene changed; how many jobs ran."""
    q = JobQueue(data_dir, compact_every=1000 if compact else 10**9)
    now = T0 + version
    states = ((s, state_hash({"id": s, "v": version})) for s in range(1, SCENES + 1))
    q.enqueue_changed_many(states, "sync_all", now)
    ran = 0
    while (job := q.take_due(now)) is not None:
        q.ledger.put(job.scene_id, state_hash({"id": job.scene_id, "v": version}),
                     f"/library/metadata/{job.scene_id}", None, None, {"title": f"scene {job.scene_id}"}, now)
        q.complete(job, now)
        ran += 1
    q.close(compact=compact)
    return ran


def shape(data_dir: Path) -> tuple[int, int, int]:
    """(pages in the file, persist-queue rows, schedule rows), read with every queue closed."""
    with closing(sqlite3.connect(str(Path(data_dir) / DB_FILE))) as conn:
        return (
            conn.execute("PRAGMA page_count").fetchone()[0],
            conn.execute(f"SELECT COUNT(*) FROM {PQ_TABLE}").fetchone()[0],
            conn.execute("SELECT COUNT(*) FROM schedule").fetchone()[0],
        )


def test_repeated_full_syncs_keep_the_database_the_same_size(tmp_path: Path) -> None:
    pages = []
    for version in range(SYNCS):
        assert full_sync(tmp_path, version) == SCENES
        page_count, pq_rows, schedule_rows = shape(tmp_path)
        assert (pq_rows, schedule_rows) == (0, 0)  # finished rows are gone, not kept "for dedup"
        pages.append(page_count)
    # The first sync creates the ledger; the second adds its first round of free pages. After
    # that, each sync reuses what the one before freed.
    assert max(pages[2:]) <= pages[1] + 2, pages
    with closing(sqlite3.connect(str(tmp_path / DB_FILE))) as conn:
        assert conn.execute("SELECT COUNT(*) FROM ledger").fetchone()[0] == SCENES


def test_without_compaction_the_same_syncs_would_grow_with_every_one(tmp_path: Path) -> None:
    """The control: proves the first test's bound measures compaction, not a lucky page count."""
    pages = []
    for version in range(3):
        full_sync(tmp_path, version, compact=False)
        page_count, pq_rows, _ = shape(tmp_path)
        assert pq_rows == SCENES * (version + 1)
        pages.append(page_count)
    assert pages[2] > pages[1] + 2, pages


def test_compaction_gives_the_pages_of_finished_jobs_back_to_the_file(tmp_path: Path) -> None:
    """A burst of jobs (a Sync All of a big library) leaves hundreds of free pages once they
    finish; compaction must return them, not keep the high-water size for good."""
    q = JobQueue(tmp_path)
    try:
        q.enqueue_changed_many(((s, f"h{s}") for s in range(1, 12001)), "sync_all", T0)
        pages_full = q._conn.execute("PRAGMA page_count").fetchone()[0]
        assert q.clear_queue() == 12000  # every job finishes at once: 12000 finished rows
        q.compact()
        free, pages = q._conn.execute("PRAGMA freelist_count").fetchone()[0], q._conn.execute("PRAGMA page_count").fetchone()[0]
    finally:
        q.close()
    assert pages_full > 300  # the burst really took that much room (> the 256-page floor)
    assert free == 0
    assert pages < pages_full // 4, (pages, pages_full)
