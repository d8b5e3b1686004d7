"""The durable queue at library scale (issue 4): enqueue, next-due look-up, growth.

    python bench/bench_queue.py [--events 100000] [--scenes 100000] [--writers 4] [--syncs 3]

Prints one table:

* enqueue throughput: ``--events`` hook events recorded with ``record_event`` (the hook fast
  path: one connection and one commit per event, as each hook process does) from
  ``--writers`` processes at once, then turned into jobs by one ``JobQueue.ingest``;
* next-due look-up with that many jobs scheduled (15 % due, the rest deferred over the
  next day, a thousand in flight): median and p99 of ``next_due_at`` and of ``take_due``;
* database size after ``--syncs`` full syncs of ``--scenes`` scenes, each one changing every
  scene (the worst case: every scene queued, processed, recorded in the ledger), then one
  more over the unchanged library, which must queue nothing.

The database lives in a temporary folder on the normal disk (not tmpfs), like a real one.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from contextlib import closing
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.figures import Figure, emit  # noqa: E402
from sync_queue.db import DB_FILE  # noqa: E402
from sync_queue.inbox import SCENE, record_event  # noqa: E402
from sync_queue.jobs import JobQueue  # noqa: E402
from sync_queue.ledger import state_hash  # noqa: E402

T0 = 1_700_000_000.0


def _record_slice(args: tuple[str, int, int]) -> None:
    data_dir, start, stop = args
    for scene in range(start, stop):
        record_event(Path(data_dir), SCENE, scene, "Scene.Update.Post", T0)


def enqueue_throughput(data_dir: Path, events: int, writers: int) -> tuple[float, float]:
    """(events/s recorded by ``writers`` processes, events/s ingested into jobs)."""
    record_event(data_dir, SCENE, 1, "Scene.Update.Post", T0)  # the database exists, as after a first save
    step = -(-events // writers)
    slices = [(str(data_dir), 1 + i * step, 1 + min(events, (i + 1) * step)) for i in range(writers)]
    started = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(writers) as pool:
        pool.map(_record_slice, slices)
    record_s = time.perf_counter() - started
    with JobQueue(data_dir) as q:
        started = time.perf_counter()
        result = q.ingest(T0)
        ingest_s = time.perf_counter() - started
        assert result.events == events + 1 and result.created == events, result
    return events / record_s, (events + 1) / ingest_s


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


def lookup_latency(data_dir: Path, jobs: int) -> dict[str, tuple[float, float]]:
    """Spread the ingested jobs over a day (15 % due now), put 1000 in flight, time the look-ups."""
    rng = random.Random(4)
    flying, samples = min(1000, jobs // 20), min(2000, jobs // 20)
    with closing(sqlite3.connect(str(data_dir / DB_FILE))) as conn, conn:
        ids = [r[0] for r in conn.execute("SELECT job_id FROM schedule")]
        conn.executemany(
            "UPDATE schedule SET next_retry_at = ? WHERE job_id = ?",
            [(T0 - rng.random() * 60 if rng.random() < 0.15 else T0 + 1 + rng.random() * 86_400, i) for i in ids],
        )
    assert len(ids) == jobs
    out: dict[str, tuple[float, float]] = {}
    q = JobQueue(data_dir)
    try:
        for _ in range(flying):
            q.take_due(T0)
        counts = q.report.counts(T0)
        assert counts.in_flight == flying and counts.due + counts.deferred == jobs - flying, counts
        times = []
        for _ in range(samples):
            started = time.perf_counter_ns()
            q.report.next_due_at()
            times.append((time.perf_counter_ns() - started) / 1e6)
        out["next_due_at"] = (statistics.median(times), percentile(times, 0.99))
        times = []
        for _ in range(samples):
            started = time.perf_counter_ns()
            job = q.take_due(T0)
            times.append((time.perf_counter_ns() - started) / 1e6)
            assert job is not None and job.next_retry_at <= T0
        out["take_due"] = (statistics.median(times), percentile(times, 0.99))
    finally:
        q.close(compact=False)
    return out


def db_bytes(data_dir: Path) -> int:
    """The database file with its -wal and -shm, if any are left."""
    return sum(p.stat().st_size for p in data_dir.glob(DB_FILE + "*"))


def full_syncs(data_dir: Path, scenes: int, syncs: int) -> list[tuple[str, int, float, int, int]]:
    """(label, queued, seconds, bytes on disk after close, persist-queue rows) per sync."""
    rows = []
    for n in range(syncs + 1):
        version = min(n, syncs - 1)  # the last pass sees the library of the one before: unchanged
        label = f"sync {n + 1}" if n < syncs else "unchanged library"
        started = time.perf_counter()
        q = JobQueue(data_dir)
        states = ((s, state_hash({"id": s, "title": f"scene {s}", "v": version})) for s in range(1, scenes + 1))
        queued = q.enqueue_changed_many(states, "sync_all", T0 + n)
        while (job := q.take_due(T0 + n)) is not None:
            q.ledger.put(job.scene_id, state_hash({"id": job.scene_id, "title": f"scene {job.scene_id}",
                                                   "v": version}),
                         f"/library/metadata/{job.scene_id}", None, None, {"title": f"scene {job.scene_id}"}, T0 + n)
            q.complete(job, T0 + n)
        q.close()
        elapsed = time.perf_counter() - started
        size = db_bytes(data_dir)  # every connection is closed: the WAL is checkpointed away
        with closing(sqlite3.connect(str(data_dir / DB_FILE))) as conn:
            pq_rows = conn.execute("SELECT COUNT(*) FROM ack_queue_jobs").fetchone()[0]
        rows.append((label, queued, elapsed, size, pq_rows))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--scenes", type=int, default=100_000)
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--syncs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        enqueue_dir, sync_dir = Path(tmp) / "enqueue", Path(tmp) / "sync"
        record_rate, ingest_rate = enqueue_throughput(enqueue_dir, args.events, args.writers)
        latency = lookup_latency(enqueue_dir, args.events)
        syncs = full_syncs(sync_dir, args.scenes, args.syncs)

    print("INTERNALS: sync_queue called in-process, not the plugin as Stash runs it.\n")
    print("| measure (internals) | value |")
    print("|---|---|")
    print(f"| record_event, {args.events:,} events from {args.writers} processes | {record_rate:,.0f} events/s |")
    print(f"| ingest of those events into jobs | {ingest_rate:,.0f} events/s |")
    for name, (median, p99) in latency.items():
        print(f"| {name} with {args.events:,} jobs scheduled (median / p99) | {median:.3f} / {p99:.3f} ms |")
    for label, queued, elapsed, size, pq_rows in syncs:
        print(f"| {label} of {args.scenes:,} scenes: queued, time, database on disk, finished rows left "
              f"| {queued:,}, {elapsed:.0f} s, {size / 1e6:.1f} MB, {pq_rows} |")
    emit(Figure(f"hook events recorded, {args.events:,} from {args.writers} processes at once",
                f"{record_rate:,.0f} events/s; turned into jobs at {ingest_rate:,.0f} events/s", internals=True))
    median, p99 = latency["next_due_at"]
    emit(Figure(f"next due job with {args.events:,} scheduled", f"{median:.3f} ms median, {p99:.3f} ms p99",
                internals=True))
    _, _, _, size, _ = syncs[args.syncs - 1]
    emit(Figure(f"database after {args.syncs} full syncs of {args.scenes:,} scenes",
                f"{size / 1e6:.1f} MB", internals=True))


if __name__ == "__main__":
    main()
