"""Clear Queue drops all pending work, including what hooks recorded but no processor has
ingested yet (issue 4, open question).

A user who clicks Clear Queue expects nothing to sync afterwards until something new
happens. Hook events still in the inbox are pending work too: left there, the next ingest
turns them back into the jobs the user just cleared. The same goes for fan-out rows
(performer/studio/tag changes waiting to be expanded into jobs) and for an event that
arrived during a flight (the flight's "run again" mark). What is not work but a fact about
Stash, a scene deleted, is still applied, so its ledger row and dead letter do not outlive it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sync_queue.inbox import SCENE, SCENE_DESTROYED, record_event
from sync_queue.jobs import JobQueue
from tests.fixtures_queue import T0, live_scene_counts


@pytest.fixture
def q(tmp_path: Path) -> Iterator[JobQueue]:
    queue = JobQueue(tmp_path)
    yield queue
    queue.close()


def test_clear_queue_drops_hook_events_still_in_the_inbox(q: JobQueue, tmp_path: Path) -> None:
    q.enqueue(1, "hook", T0)
    for scene in (2, 3, 3):
        record_event(tmp_path, SCENE, scene, "Scene.Update.Post", T0)

    assert q.clear_queue() == 3  # scenes 1, 2 and 3: what would have synced
    counts = q.report.counts(T0)
    assert (counts.due, counts.deferred, counts.inbox) == (0, 0, 0)
    assert q.ingest(T0 + 1).created == 0  # nothing comes back from the inbox
    assert q.take_due(T0 + 1) is None
    assert live_scene_counts(tmp_path) == {}


def test_clear_queue_drops_fanout_waiting_to_be_expanded(q: JobQueue, tmp_path: Path) -> None:
    record_event(tmp_path, "performer", 5, "Performer.Update.Post", T0)
    q.ingest(T0)
    record_event(tmp_path, "tag", 6, "Tag.Update.Post", T0)
    assert [e.kind for e in q.fanout.pending()] == ["performer"]

    q.clear_queue()
    assert q.ingest(T0 + 1).fanout == []
    assert q.report.counts(T0 + 1).fanout == 0


def test_clear_queue_cancels_the_rerun_of_a_flight_but_leaves_the_flight_to_its_processor(
    q: JobQueue, tmp_path: Path
) -> None:
    q.enqueue(1, "hook", T0)
    flying = q.take_due(T0)
    record_event(tmp_path, SCENE, 1, "Scene.Update.Post", T0)
    q.ingest(T0)  # the event marks the flight to run again
    q.enqueue(2, "hook", T0)
    record_event(tmp_path, SCENE, 1, "Scene.Update.Post", T0)  # and one more still in the inbox

    assert q.clear_queue() == 2
    q.complete(flying, T0 + 1)  # its processor still finishes it normally
    assert q.take_due(T0 + 1) is None  # and nothing runs after it
    assert live_scene_counts(tmp_path) == {}


def test_clear_queue_still_applies_scene_deletions_from_the_inbox(q: JobQueue, tmp_path: Path) -> None:
    q.enqueue(4, "hook", T0)
    q.ledger.put(4, "h", "/library/metadata/4", None, None, {}, T0)
    q.dead_letter(q.take_due(T0), "PlexNotFound", "m", T0)
    record_event(tmp_path, SCENE, 4, "Scene.Update.Post", T0 + 1)
    record_event(tmp_path, SCENE_DESTROYED, 4, "Scene.Destroy.Post", T0 + 2)

    q.clear_queue()
    assert q.ledger.get(4) is None
    assert q.dlq.list_all() == []
    assert q.report.counts(T0 + 3).inbox == 0


def test_an_event_recorded_after_the_clear_is_kept(q: JobQueue, tmp_path: Path) -> None:
    record_event(tmp_path, SCENE, 1, "Scene.Update.Post", T0)
    q.clear_queue()
    record_event(tmp_path, SCENE, 1, "Scene.Update.Post", T0 + 1)  # the user saves again
    assert q.ingest(T0 + 1).created == 1
    assert q.take_due(T0 + 1).scene_id == 1


def test_clear_queue_task_also_drops_a_job_a_dead_processor_left_in_flight(tmp_path: Path) -> None:
    """Through the Stash host. The task holds the processor lock, so a job still in flight was
    left by a processor that died; without clearing it too, the next worker's
    recover_abandoned would bring it back and sync a scene the user had just cleared."""
    from emulators.stage import stage
    from tests.secret_audit import AUDIT

    with stage(4, seed=5, work_dir=tmp_path,
               on_result=lambda r: AUDIT.record("clear queue task", r.stdout + r.stderr)) as st:
        AUDIT.add_secret(st.plex.token)
        q = JobQueue(st.data_dir)
        for scene in st.library.sorted_ids()[:3]:
            q.enqueue(scene, "hook", T0)
        abandoned = q.take_due(T0)
        q.close(compact=False)  # the processor dies with the job in flight
        record_event(st.data_dir, SCENE, st.library.sorted_ids()[3], "Scene.Update.Post", T0)

        result = st.task("clear_queue")
        assert result.error is None and result.returncode == 0, (result.error, result.stderr[-2000:])
        assert result.output["count"] == 4
        assert not st.worker_running()
        with JobQueue(st.data_dir) as q:
            assert q.recover_abandoned(T0 + 1) == 0
            counts = q.report.counts(T0 + 1)
            assert (counts.due, counts.deferred, counts.in_flight, counts.inbox) == (0, 0, 0, 0)
            assert q.report.job_for_scene(abandoned.scene_id) is None
        assert live_scene_counts(st.data_dir) == {}
