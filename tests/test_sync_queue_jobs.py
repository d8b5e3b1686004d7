"""JobQueue: one test per behaviour of the contract in sync_queue/jobs.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sync_queue.inbox import record_event
from sync_queue.jobs import ABANDONED, JobQueue
from sync_queue.schedule import (
    RERUN_KEEP_SCHEDULE,
    RERUN_NONE,
    RERUN_NOW,
    EnqueueOutcome,
    JobNotInFlight,
    due_after_retry,
    envelope,
    envelope_scene,
    merge_reasons,
    merged_due_at,
    rerun_mark,
)
from tests.fixtures_queue import T0, drain, live_scene_counts, pq_rows


@pytest.fixture
def q(tmp_path: Path) -> Iterator[JobQueue]:
    queue = JobQueue(tmp_path)
    yield queue
    queue.close()


# ---- pure decisions ----


def test_merge_reasons_keeps_first_seen_order_without_duplicates() -> None:
    assert merge_reasons(("a", "b"), ("b", "c", "a")) == ("a", "b", "c")


def test_merge_reasons_is_capped_keeping_the_newest() -> None:
    assert merge_reasons((), [str(i) for i in range(20)], cap=3) == ("17", "18", "19")


@pytest.mark.parametrize(
    ("current", "now", "urgent", "expected"),
    [(T0 + 600, T0, True, T0), (T0 + 600, T0, False, T0 + 600), (T0 - 5, T0, True, T0 - 5), (T0 - 5, T0, False, T0 - 5)],
)
def test_merged_due_at(current: float, now: float, urgent: bool, expected: float) -> None:
    assert merged_due_at(current, now, urgent) == expected


def test_rerun_mark_only_goes_up() -> None:
    assert rerun_mark(RERUN_NONE, urgent=False) == RERUN_KEEP_SCHEDULE
    assert rerun_mark(RERUN_NOW, urgent=False) == RERUN_NOW
    assert rerun_mark(RERUN_KEEP_SCHEDULE, urgent=True) == RERUN_NOW


def test_due_after_retry_lets_only_a_hook_event_pull_the_retry_forward() -> None:
    assert due_after_retry(T0 + 30, RERUN_NONE, T0) == T0 + 30
    assert due_after_retry(T0 + 30, RERUN_KEEP_SCHEDULE, T0) == T0 + 30
    assert due_after_retry(T0 + 30, RERUN_NOW, T0) == T0


def test_envelope_round_trip_and_rejects_foreign_payloads() -> None:
    assert envelope_scene(envelope(7)) == 7
    for bad in ({"scene_id": 7}, {"v": 2, "scene_id": 7}, {"v": 1, "scene_id": "7"}, [1], None):
        with pytest.raises(ValueError):
            envelope_scene(bad)


# ---- enqueue and merge ----


def test_enqueue_creates_then_merges_into_one_job(q: JobQueue, tmp_path: Path) -> None:
    assert q.enqueue(1, "Scene.Update.Post", T0) == EnqueueOutcome.CREATED
    assert q.enqueue(1, "reconcile", T0 + 1, urgent=False) == "merged"
    job = q.report.job_for_scene(1)
    assert job is not None and job.reasons == ("Scene.Update.Post", "reconcile")
    assert live_scene_counts(tmp_path) == {1: 1}
    assert q.report.counter("merged") == 1


def test_hook_merge_makes_a_backing_off_job_due_now_but_keeps_attempts(q: JobQueue) -> None:
    q.enqueue(1, "hook", T0)
    q.retry_later(q.take_due(T0), T0 + 600, "PlexNotFound", "not scanned yet", T0)
    q.enqueue(1, "hook", T0 + 10)
    job = q.take_due(T0 + 10)
    assert job is not None and job.attempts == 1 and job.last_error_class == "PlexNotFound"


def test_bulk_merge_keeps_the_backoff(q: JobQueue) -> None:
    q.enqueue(1, "hook", T0)
    q.retry_later(q.take_due(T0), T0 + 600, "PlexNotFound", "not scanned yet", T0)
    q.enqueue(1, "reconcile", T0 + 10, urgent=False)
    assert q.take_due(T0 + 10) is None
    assert q.take_due(T0 + 600) is not None


# ---- take_due ----


def test_take_due_orders_by_due_time_then_arrival(q: JobQueue) -> None:
    for scene in (3, 1, 2):
        q.enqueue(scene, "bulk", T0)
    q.enqueue(9, "bulk", T0 - 5)
    assert [j.scene_id for j in iter(lambda: q.take_due(T0), None)] == [9, 3, 1, 2]


def test_in_flight_job_is_not_handed_out_twice(q: JobQueue) -> None:
    q.enqueue(1, "hook", T0)
    assert q.take_due(T0) is not None
    assert q.take_due(T0) is None
    assert q.report.counts(T0).in_flight == 1


def test_next_due_at_skips_in_flight_and_sees_deferred(q: JobQueue) -> None:
    assert q.report.next_due_at() is None
    q.enqueue(1, "hook", T0)
    q.enqueue(2, "hook", T0)
    q.retry_later(q.take_due(T0), T0 + 30, "E", "m", T0)
    assert q.report.next_due_at() == T0  # scene 2
    q.take_due(T0)
    assert q.report.next_due_at() == T0 + 30


# ---- finishing ----


def test_complete_acks_and_removes_the_job(q: JobQueue, tmp_path: Path) -> None:
    q.enqueue(1, "hook", T0)
    q.complete(q.take_due(T0), T0)
    assert q.report.job_for_scene(1) is None
    assert pq_rows(tmp_path) == [(1, 5)]
    q.compact()
    assert pq_rows(tmp_path) == []


def test_finishing_a_job_that_is_not_in_flight_is_refused(q: JobQueue) -> None:
    q.enqueue(1, "hook", T0)
    job = q.take_due(T0)
    q.complete(job, T0)
    with pytest.raises(JobNotInFlight):
        q.complete(job, T0)
    with pytest.raises(JobNotInFlight):
        q.retry_later(job, T0 + 5, "E", "m", T0)
    with pytest.raises(JobNotInFlight):
        q.dead_letter(job, "E", "m", T0)


def test_retry_later_records_error_and_counts_attempts(q: JobQueue) -> None:
    q.enqueue(1, "hook", T0)
    q.retry_later(q.take_due(T0), T0 + 30, "PlexUnavailable", "down", T0, consume_attempt=False)
    q.retry_later(q.take_due(T0 + 30), T0 + 90, "PlexNotFound", "missing", T0 + 30)
    (job,) = q.report.deferred(T0 + 30)
    assert (job.attempts, job.next_retry_at, job.last_error_class, job.last_error) == (1, T0 + 90, "PlexNotFound", "missing")
    assert job.first_failed_at == T0


def test_dead_letter_moves_the_job_to_the_dlq(q: JobQueue) -> None:
    q.enqueue(1, "hook", T0)
    q.retry_later(q.take_due(T0), T0 + 1, "PlexNotFound", "m1", T0)
    q.dead_letter(q.take_due(T0 + 1), "PlexNotFound", "m2", T0 + 1, detail="Traceback ...")
    assert q.report.job_for_scene(1) is None
    (letter,) = q.dlq.list_all()
    assert (letter.scene_id, letter.error_class, letter.message, letter.detail) == (1, "PlexNotFound", "m2", "Traceback ...")
    assert (letter.attempts, letter.first_failed_at, letter.last_failed_at, letter.reasons) == (2, T0, T0 + 1, ("hook",))


# ---- an event while the scene is in flight ----


@pytest.mark.parametrize("ending", ["complete", "retry_later", "dead_letter"])
def test_event_during_flight_survives_every_ending(q: JobQueue, tmp_path: Path, ending: str) -> None:
    q.enqueue(1, "first", T0)
    job = q.take_due(T0)
    assert q.enqueue(1, "second", T0 + 1) == EnqueueOutcome.DEFERRED_BEHIND_INFLIGHT
    assert live_scene_counts(tmp_path) == {1: 1}
    if ending == "complete":
        q.complete(job, T0 + 2)
    elif ending == "retry_later":
        q.retry_later(job, T0 + 600, "PlexNotFound", "m", T0 + 2)
    else:
        q.dead_letter(job, "PlexBadRequest", "m", T0 + 2)
    assert live_scene_counts(tmp_path) == {1: 1}
    again = q.take_due(T0 + 2)  # a hook event: due now, whatever the backoff said
    assert again is not None and again.scene_id == 1 and "second" in again.reasons
    assert q.take_due(T0 + 2) is None


def test_bulk_event_during_a_failing_flight_waits_for_the_backoff(q: JobQueue) -> None:
    q.enqueue(1, "hook", T0)
    job = q.take_due(T0)
    q.enqueue(1, "reconcile", T0 + 1, urgent=False)
    q.retry_later(job, T0 + 600, "PlexNotFound", "m", T0 + 2)
    assert q.take_due(T0 + 599) is None
    assert q.take_due(T0 + 600).reasons == ("hook", "reconcile")


def test_complete_with_rerun_starts_a_fresh_job(q: JobQueue) -> None:
    q.enqueue(1, "first", T0)
    q.retry_later(q.take_due(T0), T0, "E", "m", T0)
    job = q.take_due(T0)
    q.enqueue(1, "second", T0)
    q.complete(job, T0 + 1)
    fresh = q.take_due(T0 + 1)
    assert (fresh.reasons, fresh.attempts, fresh.last_error_class) == (("second",), 0, None)


# ---- ingest ----


def test_ingest_turns_inbox_events_into_jobs_and_empties_the_inbox(q: JobQueue, tmp_path: Path) -> None:
    for scene in (1, 2, 1, 3):
        record_event(tmp_path, "scene", scene, "Scene.Update.Post", T0)
    result = q.ingest(T0, batch=2)
    assert (result.events, result.created, result.merged) == (4, 3, 1)
    assert q.report.counts(T0).inbox == 0 and q.report.counts(T0).due == 3


def test_ingest_during_flight_defers_behind_it(q: JobQueue, tmp_path: Path) -> None:
    q.enqueue(1, "a", T0)
    job = q.take_due(T0)
    record_event(tmp_path, "scene", 1, "Scene.Update.Post", T0 + 1)
    assert q.ingest(T0 + 1).deferred_behind_inflight == 1
    q.complete(job, T0 + 2)
    assert q.take_due(T0 + 2).reasons == ("Scene.Update.Post",)


def test_ledger_rows_of_many_scenes_read_at_once_are_each_scenes_own(q: JobQueue) -> None:
    ids = list(range(1, 1202, 2))  # more ids than one IN list holds
    for i in ids:
        q.ledger.put(i, f"h{i}", f"/library/metadata/{i}", None, None, {"title": f"T{i}"}, T0)
    q.ledger.mark_lost(5)
    rows = q.ledger.get_many([*range(1, 1202), 3])  # every other one absent, one asked twice
    assert sorted(rows) == ids
    assert all(rows[i] == q.ledger.get(i) for i in ids)
    assert rows[5].lost and not rows[7].lost and rows[1201].written == {"title": "T1201"}
    assert q.ledger.get_many([]) == {}


def test_scene_destroyed_drops_job_ledger_and_dead_letter(q: JobQueue, tmp_path: Path) -> None:
    q.enqueue(1, "a", T0)
    q.ledger.put(1, "h", "/library/metadata/1", None, None, {}, T0)
    q.enqueue(2, "a", T0)
    q.dead_letter(q.take_due(T0), "E", "m", T0)  # scene 1 dead-lettered
    q.enqueue(1, "b", T0)
    record_event(tmp_path, "scene_destroyed", 1, "Scene.Destroy.Post", T0)
    result = q.ingest(T0)
    assert result.destroyed == [1]
    assert q.report.job_for_scene(1) is None and q.ledger.get(1) is None and q.dlq.list_all() == []
    assert q.report.job_for_scene(2) is not None


def test_scene_destroyed_during_flight_cancels_the_rerun(q: JobQueue, tmp_path: Path) -> None:
    q.enqueue(1, "a", T0)
    job = q.take_due(T0)
    q.enqueue(1, "b", T0)
    record_event(tmp_path, "scene_destroyed", 1, "Scene.Destroy.Post", T0)
    q.ingest(T0)
    q.complete(job, T0)
    assert q.report.job_for_scene(1) is None


def test_fanout_events_are_kept_merged_until_done(q: JobQueue, tmp_path: Path) -> None:
    record_event(tmp_path, "performer", 5, "Performer.Update.Post", T0, {"name": "x"})
    record_event(tmp_path, "performer", 5, "Performer.Merge", T0)
    record_event(tmp_path, "tag", 5, "Tag.Update.Post", T0)
    (perf, tag) = q.ingest(T0).fanout
    assert (perf.kind, perf.entity_id, perf.reasons, perf.payload) == (
        "performer", 5, ("Performer.Update.Post", "Performer.Merge"), {"name": "x"})
    assert q.fanout.done(perf.event_id)
    assert [e.kind for e in q.ingest(T0).fanout] == ["tag"]  # left over from before: still returned


# ---- recovery ----


def test_recover_abandoned_returns_in_flight_jobs_exactly_once(tmp_path: Path) -> None:
    q = JobQueue(tmp_path)
    for scene in (1, 2, 3):
        q.enqueue(scene, "hook", T0)
    q.take_due(T0)
    q.take_due(T0)
    q.close()  # the processor dies with two jobs in flight

    q = JobQueue(tmp_path)
    third = q.take_due(T0 + 1)
    assert third.scene_id == 3  # nothing came back by itself on reopening
    q.complete(third, T0 + 1)
    assert q.recover_abandoned(T0 + 1) == 2
    assert q.recover_abandoned(T0 + 1) == 0
    assert sorted(drain(q, T0 + 2)) == [1, 2]
    assert drain(q, T0 + 2) == []
    assert live_scene_counts(tmp_path) == {}
    q.close()


def test_recovered_job_counts_the_attempt_and_folds_in_rerun_reasons(q: JobQueue) -> None:
    q.enqueue(1, "a", T0)
    q.take_due(T0)
    q.enqueue(1, "b", T0)
    assert q.recover_abandoned(T0 + 1) == 1
    job = q.take_due(T0 + 1)
    assert (job.reasons, job.attempts, job.last_error_class) == (("a", "b"), 1, ABANDONED)


def test_a_batch_taken_unstarted_charges_a_crash_only_to_the_jobs_started(q: JobQueue) -> None:
    for scene in (1, 2, 3):
        q.enqueue(scene, "a", T0)
    first, second, third = q.take_due_many(T0, 3, started=False)
    q.start(first, T0)
    q.enqueue(3, "b", T0)  # a save while its job waits its turn
    assert q.recover_abandoned(T0 + 1, max_attempts=1) == 2  # the first is dead-lettered
    assert [(d.scene_id, d.error_class) for d in q.dlq.list_all()] == [(1, ABANDONED)]
    back = {sid: q.report.job_for_scene(sid) for sid in (2, 3)}
    assert {sid: (job.attempts, job.last_error_class, job.reasons) for sid, job in back.items() if job} == {
        2: (0, None, ("a",)), 3: (0, None, ("a", "b"))}
    assert drain(q, T0 + 1) == [2, 3]


def test_a_job_that_keeps_killing_the_processor_is_dead_lettered(q: JobQueue) -> None:
    q.enqueue(1, "a", T0)
    for _ in range(2):
        q.take_due(T0)
        assert q.recover_abandoned(T0, max_attempts=3) == 1
    q.take_due(T0)
    assert q.recover_abandoned(T0, max_attempts=3) == 0
    assert q.report.job_for_scene(1) is None
    assert [(d.error_class, d.attempts) for d in q.dlq.list_all()] == [(ABANDONED, 3)]


def test_processor_killed_mid_flight_in_a_real_process(tmp_path: Path) -> None:
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(Path(__file__).resolve().parent.parent)!r})
        from sync_queue.jobs import JobQueue
        q = JobQueue({str(tmp_path)!r})
        q.enqueue(1, "hook", {T0})
        q.enqueue(2, "hook", {T0})
        q.take_due({T0})
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert proc.returncode != 0
    with JobQueue(tmp_path) as q:
        assert q.report.counts(T0).in_flight == 1
        assert q.recover_abandoned(T0) == 1
        assert sorted(drain(q, T0)) == [1, 2]


# ---- counts, listings, clearing ----


def test_counts_come_from_sql(q: JobQueue, tmp_path: Path) -> None:
    q.enqueue(1, "a", T0)
    q.enqueue(2, "a", T0)
    q.enqueue(3, "a", T0)
    q.retry_later(q.take_due(T0), T0 + 60, "E", "m", T0)
    q.take_due(T0)
    record_event(tmp_path, "scene", 4, "x", T0)
    q.ledger.put(9, "h", None, None, None, {}, T0)
    c = q.report.counts(T0)
    assert (c.due, c.deferred, c.in_flight, c.dlq, c.ledger, c.inbox, c.fanout) == (1, 1, 1, 0, 1, 1, 0)
    assert [j.scene_id for j in q.report.deferred(T0)] == [1]
    assert [j.scene_id for j in q.report.in_flight()] == [2]


def test_clear_queue_drops_ready_jobs_only(q: JobQueue) -> None:
    for scene in (1, 2, 3):
        q.enqueue(scene, "a", T0)
    q.ledger.put(1, "h", None, None, None, {}, T0)
    flying = q.take_due(T0)
    assert q.clear_queue() == 2
    assert q.take_due(T0) is None
    q.complete(flying, T0)
    assert q.ledger.get(1) is not None


def test_dlq_summary_retry_purge_clear(q: JobQueue) -> None:
    for scene, error_class, when in ((1, "PlexNotFound", T0), (2, "PlexNotFound", T0 + 86_400 * 10), (3, "StashBadData", T0)):
        q.enqueue(scene, "hook", when)
        q.dead_letter(q.take_due(when), error_class, "m", when)
    summary = q.dlq.summary()
    assert [(g.error_class, g.count, g.sample_scene_ids) for g in summary] == [
        ("PlexNotFound", 2, (1, 2)), ("StashBadData", 1, (3,))]
    assert q.retry_dlq("StashBadData", T0 + 86_400 * 10) == 1
    fresh = q.take_due(T0 + 86_400 * 10)
    assert (fresh.scene_id, fresh.attempts) == (3, 0) and "retry_dlq" in fresh.reasons
    q.complete(fresh, T0 + 86_400 * 10)
    assert q.dlq.purge(7, T0 + 86_400 * 10) == 1  # scene 1, ten days old
    assert [d.scene_id for d in q.dlq.list_all()] == [2]
    with pytest.raises(ValueError):
        q.dlq.purge(-1, T0)
    assert q.dlq.clear() == 1 and q.dlq.list_all() == []
    assert q.retry_dlq(None, T0) == 0


def test_success_removes_an_old_dead_letter_for_the_scene(q: JobQueue) -> None:
    q.enqueue(1, "hook", T0)
    q.dead_letter(q.take_due(T0), "PlexNotFound", "m", T0)
    q.enqueue(1, "hook", T0 + 5)
    q.complete(q.take_due(T0 + 5), T0 + 5)
    assert q.dlq.list_all() == []


def test_dead_lettering_twice_keeps_one_row_and_the_first_failure_time(q: JobQueue) -> None:
    for when in (T0, T0 + 100):
        q.enqueue(1, "hook", when)
        q.dead_letter(q.take_due(when), "E", f"at {when}", when)
    (letter,) = q.dlq.list_all()
    assert (letter.first_failed_at, letter.last_failed_at, letter.message) == (T0, T0 + 100, f"at {T0 + 100}")


def test_compaction_runs_by_itself_every_n_finished_jobs(tmp_path: Path) -> None:
    with JobQueue(tmp_path, compact_every=10) as q:
        for scene in range(25):
            q.enqueue(scene + 1, "bulk", T0)
        drain(q, T0)
        assert len(pq_rows(tmp_path)) == 5


# ---- batches ----


def test_take_due_many_takes_the_earliest_due_in_one_go_and_never_a_deferred_one(q: JobQueue) -> None:
    for sid in range(1, 6):
        q.enqueue(sid, "hook", T0 + sid)
    q.retry_later(q.take_due(T0 + 10), T0 + 999, "transient", "later", T0 + 10)  # scene 1 deferred
    taken = q.take_due_many(T0 + 10, 3)
    assert [j.scene_id for j in taken] == [2, 3, 4]
    assert q.report.counts(T0 + 10).in_flight == 3
    assert [j.scene_id for j in q.take_due_many(T0 + 10, 50)] == [5]
    assert q.take_due_many(T0 + 10, 50) == []


def test_release_hands_back_untouched_jobs_with_a_hook_that_arrived_meanwhile(q: JobQueue) -> None:
    q.enqueue(1, "hook", T0)
    q.enqueue(2, "sync_all", T0, urgent=False)
    taken = q.take_due_many(T0, 10)
    q.enqueue(2, "hook", T0 + 5)  # a save while in flight
    q.release(taken, T0 + 6)
    assert q.report.counts(T0 + 6).in_flight == 0
    one, two = q.report.job_for_scene(1), q.report.job_for_scene(2)
    assert (one.attempts, one.last_error, one.next_retry_at) == (0, None, T0)
    assert two.reasons == ("sync_all", "hook") and two.next_retry_at == T0 and two.attempts == 0
    assert [j.scene_id for j in q.take_due_many(T0 + 6, 10)] == [1, 2]


def test_a_job_carries_its_listing_until_an_event_without_one_merges_in(q: JobQueue) -> None:
    listed = {"id": "1", "title": "as listed", "updated_at": "2026-01-01T00:00:00Z"}
    assert q.enqueue_if_changed(1, "h1", "sync_all", T0, listed)
    assert q.enqueue_if_changed(2, "h2", "sync_all", T0, listed | {"id": "2"})
    q.enqueue(2, "hook", T0 + 1)  # a save: the listing is older than it
    by_scene = {j.scene_id: j for j in q.take_due_many(T0 + 1, 10)}
    assert by_scene[1].listed == listed and by_scene[2].listed is None
    assert envelope_scene(envelope(1, listed)) == 1
