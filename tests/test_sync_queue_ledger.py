"""sync_queue.ledger's locks in flight: noted before a write, cleared with the ledger row that
records it, kept by a failed attempt, dropped with a forgotten scene; and the v9 migration."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from sync_queue import ledger
from sync_queue.db import write_txn
from sync_queue.inbox import record_event
from sync_queue.jobs import ABANDONED, JobQueue
from tests.fixtures_queue import T0


@pytest.fixture
def q(tmp_path: Path) -> Iterator[JobQueue]:
    queue = JobQueue(tmp_path)
    yield queue
    queue.close()


def rows(q: JobQueue) -> list[tuple[int, str]]:
    return q._conn.execute("SELECT scene_id, plex_key FROM locks_in_flight ORDER BY scene_id").fetchall()


def test_noted_locks_are_read_back_replaced_and_gone_when_none() -> None:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    from sync_queue.schema import ensure_schema

    ensure_schema(conn)
    assert ledger.in_flight(conn, 1) is None
    ledger.note_in_flight(conn, 1, "77", ["title", "genre", "title"], T0)
    assert ledger.in_flight(conn, 1) == ("77", frozenset({"title", "genre"}))
    ledger.note_in_flight(conn, 1, "78", ["thumb"], T0 + 1)  # one row per scene: the last write's
    assert ledger.in_flight(conn, 1) == ("78", frozenset({"thumb"}))
    ledger.note_in_flight(conn, 1, "78", [], T0 + 2)
    assert ledger.in_flight(conn, 1) is None
    assert conn.execute("SELECT COUNT(*) FROM locks_in_flight").fetchone()[0] == 0


def test_the_ledger_row_that_records_the_write_clears_them_in_its_own_transaction(q: JobQueue) -> None:
    q.ledger.note_in_flight(1, "77", ["title"], T0)
    q.ledger.note_in_flight(2, "78", ["genre"], T0)
    with pytest.raises(RuntimeError), write_txn(q._conn) as conn:
        ledger.put(conn, 1, "h", "77", None, None, {"locks": ["title"]}, T0)
        raise RuntimeError("killed before the commit")
    assert q.ledger.get(1) is None and q.ledger.in_flight(1) == ("77", frozenset({"title"}))  # both or neither
    q.ledger.put(1, "h", "77", None, None, {"locks": ["title"]}, T0)
    assert q.ledger.get(1) is not None and q.ledger.in_flight(1) is None
    assert q.ledger.in_flight(2) == ("78", frozenset({"genre"}))  # another scene's stay


def test_a_failed_attempt_or_a_dead_letter_leaves_them(q: JobQueue) -> None:
    """Its edit may have reached Plex: the locks it set stay ours until a sync records them."""
    q.enqueue(1, "hook", T0)
    job = q.take_due(T0)
    q.ledger.note_in_flight(1, "77", ["title"], T0)
    q.retry_later(job, T0 + 30, "transient", "timed out", T0)
    assert q.ledger.in_flight(1) == ("77", frozenset({"title"}))
    q.dead_letter(q.take_due(T0 + 30), "transient", "timed out", T0 + 30)
    assert q.ledger.in_flight(1) == ("77", frozenset({"title"}))
    q.retry_dlq(None, T0 + 40)
    q.take_due(T0 + 40)
    assert q.recover_abandoned(T0 + 50) == 1  # killed mid-flight
    assert q.report.job_for_scene(1).last_error_class == ABANDONED
    assert q.ledger.in_flight(1) == ("77", frozenset({"title"}))


def test_a_scene_deleted_in_stash_loses_them_with_its_ledger_row(q: JobQueue, tmp_path: Path) -> None:
    q.ledger.put(1, "h", "77", None, None, {}, T0)
    q.ledger.note_in_flight(1, "77", ["title"], T0)
    q.ledger.note_in_flight(2, "78", ["title"], T0)  # never recorded at all
    q.ledger.note_in_flight(3, "79", ["title"], T0)
    record_event(tmp_path, "scene_destroyed", 1, "Scene.Destroy.Post", T0)
    record_event(tmp_path, "scene_destroyed", 2, "Scene.Destroy.Post", T0)
    assert q.ingest(T0).destroyed == [1, 2]
    assert rows(q) == [(3, "79")]


def test_clearing_the_queue_or_the_dead_letters_keeps_them(q: JobQueue) -> None:
    """Neither forgets the scene: its locks in Plex are still the ones our writes set."""
    q.enqueue(1, "hook", T0)
    q.ledger.note_in_flight(1, "77", ["title"], T0)
    q.dead_letter(q.take_due(T0), "E", "m", T0)
    q.enqueue(2, "hook", T0)
    q.ledger.note_in_flight(2, "78", ["title"], T0)
    q.dlq.clear()
    q.clear_queue()
    assert rows(q) == [(1, "77"), (2, "78")]


def test_migration_to_v9_adds_the_table_and_keeps_the_ledger(tmp_path: Path) -> None:
    from sync_queue import schema
    from sync_queue.db import connect

    with JobQueue(tmp_path) as queue:
        queue.ledger.put(1, "h1", "77", None, None, {"locks": ["title"]}, T0)
    conn = connect(tmp_path)
    conn.executescript("DROP TABLE locks_in_flight; UPDATE meta SET value = '8' WHERE key = 'schema_version';")
    assert schema.current_version(conn) == 8
    assert schema.ensure_schema(conn) == schema.SCHEMA_VERSION >= 9
    conn.close()
    with JobQueue(tmp_path) as queue:
        assert queue.ledger.get(1).written == {"locks": ["title"]}
        assert queue.ledger.in_flight(1) is None
        queue.ledger.note_in_flight(1, "77", ["genre"], T0)
        queue.ledger.put(1, "h2", "77", None, None, {"locks": ["title", "genre"]}, T0 + 1)
        assert queue.ledger.in_flight(1) is None
