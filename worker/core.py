"""The one processing core: take due jobs, sync their scenes, decide, acknowledge each.

Every caller goes through `drain`: the background worker,
Process Queue, and the drains after Sync All and Reconcile (run by `tasks.drain`). There is
no second loop that could forget a due-time check (and retry a failing scene at once, again
and again) or keep its own idea of what is done (and requeue it forever): due-ness is the
queue's `take_due`, the outcome is `policy.decide`, and the acknowledgement is one queue
transition.

What the drain waits on, and nothing else (no fixed sleep between jobs):
* the circuit breaker: while it refuses, no job is taken at all, so a Plex outage costs
  no request and no database churn; the drain stops and says when the next probe is due.
  The probe is one cheap request (`probe_plex`), not a job: once Plex answers, every job
  held back for the outage is due at once;
* a server's Retry-After: every request pauses for it, bounded by `pacing.MAX_HOLD`,
  from whichever thread it is sent (the Plex connection holds them all);
* `max_request_rate`, which the Plex connection applies per request, pool included.

The batch: jobs are taken `BATCH_SIZE` at a time (`JobQueue.take_due_many`), their scenes
and Plex items read together (`read_batch`), and each job is then started, written and
acknowledged on its own, exactly as one job alone would be. Threads only at the I/O edge:
a job's image downloads (`PlexSync.fetch`) run on `FETCHERS` threads, its write to Plex
(`PlexSync.write`: edit, uploads) on a pool of `WRITERS`; deciding and every database write
stay on the drain's thread.
"""

from __future__ import annotations

import random
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from enum import Enum
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from base.backoff import FANOUT_BACKOFF, RandomSource, ceiling
from base.clock import absolute_utc
from base.errors import SceneGone, Stash2PlexError
from base.protocol import StashLog
from base.settings import Settings
from plex.records import LedgerEntry, SyncOutcome, SyncStatus
from reconciliation.fanout import expand_pending, state_function
from stash.records import Scene
from sync_queue.jobs import IngestResult, JobQueue
from sync_queue.schedule import Job
from sync_queue.state import BREAKER, HALT, StateStore
from worker.breaker import (
    Breaker,
    BreakerConfig,
    BreakerEvent,
    BreakerState,
    admit,
    allows_request,
    next_probe_at,
    transition,
)
from worker.breaker_store import breaker_for, stored_breaker
from worker.halt import halt_record
from worker.policy import (
    LABELS,
    Complete,
    CompleteReason,
    Decision,
    ErrorClass,
    Failure,
    GiveUp,
    RetryAt,
    RetryPolicy,
    StopDrain,
    breaker_event,
    decide,
)
from worker.summary import DrainSummary
from worker.sync_ledger import ITEM_CLAIMED, note_in_flight, previous_sync, record_sync

if TYPE_CHECKING:
    from plex.images import ImageStep
    from plex.sync import PlexBatch, PreparedSync

T = TypeVar("T")

#: Inbox events (hooks that arrived during the drain) are folded in this often, in seconds.
INGEST_EVERY = 2.0
#: Jobs taken and read together: one Stash request and one Plex comma read per batch.
BATCH_SIZE = 50
#: Least progress (a fraction of the drain) worth a line to Stash.
PROGRESS_STEP = 0.002
#: Writes (the edit, the uploads) in flight at once on the drain's pool. No more than the
#: breaker's threshold (`BreakerConfig.threshold`): when Plex goes away, the writes in flight
#: fail together, and that must not be more than it takes to open it.
WRITERS = 3
#: Requests to Plex in flight from the writes, all of them together: every request a write
#: sends (its edit and its uploads, at once) goes out on one of these threads, in the order sent.
#: A write that sent its own requests left its thread idle between scenes, and a scene's
#: second upload found a single thread beside it busy half the time; from one set of lanes,
#: none is idle while any write has a request waiting. One more request may come from the
#: drain's own thread (a batch's comma read, a collection's flush).
LANES = 4
#: Jobs started ahead of a free writer: their images download from Stash while the writes
#: before them go out, so a writer finds them ready instead of waiting for Stash. Enough that
#: the writes keep the lanes busy while this thread reads the next batch (a listing page, the
#: scenes, the Plex items: about 50 ms on a network with 5 ms round trips) and starts none.
AHEAD = 3 * WRITERS
#: Image downloads from Stash at once, ahead of the writes; with the drain's own reads, at
#: most one more request is in flight to Stash.
FETCHERS = 2


class SceneSource(Protocol):
    def find_scenes(self, ids: Sequence[int], listed: Mapping[int, Mapping[str, Any]] | None = None,
                    ) -> Mapping[int, Scene | Exception]: ...


class Listing(Protocol):
    """A task's listing that queues jobs page by page while the drain takes them (Sync All's
    `reconciliation.bulk.SyncPass`): the first writes need not wait for the last page."""

    def step(self) -> int | None: ...  # the next page queued: its jobs; None once done
    def pending(self) -> int: ...  # jobs the pages not yet listed should queue, projected


class PlexTarget(Protocol):
    lanes: Callable[[Callable[[], int]], Future[int]] | None

    def read_batch(self, scenes: Sequence[Scene], ledgers: Sequence[LedgerEntry | None], now: float,
                   ) -> PlexBatch: ...
    def prepare(self, scene: Scene, ledger: LedgerEntry | None, now: float,
                batch: PlexBatch | None = None) -> PreparedSync: ...
    def fetch(self, prepared: PreparedSync) -> Sequence[ImageStep]: ...
    def write(self, prepared: PreparedSync, images: Sequence[ImageStep] | None = None) -> SyncOutcome: ...
    def hold(self, seconds: float) -> None: ...
    def probe(self) -> None: ...


#: Why a job did not run: the breaker refused it, which says nothing new about Plex.
BREAKER_OPEN = "Plex circuit breaker is open"


@dataclass
class Services:
    """What processing needs; built once per process by the caller (see `worker.services`)."""

    queue: JobQueue
    state: StateStore
    stash: SceneSource
    plex: PlexTarget
    policy: RetryPolicy
    log: StashLog
    token: str = ""
    rng: RandomSource = field(default_factory=random.Random)
    breaker_config: BreakerConfig = field(default_factory=BreakerConfig)
    settings: Settings | None = None  # lets fan-out skip scenes whose Plex state is unchanged
    fanout_retry_at: float = 0.0
    #: Which Plex the stored breaker is about (`plex_target`): a breaker opened while
    #: `plex_url` or the token was wrong must not hold the jobs once the user fixed it.
    target: str = ""

    # -- the persisted breaker --

    def breaker(self) -> Breaker:
        return breaker_for(self.state.get(BREAKER), self.target)

    def admit(self, now: float) -> tuple[Breaker, bool]:
        """Ask the stored breaker for permission; granting a probe is stored atomically.

        A closed breaker admits without changing, so the common case costs a read, not a
        write transaction per job.
        """
        current = self.breaker()
        if current.state is BreakerState.CLOSED:
            return current, True
        verdict: dict[str, Any] = {}

        def change(text: str | None) -> str:
            breaker, allowed = admit(breaker_for(text, self.target), now, self.breaker_config)
            verdict.update(breaker=breaker, allowed=allowed)
            return stored_breaker(breaker, self.target)

        self.state.update(BREAKER, change)
        return verdict["breaker"], verdict["allowed"]

    def feed(self, event: BreakerEvent, now: float) -> Breaker:
        before = self.breaker()
        after = transition(before, event, now, self.breaker_config)
        if after != before:
            # The outage itself is said by the caller, once, with its cause (see DrainResult.outage).
            self.state.put(BREAKER, stored_breaker(after, self.target))
            if after.state is BreakerState.CLOSED and before.state is not BreakerState.CLOSED:
                self.log.info("Stash2Plex: Plex answers again; resuming.")
        return after


def probe_plex(svc: Services, now: float) -> Failure | None:
    """One cheap request to Plex, its outcome fed to the breaker. When Plex answers, every job
    held back for an outage is due at once: it waited for Plex, and Plex is back."""
    try:
        svc.plex.probe()
    except Exception as exc:  # classified like any attempt's failure
        failure: Failure | None = Failure.from_exception(exc)
    else:
        failure = None
    svc.feed(breaker_event(failure.error_class if failure else None), now)
    if failure is None or breaker_event(failure.error_class) is BreakerEvent.REACHABLE:
        released = svc.queue.release_held(ErrorClass.OUTAGE.value, now)
        if released:
            svc.log.debug(f"{released} job(s) held for the outage are due now")
    return failure


# --- one job, in two halves -------------------------------------------------------------


@dataclass
class Batch:
    """One drain batch's read context, made once for all its jobs: their scenes as Stash has
    them now (one request; a scene a listing read is only checked, see
    `StashClient.find_scenes`), and the Plex side's reads (`plex.sync.PlexBatch`: their items
    in one comma read). A read every job of a batch needs joins here, once per batch."""

    jobs: list[Job]
    scenes: dict[int, Scene | Exception]
    plex: PlexBatch | None = None

    def scene(self, scene_id: int) -> Scene:
        found = self.scenes.get(scene_id)
        if isinstance(found, Scene):
            return found
        raise found if found is not None else SceneGone(f"Scene {scene_id} no longer exists in Stash.")


def read_batch(jobs: list[Job], svc: Services, now: float) -> Batch:
    """Read a batch's scenes and Plex items. A read that fails is each job's own failure, as
    if it had read alone: Stash down is every job's `StashUnavailable`; a Plex read that fails
    leaves each sync to read its own item (and meet the same answer, judged per job)."""
    ids = [job.scene_id for job in jobs]
    listed = {job.scene_id: job.listed for job in jobs if job.listed is not None}
    try:
        scenes: dict[int, Scene | Exception] = dict(svc.stash.find_scenes(ids, listed))
    except Exception as exc:  # judged per job below, the way its own read would have been
        scenes = dict.fromkeys(ids, exc)
    batch = Batch(jobs, scenes)
    found = [s for s in scenes.values() if isinstance(s, Scene)]
    if found:
        try:
            batch.plex = svc.plex.read_batch(found, [previous_sync(svc.queue, s.id) for s in found], now)
        except Exception as exc:
            svc.log.debug(f"Stash2Plex: reading a batch's Plex items failed ({exc}); each job reads its own")
    return batch


@dataclass(frozen=True)
class Started:
    """A job whose first half ran: its write is on the pool."""

    job: Job
    scene: Scene
    write: Future[SyncOutcome]
    batch: Batch | None = None  # the batch it was read in
    key: str = ""  # the Plex item it writes


def begin(job: Job, batch: Batch, svc: Services, now: float) -> PreparedSync | Decision:
    """The drain thread's half: the breaker's word, the scene, the item, who owns it. A
    decision when the job ends here (refused, or failed), else the write to send."""
    breaker, allowed = svc.admit(now)
    if not allowed:
        until = next_probe_at(breaker) or now + svc.policy.min_delay
        return RetryAt(max(until, now + svc.policy.min_delay), False, ErrorClass.OUTAGE, BREAKER_OPEN)
    try:
        scene = batch.scene(job.scene_id)
        return svc.plex.prepare(scene, previous_sync(svc.queue, job.scene_id), now, batch.plex)
    except Exception as exc:  # classified here, the one place outcomes are judged
        return failed(exc, job, svc, now)


def finish(started: Started, svc: Services, now: float) -> Decision:
    """The outcome of a job's write (waited for), recorded and judged. Never raises for a
    failed attempt: every exception becomes a decision (a bug included)."""
    job = started.job
    try:
        outcome = started.write.result()
    except Exception as exc:
        return failed(exc, job, svc, now)
    record_sync(svc.queue, job.scene_id, outcome, now, started.scene)
    if outcome.kept_locked:
        svc.log.info(f"Stash2Plex: scene {job.scene_id}: left {', '.join(outcome.kept_locked)} alone in Plex: "
                     f"someone else locked them there (setting overwrite_user_locks).")
    if outcome.displaced is not None and svc.queue.release_claim(outcome.displaced, ITEM_CLAIMED, now):
        svc.log.warning(f"Stash2Plex: scene {job.scene_id} now owns Plex item {outcome.plex_key}; scene "
                        f"{outcome.displaced}, synced to it before, is queued again and is dead-lettered if it "
                        f"still resolves to this item.")
    svc.feed(BreakerEvent.SUCCESS if outcome.requests else BreakerEvent.NO_CONTACT, now)
    written = outcome.status is SyncStatus.WRITTEN
    return Complete(CompleteReason.SYNCED if written else CompleteReason.UNCHANGED)


def failed(exc: Exception, job: Job, svc: Services, now: float) -> Decision:
    """A failed attempt, from either half: told to the breaker, then decided by the policy."""
    failure = Failure.from_exception(exc)
    after = svc.feed(breaker_event(failure.error_class), now)
    return decide(failure, job.attempts, svc.policy, now, svc.rng, next_probe_at(after))


def acknowledge(job: Job, decision: Decision, queue: JobQueue, now: float) -> None:
    """The decision, applied to the queue in one transition."""
    if isinstance(decision, Complete):
        queue.complete(job, now)
    elif isinstance(decision, RetryAt):
        queue.retry_later(job, decision.when, decision.error_class.value, decision.message, now,
                          consume_attempt=decision.consume_attempt)
    elif isinstance(decision, GiveUp):
        queue.dead_letter(job, decision.error_class.value, decision.message, now, decision.detail or None)
    else:  # StopDrain: the job goes back as it was taken; only the reason is noted on it
        queue.retry_later(job, job.next_retry_at, decision.error_class.value, decision.reason, now,
                          consume_attempt=False)


# --- folding events in ----------------------------------------------------------------------


def ingest(svc: Services, now: float) -> IngestResult:
    """Turn hook events into jobs, then expand performer/studio/tag events into their scenes.

    A fan-out that cannot finish (Stash unreachable) stays stored with its cursor and is tried
    again after `FANOUT_BACKOFF`; the drain goes on with the jobs it has.
    """
    result = svc.queue.ingest(now)
    if not result.fanout or now < svc.fanout_retry_at:
        return result
    try:
        networks = bool(svc.settings and svc.settings.sync_network_collections)
        expanded = expand_pending(result.fanout, svc.queue, svc.stash, state_function(svc.settings), now,  # type: ignore[arg-type]
                                  networks=networks)
    except Exception as exc:  # the events stay stored; a bug must not stop the jobs either
        svc.fanout_retry_at = now + ceiling(FANOUT_BACKOFF, 1)
        if isinstance(exc, Stash2PlexError):
            svc.log.warning(f"Stash2Plex: performer/studio/tag changes not expanded yet: {exc}")
        else:
            import traceback

            svc.log.error(f"Stash2Plex: expanding a performer/studio/tag change failed: {type(exc).__name__}: {exc}")
            svc.log.debug(traceback.format_exc())
        return result
    result.created += expanded.queued
    if expanded.events:
        svc.log.info(f"Stash2Plex: {expanded.events} performer/studio/tag change(s): {expanded.scenes} scene(s) "
                     f"affected, {expanded.queued} queued.")
    return result


# --- the drain -----------------------------------------------------------------------------


@dataclass
class DrainResult:
    summary: DrainSummary
    processed: int = 0
    breaker_until: float | None = None  # set when the drain stopped for an open breaker
    yielded: bool = False  # another processor asked to take over
    outage: str | None = None  # why Plex could not be reached (address and cause), if it was not
    probed: bool = False  # a probe was sent this drain
    collections: Any = None  # what the collection flush did (`plex.collections.FlushResult`)


def stop_for(result: DrainResult, failure: Failure, svc: Services, now: float) -> None:
    """A probe failed without an answer from Plex: the drain stops. For an outage it says when
    the next probe is; a setting to fix (certificate, scheme, host name) or a bad token stops
    it the way the same failure stops a job's drain."""
    if failure.error_class is ErrorClass.OUTAGE:
        result.outage = failure.message
        result.breaker_until = next_probe_at(svc.breaker())
        result.summary.stopped = result.summary.stopped or (
            f"{LABELS[ErrorClass.OUTAGE]}; next try {_when(result.breaker_until or svc.queue.report.next_due_at())}")
        return
    decision = decide(failure, 0, svc.policy, now, svc.rng)
    reason = decision.reason if isinstance(decision, StopDrain) else f"{LABELS[failure.error_class]}: {failure.message}"
    result.summary.stopped = result.summary.stopped or reason
    if failure.error_class is ErrorClass.AUTH:
        svc.state.put(HALT, halt_record(reason, svc.token, now))


def answered(failure: Failure | None) -> bool:
    return failure is None or breaker_event(failure.error_class) is BreakerEvent.REACHABLE


def drain(
    svc: Services,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
    *,
    progress: Callable[[float], None] | None = None,
    should_yield: Callable[[], bool] = lambda: False,
    max_jobs: int | None = None,
    probe_first: bool = False,
    listing: Listing | None = None,
) -> DrainResult:
    """Process due jobs until none is due, the breaker refuses, or a decision stops it.

    Never waits for a deferred job: what is not due is reported, and the background worker
    (not this loop) decides whether to sleep until it is. `probe_first`: a task the user
    started asks Plex at once, whatever the breaker's schedule, when jobs wait for an outage
    (one cheap request; see `probe_plex`), instead of saying "next probe in 24s".

    Jobs are taken `BATCH_SIZE` at a time and read together (`read_batch`); each is then
    started, written and acknowledged on its own, in the order taken. Up to `WRITERS` writes
    run on a pool, `AHEAD` more wait for a writer while their images download, and this
    thread starts the next jobs and reads the next batch meanwhile. A job of the batch that
    this drain does not start (the breaker refused, a decision stopped the drain, another
    processor asked to take over) goes back untouched.

    `listing`: a task's listing still to run (Sync All's), one page before each batch is
    taken, so its first jobs are written while later pages are read. What the drain leaves
    unlisted (it stopped early) the task lists after it.
    """
    result = DrainResult(DrainSummary())
    open_batch = getattr(svc.plex, "open_batch", None)
    collections = open_batch() if open_batch is not None else None
    # Events become jobs before Plex is asked anything: whether Plex answers or not, every
    # save recorded before the drain is a job when it returns, not only the ones a worker
    # happened to take in first.
    ingest(svc, clock())
    if probe_first and _waits_for_plex(svc, clock()):
        svc.admit(clock())  # when the breaker's own probe is due, this is it (a failure reopens it for longer)
        if not _probe(svc, result, clock()):
            return result
    with ThreadPoolExecutor(WRITERS, thread_name_prefix="stash2plex-write") as pool, \
            ThreadPoolExecutor(LANES, thread_name_prefix="stash2plex-lane") as lanes, \
            ThreadPoolExecutor(FETCHERS, thread_name_prefix="stash2plex-fetch") as fetcher:
        run = _Drain(svc, clock, result, pool, fetcher, progress, should_yield, max_jobs, listing)
        if collections is not None:
            collections.before_rename = run.land_writes
        svc.plex.lanes = partial(lanes.submit, run.unless_troubled)
        try:
            run.run()
        finally:
            svc.plex.lanes = None
    if not result.summary.stopped and not result.yielded:
        flush_collections(svc, result, clock())
    return result


class _Skipped(Exception):
    """A write the pool did not start, or a request of one a lane did not send, because one
    before it failed (see `_Drain`)."""


@dataclass
class _Drain:
    """One drain's loop state: the jobs taken and not yet started, the writes in flight.

    While every write succeeds, up to `WRITERS` run at once, `AHEAD` more wait for a writer
    while their images download. The first that fails stops the pool from starting more
    (`trouble`): the drain judges every write in flight before it starts another job, a
    write the pool skipped goes back to the queue untouched, and jobs go one at a time
    (`single`) until one succeeds. So the breaker, a Retry-After and a stop see each failure
    before the next job begins, as they would one job at a time: an outage costs the writes
    that were in flight, then one job per failure up to the breaker's threshold, never a
    stream of them.

    The next batch is read while the last one's writes are still in flight, and its jobs
    start as writers come free. A sync that renames a collection of ours in place
    (`PlexSync.prepare`) first lets every write in flight land (`land_writes`): an edit on
    its way with the old name would make a second collection under it. An item one of those
    writes changed after a batch read it is read again by its own sync. A skipped write's
    job is read again with a later batch: its scene as read may be older than a rename a
    later batch already made.
    """

    svc: Services
    clock: Callable[[], float]
    result: DrainResult
    pool: ThreadPoolExecutor
    fetcher: ThreadPoolExecutor
    progress: Callable[[float], None] | None
    should_yield: Callable[[], bool]
    max_jobs: int | None
    listing: Listing | None = None  # a listing still queueing jobs, until it is done
    waiting: deque[tuple[Job, Batch]] = field(default_factory=deque)  # taken, not started
    writing: deque[Started] = field(default_factory=deque)
    trouble: threading.Event = field(default_factory=threading.Event)
    single: bool = False
    batch: Batch | None = None  # the batch read last
    stopped: bool = False
    total: int = 0
    taken: int = 0
    last_ingest: float = 0.0
    reported: float = -1.0

    def run(self) -> None:
        svc = self.svc
        self.last_ingest = self.clock()
        self.total = svc.queue.report.counts(self.clock()).due
        try:
            while not self.stopped:
                if self.trouble.is_set():
                    self._settle()
                    continue
                if not self.waiting and not self._take():
                    if not self.writing:
                        break
                    self._settle()  # what it decides may make more jobs due (a rerun)
                    continue
                if len(self.writing) >= (1 if self.single else WRITERS + AHEAD):
                    self._finish(self.writing.popleft())  # the next job waits for a place
                    continue
                if not self._may_start():
                    break
                self._start(*self.waiting.popleft())
        finally:
            self._settle()  # a write already sent is always judged and acknowledged
            if self.waiting:
                svc.queue.release([job for job, _batch in self.waiting], self.clock())
                self.waiting.clear()

    def _start(self, job: Job, batch: Batch) -> None:
        now = self.clock()
        self.svc.queue.start(job, now)  # from here a crash charges the job an attempt
        begun = begin(job, batch, self.svc, now)
        if isinstance(begun, (Complete, RetryAt, GiveUp, StopDrain)):
            self._decided(job, begun, now)
            return
        note_in_flight(self.svc.queue, job.scene_id, begun, now)  # committed before Plex can take the edit
        images = self.fetcher.submit(self.svc.plex.fetch, begun)
        write = self.pool.submit(self._write, begun, images)
        self.writing.append(Started(job, batch.scene(job.scene_id), write, batch, begun.state.rating_key))

    def _write(self, prepared: PreparedSync, images: Future[Sequence[ImageStep]]) -> SyncOutcome:
        """On a pool thread: the job's write, unless a write before it failed."""
        try:
            return self.unless_troubled(lambda: self.svc.plex.write(prepared, images.result()))
        except _Skipped:
            images.cancel()
            raise

    def unless_troubled(self, call: Callable[[], T]) -> T:
        """`call` (a write on the pool, or one request of a write on a lane), unless a write or
        request before it failed; a failure of its own stops the ones after it. A write whose
        request is skipped goes back untouched, as a write the pool skipped does, though Plex
        may have taken its edit: the sync that runs it again finds that done."""
        if self.trouble.is_set():
            raise _Skipped
        try:
            return call()
        except Exception:
            self.trouble.set()
            raise

    def _settle(self) -> None:
        """Judge every write in flight, in the order started; skipped ones go back untouched."""
        while self.writing:
            self._finish(self.writing.popleft())
        self.trouble.clear()

    def land_writes(self) -> None:
        """Wait until every write in flight has had its answer (judged later, in order): a
        rename of one of our collections must not overtake an edit planned before it."""
        wait([started.write for started in self.writing])

    def _take(self) -> bool:
        """The next batch, read; False when nothing is due (or `max_jobs` are taken). Read
        while the last batch's writes are in flight: reads only (see the class)."""
        if self.max_jobs is not None and self.taken >= self.max_jobs or not self._may_start():
            return False
        self._list()  # a page (about a batch) before each batch: the listing keeps up with the takes
        while True:
            now = self.clock()
            limit = BATCH_SIZE if self.max_jobs is None else min(BATCH_SIZE, self.max_jobs - self.taken)
            jobs = self.svc.queue.take_due_many(now, limit, started=False)
            if jobs or not self._list():
                break
        if not jobs:
            return False
        self.taken += len(jobs)
        self.batch = read_batch(jobs, self.svc, now)
        self.waiting.extend((job, self.batch) for job in jobs)
        return True

    def _list(self) -> bool:
        """The listing's next page queued; False once it is done (or there is none)."""
        if self.listing is None:
            return False
        queued = self.listing.step()
        if queued is None:
            self.listing = None
            return False
        self.total += queued
        return True

    def _may_start(self) -> bool:
        """Before each job: fold in new events now and then, and ask whether to go on."""
        if self.stopped:
            return False
        if self.should_yield():
            self.result.yielded = True
            self.stopped = True
            return False
        now = self.clock()
        if now - self.last_ingest >= INGEST_EVERY:
            self.total += ingest(self.svc, now).created
            self.last_ingest = now
        while True:
            gate = _gate(self.svc, self.clock(), self.result)
            if gate is _Gate.OPEN:
                return True
            if gate is _Gate.CLOSED:
                self.stopped = True
                return False

    def _finish(self, started: Started) -> None:
        if isinstance(started.write.exception(), _Skipped):
            self.svc.queue.release([started.job], self.clock())
            return
        now = self.clock()
        later = self.batch
        if later is not None and later is not started.batch and later.plex is not None:
            later.plex.items.pop(started.key, None)  # read before this write landed
        decision = finish(started, self.svc, now)
        self.single = not isinstance(decision, Complete)
        self._decided(started.job, decision, now)

    def _decided(self, job: Job, decision: Decision, now: float) -> None:
        svc, result = self.svc, self.result
        acknowledge(job, decision, svc.queue, now)
        _record(svc, result, job, decision)
        expected = self.total + (self.listing.pending() if self.listing is not None else 0)
        fraction = result.processed / max(expected, result.processed, 1)
        if self.progress is not None and (fraction - self.reported >= PROGRESS_STEP or fraction >= 1.0):
            self.reported = fraction  # smooth, without a line to Stash for every one of 20,000 jobs
            self.progress(fraction)
        if isinstance(decision, StopDrain):
            _stop(svc, decision, now)
            self.stopped = True
        elif isinstance(decision, RetryAt) and decision.error_class is ErrorClass.TRANSIENT:
            svc.plex.hold(max(0.0, decision.when - now))  # every later request waits, at most pacing.MAX_HOLD


def flush_collections(svc: Services, result: DrainResult, now: float) -> None:
    """The collections' own writes, once per drain (`plex.collections`), while Plex answers.
    What is not written stays due in the collections table for the next drain."""
    batch = getattr(svc.plex, "batch", None)
    if batch is None or svc.breaker().state is not BreakerState.CLOSED:
        return
    try:
        flushed = batch.flush(now)
    except Exception as exc:  # a bug here must not undo the jobs the drain acknowledged
        svc.log.error(f"Stash2Plex: writing collections failed: {type(exc).__name__}: {exc}")
        return
    result.collections = flushed
    if flushed.written or flushed.deleted:
        svc.log.info(f"Stash2Plex: collections: {flushed.written} updated, {flushed.deleted} deleted "
                     f"({flushed.requests} Plex request(s)).")
    for change in flushed.changes:
        svc.log.debug(f"collection {change}")
    if flushed.failed:
        svc.log.warning(f"Stash2Plex: {flushed.failed} collection(s) could not be written; see Queue Status.")
    if flushed.stopped:
        svc.log.info(f"Stash2Plex: collections wait for Plex: {flushed.stopped}")


class _Gate(Enum):
    OPEN = "open"  # take a job
    PROBED = "probed"  # the breaker's probe went out and Plex answered: look again
    CLOSED = "closed"  # stop: the breaker refuses, or its probe found no Plex


def _waits_for_plex(svc: Services, now: float) -> bool:
    return (svc.breaker().state is not BreakerState.CLOSED
            or svc.queue.report.held(ErrorClass.OUTAGE.value, now) > 0)


def _probe(svc: Services, result: DrainResult, now: float) -> bool:
    """Send the one cheap request in place of a job; False (and the result says why) when
    Plex did not answer."""
    result.probed = True
    failure = probe_plex(svc, now)
    if answered(failure):
        return True
    stop_for(result, failure, svc, now)  # type: ignore[arg-type]
    return False


def _gate(svc: Services, now: float, result: DrainResult) -> _Gate:
    """The breaker's word before each job. While it refuses, no job is taken at all; when it
    allows its probe, the probe is one cheap request, not a job."""
    breaker = svc.breaker()
    if not allows_request(breaker, now, svc.breaker_config):
        result.breaker_until = next_probe_at(breaker)
        result.summary.stopped = result.summary.stopped or (
            f"{LABELS[ErrorClass.OUTAGE]}; next probe {_when(result.breaker_until)}")
        return _Gate.CLOSED
    if breaker.state is not BreakerState.CLOSED and svc.admit(now)[1]:
        return _Gate.PROBED if _probe(svc, result, now) else _Gate.CLOSED
    return _Gate.OPEN


def _record(svc: Services, result: DrainResult, job: Job, decision: Decision) -> None:
    result.summary.record(job.scene_id, decision)
    result.processed += 1
    if isinstance(decision, RetryAt) and decision.error_class is ErrorClass.OUTAGE and decision.message != BREAKER_OPEN:
        result.outage = decision.message
    _log_decision(svc.log, job, decision)


def _stop(svc: Services, decision: StopDrain, now: float) -> None:
    if decision.error_class is ErrorClass.AUTH:
        # Every later job would get the same 401: remember it, so no worker started by the
        # next hook asks Plex again with this token (the error is said once).
        svc.state.put(HALT, halt_record(decision.reason, svc.token, now))


def _log_decision(log: StashLog, job: Job, decision: Decision) -> None:
    if isinstance(decision, Complete):
        log.debug(f"scene {job.scene_id}: {decision.reason.value}")
    elif isinstance(decision, RetryAt):
        log.debug(f"scene {job.scene_id}: {decision.message}; next try {_when(decision.when)}")
    elif isinstance(decision, GiveUp):
        log.warning(f"Stash2Plex: scene {job.scene_id} moved to the dead-letter list: {decision.message}")
    else:  # said once, by the caller: a task fails with it, the background worker logs it
        log.debug(f"scene {job.scene_id}: stops the drain: {decision.reason}")


def _when(when: float | None) -> str:
    return absolute_utc(when) if when is not None else "soon"
