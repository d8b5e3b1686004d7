"""persist-queue's pitfalls (shared reference §6.5), one test each.

Every test has two halves: first persist-queue's own behaviour that would bite a sync queue
(so the test fails, and tells us, if a future persist-queue changes it), then the same
situation through ``JobQueue``, which must be immune. The raw queues live in their own
folder; ``JobQueue`` uses ``<tmp>/q``.
"""

from __future__ import annotations

import ast
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import persistqueue
import pytest
from persistqueue.serializers import json as pq_json

from sync_queue.inbox import record_event
from sync_queue.jobs import JobQueue
from sync_queue.schedule import PQ_TABLE, STATUS_ACK_FAILED, STATUS_ACKED, STATUS_IN_FLIGHT
from tests.fixtures_queue import T0, drain, pq_rows

ROOT = Path(__file__).resolve().parent.parent


def raw_queue(path: Path, auto_resume: bool = False) -> persistqueue.SQLiteAckQueue:
    return persistqueue.SQLiteAckQueue(str(path), auto_resume=auto_resume, multithreading=True, serializer=pq_json)


@pytest.fixture
def qdir(tmp_path: Path) -> Path:
    return tmp_path / "q"


@pytest.fixture
def q(qdir: Path) -> Iterator[JobQueue]:
    queue = JobQueue(qdir)
    yield queue
    queue.close()


def status_of(data_dir: Path, job_id: int) -> int:
    return dict(pq_rows(data_dir))[job_id]


def test_pitfall_no_delayed_visibility_get_ignores_a_retry_time_in_the_payload(tmp_path: Path, q: JobQueue) -> None:
    raw = raw_queue(tmp_path / "raw")
    raw.put({"scene_id": 1, "next_retry_at": T0 + 3600})
    # persist-queue has no notion of "not before": the item an hour in the future comes out now.
    assert raw.get(block=False)["scene_id"] == 1
    raw.close()

    q.enqueue(1, "hook", T0)
    q.retry_later(q.take_due(T0), T0 + 3600, "PlexNotFound", "not scanned yet", T0)
    assert q.take_due(T0) is None
    assert q.take_due(T0 + 3599.999) is None
    assert q.take_due(T0 + 3600).scene_id == 1


def test_pitfall_nack_returns_at_head_never_used_for_retries(tmp_path: Path, q: JobQueue) -> None:
    raw = raw_queue(tmp_path / "raw")
    raw.put({"scene_id": 1})
    raw.put({"scene_id": 2})
    first = raw.get(block=False, raw=True)
    raw.nack(id=first["pqid"])
    # The failing item is the very next get, ahead of the healthy one behind it.
    assert raw.get(block=False)["scene_id"] == 1
    raw.close()

    q.enqueue(1, "hook", T0)
    q.enqueue(2, "hook", T0)
    q.retry_later(q.take_due(T0), T0 + 30, "PlexNotFound", "m", T0)
    assert q.take_due(T0).scene_id == 2  # the failed job does not hold back the due one
    assert q.take_due(T0) is None


def test_pitfall_auto_resume_steals_rows_another_process_is_working_on(tmp_path: Path, qdir: Path) -> None:
    worker = raw_queue(tmp_path / "raw")
    worker.put({"scene_id": 1})
    assert worker.get(block=False)["scene_id"] == 1  # being processed by "the worker"
    hook = raw_queue(tmp_path / "raw", auto_resume=True)  # e.g. a hook process opening the queue
    assert hook.get(block=False)["scene_id"] == 1  # the same job handed out a second time
    worker.close()
    hook.close()

    processor = JobQueue(qdir)
    processor.enqueue(1, "hook", T0)
    job = processor.take_due(T0)
    # Hooks never open persist-queue (they write the inbox), and a second JobQueue (a status
    # task, another would-be processor) opens it with auto_resume=False: the flight survives.
    record_event(qdir, "scene", 2, "Scene.Update.Post", T0)
    other = JobQueue(qdir)
    assert other.take_due(T0) is None
    assert [j.scene_id for j in other.report.in_flight()] == [1]
    assert status_of(qdir, job.job_id) == STATUS_IN_FLIGHT
    other.close()
    processor.complete(job, T0)
    processor.close()


def test_pitfall_get_by_id_hands_out_acked_rows_never_called(tmp_path: Path, q: JobQueue, qdir: Path) -> None:
    raw = raw_queue(tmp_path / "raw")
    row_id = raw.put({"scene_id": 1})
    raw.get(block=False)
    raw.ack(id=row_id)
    assert raw.get(block=False, id=row_id)["scene_id"] == 1  # a finished job revived
    assert raw.unack_count() == 1
    raw.close()

    q.enqueue(1, "hook", T0)
    done = q.take_due(T0)
    q.complete(done, T0)
    q.enqueue(2, "hook", T0)
    q.dead_letter(q.take_due(T0), "PlexBadRequest", "m", T0)
    # Nothing we offer reaches a finished row: take_due sees only ready ones, and the
    # transitions refuse rows that are not in flight.
    assert q.take_due(T0 + 10) is None
    assert dict(pq_rows(qdir)) == {1: STATUS_ACKED, 2: STATUS_ACK_FAILED}


def test_pitfall_size_counters_drift_counts_come_from_sql(tmp_path: Path, qdir: Path) -> None:
    a = raw_queue(tmp_path / "raw")
    b = raw_queue(tmp_path / "raw")
    a.put({"scene_id": 1})
    a.put({"scene_id": 2})
    assert (a.qsize(), b.qsize()) == (2, 0)  # b's in-memory total never saw a's puts
    row_id = b.get(block=False, raw=True)["pqid"]
    b.ack(id=row_id)
    b.get(block=False, id=row_id)  # get(id=) on an acked row decrements the total again
    assert b.size == -2 and b.qsize() == 0  # "nothing queued", with a job still ready
    assert a._count() == 1 and a.unack_count() == 1
    a.close()
    b.close()

    writer = JobQueue(qdir)
    reader = JobQueue(qdir)  # opened before the writes, like a status task running alongside
    writer.enqueue(1, "hook", T0)
    writer.enqueue(2, "hook", T0 + 60)
    writer.take_due(T0)
    c = reader.report.counts(T0)
    assert (c.due, c.deferred, c.in_flight) == (0, 1, 1)
    reader.close()
    writer.close()


def test_pitfall_payload_keys_collide_with_internals_envelope_only(tmp_path: Path, q: JobQueue, qdir: Path) -> None:
    raw = raw_queue(tmp_path / "raw")
    victim = raw.put({"scene_id": 1})
    raw.put({"scene_id": 2, "pqid": victim})  # a caller's dict that happens to use "pqid"
    raw.get(block=False)
    mine = raw.get(block=False)  # the item with the colliding key
    assert raw.ack(mine) == victim  # acks the OTHER row
    assert raw.unack_count() == 1 and raw.acked_count() == 1
    raw.close()

    # Our rows hold our envelope only; a caller's payload (here a fan-out event) is stored in
    # our own table and never reaches persist-queue, and we never pass items to ack/nack.
    record_event(qdir, "performer", 7, "Performer.Update.Post", T0, {"pqid": 1, "data": "x", "id": 1})
    q.enqueue(1, "hook", T0)
    result = q.ingest(T0)
    assert result.fanout[0].payload == {"pqid": 1, "data": "x", "id": 1}
    with sqlite3.connect(str(qdir / "stash2plex.db")) as conn:
        (data,) = conn.execute(f"SELECT data FROM {PQ_TABLE}").fetchone()
    assert pq_json.loads(data) == {"v": 1, "scene_id": 1}
    assert drain(q, T0) == [1]


def test_pitfall_offset_without_limit_in_clear_acked_data_compact_avoids_it(tmp_path: Path, qdir: Path) -> None:
    raw = raw_queue(tmp_path / "raw")
    raw.put({"scene_id": 1})
    raw.ack(id=raw.get(block=False, raw=True)["pqid"])
    with pytest.raises(sqlite3.OperationalError, match="OFFSET"):
        raw.clear_acked_data(max_delete=0, keep_latest=10)
    assert raw.acked_count() == 1  # and acked rows stay forever unless something clears them
    raw.close()

    with JobQueue(qdir, compact_every=10**9) as q:
        q.enqueue(1, "hook", T0)
        q.enqueue(2, "hook", T0)
        q.complete(q.take_due(T0), T0)
        q.dead_letter(q.take_due(T0), "E", "m", T0)
        assert len(pq_rows(qdir)) == 2
        assert q.compact() == 2
        assert pq_rows(qdir) == []


def test_pitfall_multi_process_get_is_unsupported_our_rows_stay_readable_by_persist_queue(qdir: Path) -> None:
    """We write persist-queue's rows ourselves (one transaction with our schedule row); they
    must stay rows persist-queue itself understands, or "jobs live in persist-queue" is a lie."""
    with JobQueue(qdir) as q:
        q.enqueue(5, "hook", T0)
        q.enqueue(6, "hook", T0)
        q.take_due(T0)
    raw = persistqueue.SQLiteAckQueue(str(qdir), db_file_name="stash2plex.db", name="jobs", auto_resume=False,
                                      serializer=pq_json)
    assert (raw.ready_count() + raw._count(), raw.unack_count()) == (1, 1)
    assert raw.get(block=False) == {"v": 1, "scene_id": 6}
    raw.close()


def test_pitfall_guard_sync_queue_never_calls_the_dangerous_persist_queue_methods() -> None:
    """The design above only holds if nobody adds a get()/nack()/qsize() call later."""
    allowed = {"clear_acked_data", "close"}
    used: set[str] = set()
    for path in sorted((ROOT / "sync_queue").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) and node.value.attr == "_pq":
                used.add(node.attr)
            if isinstance(node, ast.keyword) and node.arg == "auto_resume":
                assert isinstance(node.value, ast.Constant) and node.value.value is False, path
    assert used and used <= allowed, used
    probe = "import sys, sync_queue.inbox; print('persistqueue' in sys.modules, 'filelock' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]  # the hook never loads persist-queue
