"""The one processing core: the real queue, the real Plex side over plexapi and the emulated
Plex, a controlled clock. Both field reports are replayed here at core level.

The scene source is a dict standing in for Stash until the Stash emulator serves GraphQL;
everything on the Plex side goes over the wire and is counted in the emulator's request log.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import requests

from base.errors import PlexUnavailable, SceneGone
from base.protocol import StashLog
from base.settings import load_settings
from emulators.plex_server import PlexEmulator
from plex.connection import PlexConnection
from plex.desired import desired_state
from plex.diff import state_hash
from plex.sync import PlexSync
from stash.records import Scene, SceneFile, Studio
from sync_queue.jobs import JobQueue
from sync_queue.state import BREAKER, HALT, StateStore
from worker.breaker import BreakerState
from worker.core import Services, drain
from worker.halt import halt_applies
from worker.policy import ErrorClass, RetryPolicy

START = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = START
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class Scenes:
    """Stand-in for Stash: the newest state of each scene, read per job."""

    def __init__(self) -> None:
        self.scenes: dict[int, Scene] = {}
        self.reads: list[int] = []

    def find_scene(self, scene_id: int) -> Scene:
        self.reads.append(scene_id)
        if scene_id not in self.scenes:
            raise SceneGone(f"Scene {scene_id} no longer exists in Stash.")
        return self.scenes[scene_id]

    def find_scenes(self, ids: Iterable[int], listed: object = None) -> dict[int, Scene | Exception]:
        """A batch's read: each scene as `find_scene` answers it, a failure kept per scene."""
        found: dict[int, Scene | Exception] = {}
        for scene_id in ids:
            try:
                found[scene_id] = self.find_scene(scene_id)
            except Exception as exc:
                found[scene_id] = exc
        return found


def make_scene(sid: int, folder: str = "a", **fields: object) -> Scene:
    base: dict[str, object] = dict(id=sid, title=f"Scene {sid}", details="d", date="2020-01-02",
                                   files=(SceneFile(f"/data/stash/{folder}/s{sid}.mp4", 1000, 60.0),),
                                   studio=Studio("1", "Studio"), tags=("x", "y"))
    base.update(fields)
    return Scene(**base)  # type: ignore[arg-type]


def settings(**raw: object):
    base: dict[str, object] = {"plex_url": "x", "plex_token": "t", "path_map": "/data/stash=>/media/stash",
                               "trigger_plex_scan": False, "sync_poster": False, "sync_background": False}
    base.update(raw)
    return load_settings(base, warn=lambda m: None)


@pytest.fixture
def plex() -> Iterator[PlexEmulator]:
    with PlexEmulator() as emulator:
        yield emulator


@pytest.fixture
def world(plex: PlexEmulator, tmp_path: Path) -> Iterator[tuple[Services, Scenes, Clock, JobQueue]]:
    clock = Clock()
    scenes = Scenes()
    queue = JobQueue(tmp_path)
    state = StateStore(tmp_path)
    conn = PlexConnection(plex.url, plex.token, data_dir=tmp_path, sleep=clock.sleep)
    s = settings()
    svc = Services(queue, state, scenes, PlexSync(conn, s, lambda url: b""), RetryPolicy.from_settings(s),
                   StashLog(stream=io.StringIO()), token=plex.token)
    yield svc, scenes, clock, queue
    state.close()
    queue.close()


def seed(world, plex: PlexEmulator, ids: range, *, enqueue: bool = True) -> None:
    """Scenes in Stash whose files Plex has scanned, optionally each with a hook job."""
    _svc, scenes, clock, queue = world
    for sid in ids:
        scenes.scenes[sid] = make_scene(sid)
        plex.add_item(f"/media/stash/a/s{sid}.mp4")
        if enqueue:
            queue.enqueue(sid, "hook", clock())


def run(svc: Services, clock: Clock):
    return drain(svc, clock, clock.sleep)


def test_a_fresh_library_syncs_in_one_drain(world, plex: PlexEmulator) -> None:
    svc, scenes, clock, queue = world
    seed(world, plex, range(1, 6))
    result = run(svc, clock)
    assert result.summary.synced == 5 and result.processed == 5
    assert all(plex.item_by_file(f"/media/stash/a/s{sid}.mp4").fields["title"] == f"Scene {sid}"
               for sid in range(1, 6))
    assert queue.report.counts(clock()).due == 0 and queue.report.counts(clock()).ledger == 5
    assert clock.sleeps == []  # no fixed pause between jobs


def test_seed_000_not_yet_scanned_is_looked_up_once_per_backoff_window(world, plex: PlexEmulator) -> None:
    """Field report 000: a job deferred for a Plex scan is never taken again inside its window."""
    svc, scenes, clock, queue = world
    for sid in (1, 2, 3):
        scenes.scenes[sid] = make_scene(sid, folder="new")
        plex.add_pending(f"/media/stash/new/s{sid}.mp4")
        queue.enqueue(sid, "hook", clock())
    first = run(svc, clock)
    assert first.processed == 3 and len(first.summary.deferred) == 3
    assert all(d.error_class is ErrorClass.NOT_FOUND for d in first.summary.deferred.values())
    soonest = min(d.next_retry_at for d in first.summary.deferred.values())
    assert soonest >= clock() + 15  # 30 s base with equal jitter: at least half of it

    plex.reset_log()
    reads = len(scenes.reads)
    for _ in range(50):  # a loop as fast as a batch drain can spin
        again = run(svc, clock)
        assert again.processed == 0
    assert plex.count() == 0 and len(scenes.reads) == reads

    # Plex scans the folder; once the backoff is over every scene syncs, none was dropped.
    requests.get(f"{plex.url}/library/sections/1/refresh", params={"path": "/media/stash/new"},
                 headers={"X-Plex-Token": plex.token}, timeout=5).raise_for_status()
    clock.now = max(d.next_retry_at for d in first.summary.deferred.values()) + 1
    last = run(svc, clock)
    assert last.summary.synced == 3 and queue.report.counts(clock()).deferred == 0


def test_seed_001_unchanged_library_is_never_requeued(world, plex: PlexEmulator) -> None:
    """Field report 001: after a full sync, bulk and reconcile sources find nothing to do."""
    svc, scenes, clock, queue = world
    seed(world, plex, range(1, 11), enqueue=False)
    s = settings()

    def hashes():
        return [(sid, state_hash(desired_state(sc, s), lock=s.lock_synced_fields, preserve=s.preserve_plex_edits))
                for sid, sc in scenes.scenes.items()]

    assert queue.enqueue_changed_many(hashes(), "sync_all", clock()) == 10
    assert run(svc, clock).summary.synced == 10
    plex.reset_log()
    clock.now += 30 * 86400  # however long ago the sync was
    assert queue.enqueue_changed_many(hashes(), "reconcile", clock()) == 0
    assert run(svc, clock).processed == 0
    assert plex.count() == 0
    # an edit after the sync always gets through
    scenes.scenes[4] = make_scene(4, title="Renamed")
    assert queue.enqueue_changed_many(hashes(), "reconcile", clock()) == 1
    assert run(svc, clock).summary.synced == 1
    assert plex.item_by_file("/media/stash/a/s4.mp4").fields["title"] == "Renamed"
    assert plex.count("PUT") == 1


def test_a_deferred_job_never_delays_a_fresh_one(world, plex: PlexEmulator) -> None:
    svc, scenes, clock, queue = world
    scenes.scenes[1] = make_scene(1, folder="new")
    plex.add_pending("/media/stash/new/s1.mp4")
    queue.enqueue(1, "hook", clock())
    assert len(run(svc, clock).summary.deferred) == 1
    clock.now += 1
    scenes.scenes[2] = make_scene(2)
    plex.add_item("/media/stash/a/s2.mp4")
    queue.enqueue(2, "hook", clock())
    result = run(svc, clock)
    assert result.processed == 1 and result.summary.synced == 1
    assert queue.report.job_for_scene(1) is not None and queue.report.job_for_scene(2) is None


def test_outage_mid_drain_opens_the_breaker_without_a_storm(world, plex: PlexEmulator) -> None:
    svc, scenes, clock, queue = world
    seed(world, plex, range(1, 21))
    first = drain(svc, clock, clock.sleep, max_jobs=5)
    assert first.summary.synced == 5
    plex.faults.down = True
    outage = run(svc, clock)
    breaker = svc.breaker()
    assert breaker.state is BreakerState.OPEN and outage.breaker_until == breaker.open_until
    assert outage.processed == svc.breaker_config.threshold  # then no job is even taken
    attempts = [queue.report.job_for_scene(sid).attempts for sid in range(6, 21)]
    assert attempts == [0] * 15  # an outage uses no attempt
    for _ in range(20):
        assert run(svc, clock).processed == 0  # refused before any request while open
    plex.faults.down = False
    clock.now = breaker.open_until + 1
    after = run(svc, clock)
    assert after.summary.synced == 15 and svc.breaker().state is BreakerState.CLOSED


def test_a_probe_is_one_cheap_request_and_releases_every_held_job(world, plex: PlexEmulator) -> None:
    """The breaker's probe is `/identity`, not a job; once it is answered, every job held for
    the outage is due at once, not at its own later retry time."""
    svc, scenes, clock, queue = world
    seed(world, plex, range(1, 11))
    drain(svc, clock, clock.sleep, max_jobs=1)  # the connection is made
    plex.faults.down = True
    outage = run(svc, clock)
    assert outage.outage is not None and "refused the connection" in outage.outage
    held = [queue.report.job_for_scene(sid).next_retry_at for sid in range(2, 11)]
    assert max(held) > svc.breaker().open_until  # jobs failed before it opened wait longer
    plex.faults.down = False
    plex.reset_log()
    clock.now = svc.breaker().open_until
    after = run(svc, clock)
    assert after.probed and after.summary.synced == 9 and after.summary.deferred == {}
    assert [(r.method, r.path) for r in plex.requests[:1]] == [("GET", "/identity")]
    assert plex.count("GET", "/identity") == 1


def test_a_task_probes_at_once_whatever_the_breakers_schedule(world, plex: PlexEmulator) -> None:
    svc, scenes, clock, queue = world
    seed(world, plex, range(1, 6))
    drain(svc, clock, clock.sleep, max_jobs=1)
    plex.faults.down = True
    run(svc, clock)
    assert svc.breaker().state is BreakerState.OPEN
    # Still down: the task's probe fails, says why, and takes no job.
    plex.reset_log()
    still = drain(svc, clock, clock.sleep, probe_first=True)
    assert still.probed and still.processed == 0 and "refused" in (still.outage or "")
    plex.faults.down = False
    back = drain(svc, clock, clock.sleep, probe_first=True)  # long before the breaker's probe time
    assert back.probed and back.summary.synced == 4 and svc.breaker().state is BreakerState.CLOSED
    assert plex.count("GET", "/identity") == 1


def test_a_breaker_opened_for_another_address_or_token_does_not_hold_the_jobs(world, plex: PlexEmulator) -> None:
    from worker.breaker import Breaker
    from worker.breaker_store import breaker_for, plex_target, stored_breaker

    opened = Breaker(BreakerState.OPEN, 3, START, START + 60, trips=1)
    token = "secret-token-7f3a"
    old, new = plex_target("http://127.0.0.1:1", token), plex_target("http://127.0.0.1:32400", token)
    text = stored_breaker(opened, old)
    assert breaker_for(text, old) == opened
    assert breaker_for(text, new) == Breaker()
    assert breaker_for(text, plex_target("http://127.0.0.1:1", "another token")) == Breaker()
    assert breaker_for(opened.to_json(), new) == opened  # stored before targets: applies to any
    assert token not in text and Breaker.load(text) == opened  # readable by older code too

    # Through the services: a drain for the fixed address is not held by the old breaker.
    svc, scenes, clock, queue = world
    seed(world, plex, range(1, 4))
    svc.state.put(BREAKER, stored_breaker(replace(opened, open_until=clock() + 60), old))
    svc.target = new
    assert run(svc, clock).summary.synced == 3


def test_a_bad_token_stops_once_and_keeps_every_job(world, plex: PlexEmulator) -> None:
    svc, scenes, clock, queue = world
    seed(world, plex, range(1, 6))
    plex.faults.revoke_token()
    result = run(svc, clock)
    assert result.processed == 1 and result.summary.stopped and "token" in result.summary.stopped
    assert queue.report.counts(clock()).due == 5 and queue.report.counts(clock()).dlq == 0
    assert all(queue.report.job_for_scene(sid).attempts == 0 for sid in range(1, 6))
    assert halt_applies(svc.state.get(HALT), plex.token) is not None
    assert halt_applies(svc.state.get(HALT), "a-new-token") is None


def test_a_deleted_scene_completes_and_a_bug_is_dead_lettered_with_its_traceback(world, plex) -> None:
    svc, scenes, clock, queue = world
    queue.enqueue(99, "hook", clock())  # not in Stash any more

    class Broken(Scenes):
        def find_scene(self, scene_id: int) -> Scene:
            if scene_id == 7:
                raise KeyError("files")
            return super().find_scene(scene_id)

    broken = Broken()
    svc.stash = broken
    queue.enqueue(7, "hook", clock())
    result = run(svc, clock)
    assert result.summary.skipped == {"scene_gone": 1}
    for _ in range(5):
        clock.now += 3600
        run(svc, clock)
    letters = queue.dlq.list_all()
    assert [letter.scene_id for letter in letters] == [7]
    assert letters[0].error_class == "bug" and "KeyError" in (letters[0].detail or "")
    assert letters[0].attempts == 3


def test_the_writes_in_flight_are_never_more_than_it_takes_to_open_the_breaker() -> None:
    """When Plex goes away every write in flight fails at once; an outage must not cost more
    failed requests than the breaker needs before it stops all of them."""
    from worker.breaker import BreakerConfig
    from worker.core import WRITERS

    assert 1 <= WRITERS <= BreakerConfig().threshold


def test_a_request_waiting_for_a_lane_after_one_failed_is_not_sent() -> None:
    """When Plex goes away, the requests already queued on the lanes (a write's edit and its
    uploads go out at once) must not follow the one that failed: the write they belong to
    goes back untouched, as a write the pool skipped does, and Plex sees no more than the
    lanes had in flight."""
    from worker.core import _Drain, _Skipped

    run = _Drain(*[None] * 8)  # type: ignore[arg-type]  # it reads only the drain's trouble
    sent: list[str] = []

    def refused() -> int:
        sent.append("edit")
        raise PlexUnavailable("refused")

    assert run.unless_troubled(lambda: sent.append("poster") or 1) == 1
    with pytest.raises(PlexUnavailable):
        run.unless_troubled(refused)
    with pytest.raises(_Skipped):
        run.unless_troubled(lambda: sent.append("art") or 1)
    assert sent == ["poster", "edit"]
