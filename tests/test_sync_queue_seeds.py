"""Both field reports in ``shared/seeds`` replayed at queue level (issue 4, point 8).

Seed 000, the retry storm: scenes Plex has not scanned yet failed with PlexNotFound, were put
back with a 30 s backoff hidden inside their payload, and a batch loop that never looked at
it took them again within milliseconds: 3-5 attempts per scene in 2 seconds. Here the retry
time is the column ``take_due`` selects on, so whatever loop drives the queue, however fast,
and whatever else arrives meanwhile (bulk and reconcile passes, other scenes' hooks), a
deferred job is not handed out before its time.

Seed 001, the infinite requeue: dedup looked only at pending and in-progress rows, so a
reconcile fired by every hook re-queued every scene the worker had just completed: 355K jobs
for a 15K library. Here bulk and reconcile ask the ledger (what was written to Plex), not the
queue's rows, so an unchanged library queues nothing, during the run or any time after it,
and an edit made after the sync still gets through exactly once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sync_queue.inbox import SCENE, record_event
from sync_queue.jobs import JobQueue
from sync_queue.ledger import state_hash
from sync_queue.schedule import PQ_TABLE, Job
from tests.fixtures_queue import T0, raw_conn

NOT_SCANNED = "PlexNotFound"
BACKOFF = 30.0  # the first PlexNotFound delay in the report
STORM_SCENES = (55650, 55651, 55652)


@pytest.fixture
def q(tmp_path: Path) -> Iterator[JobQueue]:
    queue = JobQueue(tmp_path)
    yield queue
    queue.close()


# ---- seed 000: the not-yet-scanned retry storm ----


def batch_loop(q: JobQueue, start: float, until: float, step: float, between=None) -> list[tuple[float, int]]:
    """A batch processor as tight as a loop can be: take, fail 'not scanned', put back, repeat.

    It checks nothing itself (that was the report's bug): each turn takes until the queue says
    nothing is due, then the clock moves ``step``. ``between(now)`` runs after every turn, for
    whatever else happens meanwhile.
    """
    attempts = []
    now = start
    while now < until:
        while (job := q.take_due(now)) is not None:
            attempts.append((now, job.scene_id))
            q.retry_later(job, now + BACKOFF * 2 ** job.attempts, NOT_SCANNED, "Could not find Plex item", now)
        if between is not None:
            between(now)
        now += step
    return attempts


def test_seed_000_a_scene_not_yet_scanned_is_tried_once_per_backoff_not_in_a_storm(q: JobQueue) -> None:
    for scene in STORM_SCENES:
        q.enqueue(scene, "Scene.Create.Post", T0)

    # The report's window: two seconds of a loop spinning every millisecond.
    storm = batch_loop(q, T0, T0 + 2.0, 0.001)
    assert Counter(scene for _, scene in storm) == Counter(STORM_SCENES)  # once each, not 3-5 times
    assert all(when == T0 for when, _ in storm)  # all three at once: none waited behind another

    # Later on, each retry comes exactly when its backoff says, and not a moment before.
    later = batch_loop(q, T0 + 2.0, T0 + 250.0, 0.25)
    by_scene = {s: [when - T0 for when, scene in later if scene == s] for s in STORM_SCENES}
    assert by_scene == {s: [BACKOFF, BACKOFF + 2 * BACKOFF, BACKOFF + 6 * BACKOFF] for s in STORM_SCENES}
    assert q.report.counts(T0 + 250.0).deferred == 3


def test_seed_000_bulk_and_reconcile_passes_during_the_backoff_do_not_reset_it(q: JobQueue) -> None:
    """A reconcile fired by every hook sees the unscanned scenes as never synced and queues
    them again: that merges into the deferred job and keeps its schedule."""
    for scene in STORM_SCENES:
        q.enqueue(scene, "Scene.Create.Post", T0)
    hashes = {scene: state_hash({"id": scene, "title": f"scene {scene}"}) for scene in STORM_SCENES}
    queued: list[int] = []

    def reconcile_and_other_hooks(now: float) -> None:
        queued.append(q.enqueue_changed_many(hashes.items(), "reconcile", now))
        q.enqueue(1000 + len(queued) % 7, "Scene.Update.Post", now)  # busy library: other scenes' hooks

    storm = batch_loop(q, T0, T0 + 2.0, 0.002, between=reconcile_and_other_hooks)
    tries = Counter(scene for _, scene in storm if scene in STORM_SCENES)
    assert tries == Counter(STORM_SCENES)
    assert all(n == 3 for n in queued)  # never synced: the passes did ask for them every time...
    for scene in STORM_SCENES:  # ...and each time merged into the one job, its backoff intact
        job = q.report.job_for_scene(scene)
        assert (job.attempts, job.next_retry_at) == (1, T0 + BACKOFF)
    assert q.report.counter("merged") >= 3 * len(queued)


def test_seed_000_the_retry_time_is_the_selection_not_a_payload_field(q: JobQueue, tmp_path: Path) -> None:
    """Even a payload that claims 'due now' cannot make a deferred job come out early, and the
    schedule row becomes ready in the same commit that sets its new time (no window where it
    is ready with the old, passed time)."""
    q.enqueue(STORM_SCENES[0], "hook", T0)
    job = q.take_due(T0)
    q.retry_later(job, T0 + BACKOFF, NOT_SCANNED, "m", T0)
    with raw_conn(tmp_path) as conn:
        conn.execute(f"UPDATE {PQ_TABLE} SET data = ? WHERE _id = ?",
                     (b'{"v": 1, "scene_id": 55650, "next_retry_at": 0}', job.job_id))
        (taken_at, due), = conn.execute("SELECT taken_at, next_retry_at FROM schedule").fetchall()
    assert (taken_at, due) == (None, T0 + BACKOFF)
    assert q.take_due(T0 + BACKOFF - 0.001) is None
    assert q.take_due(T0 + BACKOFF).scene_id == STORM_SCENES[0]


@settings(max_examples=25, deadline=None)
@given(
    scenes=st.integers(min_value=1, max_value=6),
    delays=st.lists(st.floats(min_value=0.05, max_value=120.0), min_size=1, max_size=4),
    step=st.sampled_from([0.001, 0.01, 0.1]),
)
def test_seed_000_for_any_backoff_and_loop_speed_no_scene_is_tried_inside_its_backoff(
    tmp_path_factory: pytest.TempPathFactory, scenes: int, delays: list[float], step: float
) -> None:
    q = JobQueue(tmp_path_factory.mktemp("storm"))
    try:
        for scene in range(1, scenes + 1):
            q.enqueue(scene, "hook", T0)
        now, last_try, planned = T0, {}, {}
        while now < T0 + 2.0:
            job: Job | None = q.take_due(now)
            if job is not None:
                if job.scene_id in planned:
                    assert now >= planned[job.scene_id]  # never inside the backoff it was given
                last_try[job.scene_id] = now
                delay = delays[min(job.attempts, len(delays) - 1)]
                planned[job.scene_id] = now + delay
                q.retry_later(job, now + delay, NOT_SCANNED, "m", now)
            now += step
        assert set(last_try) == set(range(1, scenes + 1))  # and none starved behind another
    finally:
        q.close(compact=False)


# ---- seed 001: infinite requeue of recently completed rows ----

LIBRARY = 150


def library(version: int = 0) -> dict[int, str]:
    return {scene: state_hash({"id": scene, "title": f"scene {scene}", "v": version}) for scene in
            range(1, LIBRARY + 1)}


def process(q: JobQueue, job: Job, stash: dict[int, str], now: float) -> None:
    """A successful sync: the worker read the scene from Stash and wrote it to Plex."""
    q.ledger.put(job.scene_id, stash[job.scene_id], f"/library/metadata/{job.scene_id}", None, None, {}, now)
    q.complete(job, now)


def test_seed_001_reconcile_fired_by_every_hook_during_a_sync_all_requeues_nothing(q: JobQueue) -> None:
    stash = library()
    assert q.enqueue_changed_many(stash.items(), "sync_all", T0) == LIBRARY

    flights: Counter[int] = Counter()
    passes = 0
    now = T0
    while (job := q.take_due(now)) is not None:
        flights[job.scene_id] += 1
        # A hook fires mid-job and its auto-reconcile scans the whole library, as in the report.
        q.enqueue_changed_many(stash.items(), "reconcile", now)
        passes += 1
        process(q, job, stash, now)
        now += 0.1
    assert passes == LIBRARY
    assert flights == Counter(range(1, LIBRARY + 1))  # each scene once: 150 jobs, not 150 * 150
    assert q.report.counter("skipped_unchanged") > 0 and q.report.counter("skipped_in_flight") == LIBRARY


@pytest.mark.parametrize("later", [1.0, 86_400.0 + 1, 30 * 86_400.0], ids=["1s", "after 24h", "30 days"])
def test_seed_001_an_unchanged_library_queues_nothing_however_long_after_the_sync(q: JobQueue, later: float) -> None:
    stash = library()
    q.enqueue_changed_many(stash.items(), "sync_all", T0)
    while (job := q.take_due(T0)) is not None:
        process(q, job, stash, T0)
    q.compact()
    with raw_conn(q.data_dir) as conn:  # no completed rows left for any window to look at
        assert conn.execute(f"SELECT COUNT(*) FROM {PQ_TABLE}").fetchone()[0] == 0

    for reason in ("sync_all", "reconcile", "reconcile_recent"):
        assert q.enqueue_changed_many(stash.items(), reason, T0 + later) == 0
    assert q.take_due(T0 + later) is None


def test_seed_001_an_edit_after_the_sync_gets_through_exactly_once(q: JobQueue, tmp_path: Path) -> None:
    stash = library()
    q.enqueue_changed_many(stash.items(), "sync_all", T0)
    while (job := q.take_due(T0)) is not None:
        process(q, job, stash, T0)

    edited = library(version=1)
    stash = {**stash, 7: edited[7], 8: edited[8]}
    record_event(tmp_path, SCENE, 7, "Scene.Update.Post", T0 + 10)  # 8 was edited with hooks off
    q.ingest(T0 + 10)
    assert q.enqueue_changed_many(stash.items(), "reconcile", T0 + 10) == 2  # 8 found; 7 merges
    q.ledger.mark_lost(9)  # Plex lost the item behind scene 9
    assert q.enqueue_changed_many(stash.items(), "reconcile", T0 + 10) == 3

    flights = Counter()
    for _ in range(5):  # a reconcile after each drain, as hooks keep firing
        while (job := q.take_due(T0 + 20)) is not None:
            flights[job.scene_id] += 1
            process(q, job, stash, T0 + 20)
        q.enqueue_changed_many(stash.items(), "reconcile", T0 + 20)
    assert flights == Counter({7: 1, 8: 1, 9: 1})
