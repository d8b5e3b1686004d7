"""The one processing core: take a due job, sync its scene, decide, acknowledge.

Every caller goes through `drain` (and so through `process_job`): the background worker,
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
* a server's Retry-After: every request pauses for it, bounded by `pacing.MAX_HOLD`;
* `max_request_rate`, which the Plex connection applies per request.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol

from base.backoff import FANOUT_BACKOFF, RandomSource, ceiling
from base.clock import absolute_utc
from base.errors import Stash2PlexError
from base.protocol import StashLog
from base.settings import Settings
from plex.pacing import Pacer, RateLimit, hold, wait_turn
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
from worker.sync_ledger import ITEM_CLAIMED, previous_sync, record_sync

#: Inbox events (hooks that arrived during the drain) are folded in this often, in seconds.
INGEST_EVERY = 2.0


class SceneSource(Protocol):
    def find_scene(self, scene_id: int) -> Scene: ...


class PlexTarget(Protocol):
    def sync(self, scene: Scene, ledger: LedgerEntry | None, now: float) -> SyncOutcome: ...
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


# --- one job -------------------------------------------------------------------------------


def attempt(job: Job, svc: Services, now: float) -> SyncOutcome:
    """Read the scene as Stash has it now (the newest state wins) and bring Plex to it."""
    scene = svc.stash.find_scene(job.scene_id)
    outcome = svc.plex.sync(scene, previous_sync(svc.queue, job.scene_id), now)
    record_sync(svc.queue, job.scene_id, outcome, now, scene)
    if outcome.kept_locked:
        svc.log.info(f"Stash2Plex: scene {job.scene_id}: left {', '.join(outcome.kept_locked)} alone in Plex: "
                     f"someone else locked them there (setting overwrite_user_locks).")
    if outcome.displaced is not None and svc.queue.release_claim(outcome.displaced, ITEM_CLAIMED, now):
        svc.log.warning(f"Stash2Plex: scene {job.scene_id} now owns Plex item {outcome.plex_key}; scene "
                        f"{outcome.displaced}, synced to it before, is queued again and is dead-lettered if it "
                        f"still resolves to this item.")
    return outcome


def process_job(job: Job, svc: Services, now: float) -> Decision:
    """Run one attempt of a job that `take_due` handed out, and acknowledge it. Never raises
    for a failed attempt: every exception becomes a decision (a bug included)."""
    breaker, allowed = svc.admit(now)
    if not allowed:
        until = next_probe_at(breaker) or now + svc.policy.min_delay
        decision: Decision = RetryAt(max(until, now + svc.policy.min_delay), False, ErrorClass.OUTAGE,
                                     BREAKER_OPEN)
    else:
        try:
            outcome = attempt(job, svc, now)
        except Exception as exc:  # classified here, the one place outcomes are judged
            failure = Failure.from_exception(exc)
            after = svc.feed(breaker_event(failure.error_class), now)
            decision = decide(failure, job.attempts, svc.policy, now, svc.rng, next_probe_at(after))
        else:
            svc.feed(BreakerEvent.SUCCESS if outcome.requests else BreakerEvent.NO_CONTACT, now)
            written = outcome.status is SyncStatus.WRITTEN
            decision = Complete(CompleteReason.SYNCED if written else CompleteReason.UNCHANGED)
    acknowledge(job, decision, svc.queue, now)
    return decision


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
) -> DrainResult:
    """Process due jobs until none is due, the breaker refuses, or a decision stops it.

    Never waits for a deferred job: what is not due is reported, and the background worker
    (not this loop) decides whether to sleep until it is. `probe_first`: a task the user
    started asks Plex at once, whatever the breaker's schedule, when jobs wait for an outage
    (one cheap request; see `probe_plex`), instead of saying "next probe in 24s".
    """
    result = DrainResult(DrainSummary())
    open_batch = getattr(svc.plex, "open_batch", None)
    if open_batch is not None:
        open_batch()
    # Events become jobs before Plex is asked anything: whether Plex answers or not, every
    # save recorded before the drain is a job when it returns, not only the ones a worker
    # happened to take in first.
    ingest(svc, clock())
    last_ingest = clock()
    if probe_first and _waits_for_plex(svc, clock()):
        svc.admit(clock())  # when the breaker's own probe is due, this is it (a failure reopens it for longer)
        if not _probe(svc, result, clock()):
            return result
    total = svc.queue.report.counts(clock()).due
    pacer = Pacer()
    while max_jobs is None or result.processed < max_jobs:
        if should_yield():
            result.yielded = True
            break
        now = clock()
        if now - last_ingest >= INGEST_EVERY:
            total += ingest(svc, now).created
            last_ingest = now
        gate = _gate(svc, now, result)
        if gate is not _Gate.OPEN:
            if gate is _Gate.PROBED:
                continue
            break
        pacer = wait_turn(pacer, RateLimit(), now, sleep)  # a Retry-After hold, if any
        now = clock()
        job = svc.queue.take_due(now)
        if job is None:
            break
        decision = process_job(job, svc, now)
        _record(svc, result, job, decision)
        if progress is not None:
            progress(result.processed / max(total, result.processed, 1))
        if isinstance(decision, StopDrain):
            _stop(svc, decision, now)
            break
        if isinstance(decision, RetryAt) and decision.error_class is ErrorClass.TRANSIENT:
            pacer = hold(pacer, decision.when, now)
    if not result.summary.stopped and not result.yielded:
        flush_collections(svc, result, clock())
    return result


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
