"""The queue's invariants over random interleavings (issue 4, point 8), checked by hypothesis.

A ``RuleBasedStateMachine`` drives one real ``JobQueue`` (its SQLite file in a temporary
folder) beside a small model of what the contract promises. The processor reads a scene from
"Stash" when it takes the job, as the worker does, so the model keeps a version per scene and
the ledger records the version a successful flight saw.

Rules: Stash edits (with or without a hook), hook events, inbox ingest, bulk passes
(``enqueue_if_changed`` one by one, or ``enqueue_changed_many``), ``take_due``, ``complete``,
``retry_later`` (always into the future), ``dead_letter``, a crash (the ``JobQueue`` dropped
with jobs in flight, reopened, ``recover_abandoned``), the user's ``clear_queue`` and
``retry_dlq``, and the clock moving on.

Invariants, after every step:

* at most one live job per scene, counted from persist-queue's own rows;
* a job not yet due is never handed out, and a due job is never held back: ``take_due``
  returns None exactly when the model has nothing due, else a job due earliest;
* no event lost: every recorded event (a hook, or a bulk pass that queued a change) is
  processed by a flight that started after it, or is still pending (in the inbox, in a ready
  job, in a flight taken after it, or marked to run again after the flight), or is in the DLQ,
  or was dropped by the user's Clear Queue;
* the ledger rule: a bulk pass over a scene whose Stash state is what the ledger says was
  written queues nothing and changes no row.

Kept to a few seconds: ``max_examples`` is moderate, ``deadline=None`` (SQLite commits on a
shared, loaded machine vary far more than hypothesis' default deadline allows).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from sync_queue.db import DB_FILE
from sync_queue.inbox import SCENE, record_event
from sync_queue.jobs import JobQueue
from sync_queue.ledger import state_hash
from sync_queue.schedule import PQ_TABLE, RERUN_KEEP_SCHEDULE, RERUN_NONE, RERUN_NOW, Job
from tests.fixtures_queue import T0

SCENE_IDS = (1, 2, 3, 4)  # the whole Stash library
SCENES = st.sampled_from(SCENE_IDS)
MAX_ATTEMPTS = 3
COMPACT_EVERY = 3  # compaction runs often inside the machine too
#: Hundreds of short-lived databases: on tmpfs their checkpoints' fsyncs cost nothing, which
#: keeps the run at a few seconds on a busy disk. The SQL is the same either way.
SCRATCH = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None


def stash_hash(scene: int, version: int) -> str:
    return state_hash({"scene": scene, "version": version})


@dataclass
class ModelJob:
    in_flight: bool
    due: float
    attempts: int
    rerun: int = RERUN_NONE
    hash: str | None = None  # schedule.state_hash: the state a bulk pass queued it for
    flight_seq: int = -1  # when the current flight began (the model's step counter)
    flight_version: int = -1  # the Stash version the processor read when it took the job
    taken: Job | None = None


@dataclass
class Event:
    scene: int
    seq: int
    status: str = "open"  # open -> done | dlq (-> open again by retry_dlq) | cleared


class QueueMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="s2p-props-", dir=SCRATCH))
        self.q = JobQueue(self.dir, compact_every=COMPACT_EVERY)
        self.raw = sqlite3.connect(str(self.dir / DB_FILE), timeout=30)
        self.now = T0
        self.seq = 0
        self.version: dict[int, int] = {}
        self.ledger: dict[int, str] = {}
        self.dlq: dict[int, tuple[int, str | None]] = {}  # attempts, state hash
        self.jobs: dict[int, ModelJob] = {}
        self.inbox: list[Event] = []  # hook events not yet ingested, in order
        self.events: list[Event] = []

    def teardown(self) -> None:
        self.raw.close()
        self.q.close(compact=False)
        shutil.rmtree(self.dir, ignore_errors=True)

    # ---- helpers ----

    def tick(self) -> int:
        self.seq += 1
        return self.seq

    def current_hash(self, scene: int) -> str:
        return stash_hash(scene, self.version.get(scene, 0))

    def in_flight(self) -> list[int]:
        return sorted(s for s, j in self.jobs.items() if j.in_flight)

    def apply_enqueue(self, scene: int, urgent: bool, hash_: str | None) -> None:
        """The model of ``_enqueue``: create, merge into a ready job, or mark a flight."""
        job = self.jobs.get(scene)
        if job is None:
            self.jobs[scene] = ModelJob(in_flight=False, due=self.now, attempts=0, hash=hash_)
        elif job.in_flight:
            job.rerun = max(job.rerun, RERUN_NOW if urgent else RERUN_KEEP_SCHEDULE)
            job.hash = hash_
        else:
            job.due = min(job.due, self.now) if urgent else job.due
            job.hash = hash_

    def settle(self, scene: int, flight_seq: int, status: str) -> None:
        """Events a finished flight answered: those recorded before it began."""
        for event in self.events:
            answered = event.scene == scene and event.seq < flight_seq
            if answered and (event.status == "open" or (event.status == "dlq" and status == "done")):
                event.status = status

    def refresh_or_drop(self, scene: int) -> None:
        job = self.jobs[scene]
        if job.rerun:
            self.jobs[scene] = ModelJob(in_flight=False, due=self.now, attempts=0, hash=job.hash)
        else:
            del self.jobs[scene]

    def snapshot(self) -> tuple[list[tuple], ...]:
        return (
            self.raw.execute("SELECT * FROM schedule ORDER BY job_id").fetchall(),
            self.raw.execute(f"SELECT _id, data, status FROM {PQ_TABLE} WHERE status <= 2 ORDER BY _id").fetchall(),
            self.raw.execute("SELECT * FROM dlq ORDER BY scene_id").fetchall(),
            self.raw.execute("SELECT * FROM ledger ORDER BY scene_id").fetchall(),
        )

    def expected_bulk(self, scene: int) -> bool:
        """The ledger rule, as the contract states it."""
        h = self.current_hash(scene)
        if self.ledger.get(scene) == h:
            return False
        if scene in self.dlq and self.dlq[scene][1] == h:
            return False
        job = self.jobs.get(scene)
        return not (job is not None and job.in_flight and job.hash == h)

    # ---- rules: sources ----

    @initialize()
    def start(self) -> None:
        self.q.recover_abandoned(self.now)

    @rule(scene=SCENES, hook=st.booleans())
    def edit_in_stash(self, scene: int, hook: bool) -> None:
        """The user edits a scene; Stash may or may not run the hook (plugin off, Stash down)."""
        self.version[scene] = self.version.get(scene, 0) + 1
        if hook:
            self.hook(scene)

    @rule(scene=SCENES)
    def hook(self, scene: int) -> None:
        record_event(self.dir, SCENE, scene, "Scene.Update.Post", self.now)
        event = Event(scene, self.tick())
        self.inbox.append(event)
        self.events.append(event)

    @rule()
    def ingest(self) -> None:
        result = self.q.ingest(self.now)
        assert result.events == len(self.inbox)
        for event in self.inbox:
            self.apply_enqueue(event.scene, urgent=True, hash_=None)
        self.inbox.clear()

    @rule(many=st.booleans())
    def bulk_pass(self, many: bool) -> None:
        """Sync All / reconcile over every scene Stash has."""
        scenes = list(SCENE_IDS)
        expected = {s: self.expected_bulk(s) for s in scenes}
        before = self.snapshot()
        if many:
            queued = self.q.enqueue_changed_many(((s, self.current_hash(s)) for s in scenes), "sync_all", self.now)
            assert queued == sum(expected.values())
        else:
            for scene in scenes:
                got = self.q.enqueue_if_changed(scene, self.current_hash(scene), "sync_all", self.now)
                assert got == expected[scene], (scene, expected[scene])
        if not any(expected.values()):
            assert self.snapshot() == before  # unchanged state enqueues nothing, touches nothing
        seq = self.tick()
        for scene in scenes:
            if expected[scene]:
                self.apply_enqueue(scene, urgent=False, hash_=self.current_hash(scene))
                self.events.append(Event(scene, seq))

    # ---- rules: the processor ----

    @rule()
    def take_due(self) -> None:
        job = self.q.take_due(self.now)
        due = {s: j.due for s, j in self.jobs.items() if not j.in_flight and j.due <= self.now}
        if not due:
            assert job is None, job  # nothing due: nothing (deferred or not) is handed out
            return
        assert job is not None, due  # something is due: no deferred job may hold it back
        model = self.jobs[job.scene_id]
        assert not model.in_flight
        assert job.scene_id in due, (job, due)  # never a job that is not yet due
        assert job.next_retry_at == model.due == min(due.values())
        assert job.attempts == model.attempts
        model.in_flight, model.taken = True, job
        model.flight_seq, model.flight_version = self.tick(), self.version.get(job.scene_id, 0)

    @precondition(lambda self: self.in_flight())
    @rule(data=st.data())
    def complete(self, data: st.DataObject) -> None:
        scene = data.draw(st.sampled_from(self.in_flight()))
        model = self.jobs[scene]
        written = stash_hash(scene, model.flight_version)
        self.q.ledger.put(scene, written, f"/library/metadata/{scene}", None, None, {}, self.now)
        self.q.complete(model.taken, self.now)
        self.ledger[scene] = written
        self.dlq.pop(scene, None)
        self.settle(scene, model.flight_seq, "done")
        self.refresh_or_drop(scene)

    @precondition(lambda self: self.in_flight())
    @rule(data=st.data(), delay=st.sampled_from([1.0, 30.0, 600.0]), consume=st.booleans())
    def retry_later(self, data: st.DataObject, delay: float, consume: bool) -> None:
        scene = data.draw(st.sampled_from(self.in_flight()))
        model = self.jobs[scene]
        self.q.retry_later(model.taken, self.now + delay, "PlexNotFound", "not scanned yet", self.now,
                           consume_attempt=consume)
        due = self.now if model.rerun == RERUN_NOW else self.now + delay
        self.jobs[scene] = ModelJob(in_flight=False, due=due, attempts=model.attempts + int(consume),
                                    hash=model.hash)

    @precondition(lambda self: self.in_flight())
    @rule(data=st.data())
    def dead_letter(self, data: st.DataObject) -> None:
        scene = data.draw(st.sampled_from(self.in_flight()))
        model = self.jobs[scene]
        self.q.dead_letter(model.taken, "PlexNotFound", "gave up", self.now)
        self.dlq[scene] = (model.attempts + 1, model.hash)
        self.settle(scene, model.flight_seq, "dlq")
        self.refresh_or_drop(scene)

    @rule()
    def crash(self) -> None:
        """The processor dies: its JobQueue is gone with jobs in flight; the next one recovers."""
        self.q.close(compact=False)
        self.q = JobQueue(self.dir, compact_every=COMPACT_EVERY)
        expected = 0
        for scene in self.in_flight():
            model = self.jobs[scene]
            attempts = model.attempts + 1
            if attempts >= MAX_ATTEMPTS:
                self.dlq[scene] = (attempts, model.hash)
                for event in self.events:  # its flight's and its rerun's, not the inbox's
                    if event.scene == scene and event.status == "open" and event not in self.inbox:
                        event.status = "dlq"
                del self.jobs[scene]
            else:
                self.jobs[scene] = ModelJob(in_flight=False, due=model.due, attempts=attempts, hash=model.hash)
                expected += 1
        assert self.q.recover_abandoned(self.now, max_attempts=MAX_ATTEMPTS) == expected
        assert self.q.recover_abandoned(self.now, max_attempts=MAX_ATTEMPTS) == 0  # exactly once

    # ---- rules: the user's queue tools ----

    @rule()
    def clear_queue(self) -> None:
        """Clear Queue: pending work is dropped on purpose (its events count as answered);
        a flight already under way is not pending, and finishes as usual."""
        rerun = {s for s, j in self.jobs.items() if j.in_flight and j.rerun}
        ready = {s for s, j in self.jobs.items() if not j.in_flight}
        assert self.q.clear_queue() == len(ready | rerun | {e.scene for e in self.inbox})
        for event in self.events:
            job = self.jobs.get(event.scene)
            covered = job is not None and job.in_flight and job.flight_seq > event.seq
            if event.status == "open" and not covered:
                event.status = "cleared"
        for scene in ready:
            del self.jobs[scene]
        for scene in rerun:
            self.jobs[scene].rerun = RERUN_NONE
        self.inbox.clear()

    @rule()
    def retry_dlq(self) -> None:
        assert self.q.retry_dlq(None, self.now) == len(self.dlq)
        for scene in sorted(self.dlq):
            self.apply_enqueue(scene, urgent=True, hash_=None)
            for event in self.events:
                if event.scene == scene and event.status == "dlq":
                    event.status = "open"
        self.dlq.clear()

    @rule(dt=st.sampled_from([0.5, 1.0, 30.0, 600.0]))
    def advance_clock(self, dt: float) -> None:
        self.now += dt

    # ---- invariants ----

    @invariant()
    def one_live_job_per_scene(self) -> None:
        rows = self.raw.execute(f"SELECT data FROM {PQ_TABLE} WHERE status <= 2").fetchall()
        scenes = [json.loads(data)["scene_id"] for (data,) in rows]
        assert len(scenes) == len(set(scenes)), scenes
        assert sorted(scenes) == sorted(self.jobs)
        schedule = self.raw.execute("SELECT COUNT(*) FROM schedule").fetchone()[0]
        assert schedule == len(scenes)  # no schedule row without its live job, nor the reverse

    @invariant()
    def queue_agrees_with_the_model(self) -> None:
        counts = self.q.report.counts(self.now)
        ready = [j for j in self.jobs.values() if not j.in_flight]
        assert counts.due == sum(j.due <= self.now for j in ready)
        assert counts.deferred == sum(j.due > self.now for j in ready)
        assert counts.in_flight == len(self.jobs) - len(ready)
        assert counts.inbox == len(self.inbox)
        assert counts.dlq == len(self.dlq)
        assert {d.scene_id: (d.attempts, d.state_hash) for d in self.q.dlq.list_all()} == self.dlq
        assert {s: e.fields_hash for s in SCENE_IDS if (e := self.q.ledger.get(s))} == self.ledger
        for scene, model in self.jobs.items():
            job = self.q.report.job_for_scene(scene)
            assert job is not None and job.attempts == model.attempts
            if not model.in_flight:
                assert job.next_retry_at == model.due

    @invariant()
    def no_event_lost(self) -> None:
        in_inbox = {r[0] for r in self.raw.execute("SELECT entity_id FROM inbox WHERE kind = 'scene'")}
        rerun = dict(self.raw.execute("SELECT scene_id, rerun FROM schedule").fetchall())
        in_dlq = {r[0] for r in self.raw.execute("SELECT scene_id FROM dlq")}
        for event in self.events:
            if event.status in ("done", "cleared"):
                continue
            if event.status == "dlq":
                assert event.scene in in_dlq, event
                continue
            job = self.jobs.get(event.scene)
            pending = (
                event.scene in in_inbox
                or (job is not None and not job.in_flight and event.scene in rerun)
                or (job is not None and job.in_flight and (job.flight_seq > event.seq or rerun[event.scene] > 0))
            )
            assert pending, (event, job, rerun.get(event.scene))


QueueMachine.TestCase.settings = settings(
    max_examples=40, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
test_queue_invariants = QueueMachine.TestCase
