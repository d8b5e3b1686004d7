"""Due time is the queue's business (issue 4, point 2).

A job due in the future is never handed out and never holds back a due job; the next due
job is found by an index look-up, shown two ways: the query plan (no table scan, no sort)
and the number of SQLite VM steps, which must not grow with the number of deferred or
in-flight jobs (a count, not a timing).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sync_queue.jobs import _DEFERRED_SQL, _NEXT_DUE_SQL, _TAKE_SQL, JobQueue
from tests.fixtures_queue import T0


@pytest.fixture
def q(tmp_path: Path) -> Iterator[JobQueue]:
    queue = JobQueue(tmp_path)
    yield queue
    queue.close()


def plan(q: JobQueue, sql: str, params: tuple[object, ...]) -> list[str]:
    return [row[3] for row in q._conn.execute("EXPLAIN QUERY PLAN " + sql, params)]


@pytest.mark.parametrize(
    ("sql", "params"), [(_TAKE_SQL, (T0,)), (_NEXT_DUE_SQL, ()), (_DEFERRED_SQL, (T0, 10))], ids=["take", "next", "deferred"]
)
def test_schedule_queries_use_the_ready_index_and_never_scan_a_table(q: JobQueue, sql: str, params: tuple) -> None:
    for scene in range(1, 50):
        q.enqueue(scene, "bulk", T0 + scene)
    q._conn.execute("ANALYZE")  # the plan must not depend on missing statistics either
    details = plan(q, sql, params)
    assert any("INDEX schedule_ready" in d for d in details), details
    # The only other table is persist-queue's, reached by primary key.
    assert all("schedule_ready" in d or "INTEGER PRIMARY KEY" in d for d in details), details
    assert not any(d.startswith("SCAN") and "INDEX" not in d for d in details), details
    assert not any("TEMP B-TREE" in d for d in details), details


def vm_steps(q: JobQueue, sql: str, params: tuple[object, ...]) -> int:
    steps = 0

    def tick() -> int:
        nonlocal steps
        steps += 1
        return 0

    q._conn.set_progress_handler(tick, 1)
    try:
        q._conn.execute(sql, params).fetchall()
    finally:
        q._conn.set_progress_handler(None, 1)
    return steps


def fill(q: JobQueue, deferred: int, in_flight: int) -> None:
    """``in_flight`` jobs taken (all due before everything else), ``deferred`` due later."""
    for scene in range(1, in_flight + 1):
        q.enqueue(scene, "hook", T0 - 1000)
    for _ in range(in_flight):
        assert q.take_due(T0) is not None
    with q._conn:
        for scene in range(in_flight + 1, in_flight + deferred + 1):
            q._enqueue(q._conn, scene, ("bulk",), T0 + scene, urgent=False)


def test_finding_the_next_due_job_costs_the_same_with_3000_deferred_and_1000_in_flight(tmp_path: Path) -> None:
    small, large = JobQueue(tmp_path / "small"), JobQueue(tmp_path / "large")
    fill(small, deferred=5, in_flight=3)
    fill(large, deferred=3000, in_flight=1000)
    for queue in (small, large):
        queue.enqueue(99_999, "hook", T0 - 1)  # the one due job, behind every in-flight one
    for sql, params in ((_TAKE_SQL, (T0,)), (_TAKE_SQL, (T0 - 2,)), (_NEXT_DUE_SQL, ())):
        cost_small, cost_large = vm_steps(small, sql, params), vm_steps(large, sql, params)
        # A B-tree descent is a handful of steps more on a deeper tree, never one per row.
        assert cost_large <= cost_small + 20, (sql, cost_small, cost_large)
    assert large.take_due(T0).scene_id == 99_999
    assert large.take_due(T0) is None
    small.close()
    large.close()


def test_a_deferred_job_never_holds_back_a_due_job_behind_it(q: JobQueue) -> None:
    q.enqueue(1, "hook", T0)
    q.retry_later(q.take_due(T0), T0 + 300, "PlexNotFound", "m", T0)  # first in line, deferred
    for scene in (2, 3):
        q.enqueue(scene, "hook", T0 + 1)
    assert [q.take_due(T0 + 2).scene_id, q.take_due(T0 + 2).scene_id] == [2, 3]
    assert q.take_due(T0 + 299) is None
    assert q.take_due(T0 + 300).scene_id == 1


def test_take_due_never_returns_a_job_due_later_than_now(q: JobQueue) -> None:
    for offset in (5, -5, 0, 50, -1):
        q.enqueue(100 + offset, "bulk", T0 + offset)
    seen = []
    for now in (T0 - 10, T0 - 1, T0, T0 + 4, T0 + 5, T0 + 49, T0 + 50):
        while (job := q.take_due(now)) is not None:
            assert job.next_retry_at <= now
            seen.append(job.scene_id)
            q.complete(job, now)
    assert seen == [95, 99, 100, 105, 150]


def test_deferred_and_next_due_at_agree_with_take_due(q: JobQueue) -> None:
    q.enqueue(1, "hook", T0)
    q.enqueue(2, "hook", T0)
    q.retry_later(q.take_due(T0), T0 + 60, "E", "m", T0)
    q.retry_later(q.take_due(T0), T0 + 30, "E", "m", T0)
    assert [j.scene_id for j in q.deferred(T0)] == [2, 1]
    assert q.next_due_at() == T0 + 30
    assert q.take_due(T0 + 29.9) is None
    assert q.take_due(T0 + 30).scene_id == 2
    assert q.next_due_at() == T0 + 60  # the in-flight job is no longer "next"


def test_migration_from_v2_keeps_ready_jobs_takeable(tmp_path: Path) -> None:
    """A v2 database left taken_at set on jobs that had been retried; v3 means NULL = ready."""
    from sync_queue import schema
    from sync_queue.db import connect

    with JobQueue(tmp_path) as q:
        q.enqueue(1, "hook", T0)
        q.enqueue(2, "hook", T0)
        job = q.take_due(T0)
        q.retry_later(job, T0 + 10, "E", "m", T0)
        q.take_due(T0)  # scene 2 stays in flight
    conn = connect(tmp_path)
    conn.executescript(
        "DROP INDEX ledger_plex_key; DROP INDEX schedule_ready;"
        "CREATE INDEX schedule_due ON schedule (next_retry_at, job_id);"
        "ALTER TABLE schedule DROP COLUMN state_hash; ALTER TABLE dlq DROP COLUMN state_hash;"
        f"UPDATE schedule SET taken_at = {T0}; UPDATE meta SET value = '2' WHERE key = 'schema_version';"
    )
    assert schema.ensure_schema(conn) == schema.SCHEMA_VERSION >= 3
    conn.close()
    with JobQueue(tmp_path) as q:
        first = q.take_due(T0 + 10)
        assert first.scene_id == 1
        q.complete(first, T0 + 10)
        assert q.recover_abandoned(T0 + 10) == 1
        assert q.take_due(T0 + 10).scene_id == 2


def test_migration_to_v4_indexes_the_ledger_by_plex_item(tmp_path: Path) -> None:
    """v4: one look-up answers "does another scene hold this item" (one item, one scene)."""
    from sync_queue import schema
    from sync_queue.db import connect

    with JobQueue(tmp_path) as q:
        q.ledger_put(1, "h1", "77", None, None, {"plex_file": "/m/a.mp4"}, T0)
        q.ledger_put(2, "h2", "78", None, None, {}, T0)
    conn = connect(tmp_path)
    conn.executescript("DROP INDEX ledger_plex_key; UPDATE meta SET value = '3' WHERE key = 'schema_version';")
    assert schema.ensure_schema(conn) == schema.SCHEMA_VERSION == 4
    plan = " ".join(str(r) for r in conn.execute(
        "EXPLAIN QUERY PLAN SELECT scene_id FROM ledger WHERE plex_key = ? AND scene_id != ? AND lost = 0", ("77", 2)))
    assert "ledger_plex_key" in plan
    conn.close()
    with JobQueue(tmp_path) as q:
        assert q.ledger_holder("77", 2).scene_id == 1 and q.ledger_holder("77", 1) is None
        assert q.release_claim(1, "item_claimed", T0) and q.ledger_get(1).lost
        assert q.ledger_holder("77", 2) is None  # a released claim holds nothing
        assert q.job_for_scene(1).reasons == ("item_claimed",)
