"""The one processing core: take a due job, sync its scene, decide, acknowledge.

Every caller goes through `drain` (and so through `process_job`): the background worker,
Process Queue, and the drains after Sync All and Reconcile. There is no second loop that
could forget a due-time check (field report 000) or keep its own idea of what is done
(field report 001): due-ness is the queue's `take_due`, the outcome is `policy.decide`,
and the acknowledgement is one queue transition.

What the drain waits on, and nothing else (no fixed sleep between jobs):
* the circuit breaker: while it refuses, no job is taken at all, so a Plex outage costs
  no request and no database churn; the drain stops and says when the next probe is due;
* a server's Retry-After: every request pauses for it, bounded by `pacing.MAX_HOLD`;
* `max_request_rate`, which the Plex connection applies per request.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from plex.claims import Claim
from plex.diff import locks_we_set
from plex.pacing import Pacer, RateLimit, hold, wait_turn
from plex.records import LedgerEntry as PlexLedger
from plex.records import SyncOutcome, SyncStatus
from plugin.errors import Stash2PlexError
from plugin.protocol import StashLog
from plugin.settings import Settings
from reconciliation.fanout import expand_pending, scene_refs, state_function
from stash.records import Scene
from sync_queue.jobs import LEDGER_REFS, IngestResult, Job, JobQueue
from sync_queue.state import BREAKER, HALT, StateStore
from worker.backoff import RandomSource
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
from worker.policy import (
    LABELS,
    Complete,
    CompleteReason,
    DeadLetter,
    Decision,
    ErrorClass,
    Failure,
    RetryAt,
    RetryPolicy,
    StopDrain,
    breaker_event,
    decide,
)
from worker.summary import DrainSummary, absolute_utc

#: Inbox events (hooks that arrived during the drain) are folded in this often, in seconds.
INGEST_EVERY = 2.0
#: After a fan-out could not be expanded (Stash down), wait this long before trying again.
FANOUT_RETRY = 60.0


class SceneSource(Protocol):
    def find_scene(self, scene_id: int) -> Scene: ...


class FileOwners(Protocol):
    def scene_with_file(self, path: str) -> int | None: ...


class PlexTarget(Protocol):
    def sync(self, scene: Scene, ledger: PlexLedger | None, now: float) -> SyncOutcome: ...


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

    # -- the persisted breaker --

    def breaker(self) -> Breaker:
        return Breaker.load(self.state.get(BREAKER))

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
            breaker, allowed = admit(Breaker.load(text), now, self.breaker_config)
            verdict.update(breaker=breaker, allowed=allowed)
            return breaker.to_json()

        self.state.update(BREAKER, change)
        return verdict["breaker"], verdict["allowed"]

    def feed(self, event: BreakerEvent, now: float) -> Breaker:
        before = self.breaker()
        after = transition(before, event, now, self.breaker_config)
        if after != before:
            self.state.put(BREAKER, after.to_json())
            if after.state is BreakerState.OPEN and before.state is not BreakerState.OPEN:
                self.log.warning(
                    f"Stash2Plex: Plex is unreachable; pausing every request until "
                    f"{_when(after.open_until)} (circuit breaker open)."
                )
            elif after.state is BreakerState.CLOSED and before.state is not BreakerState.CLOSED:
                self.log.info("Stash2Plex: Plex answers again; resuming.")
        return after


# --- ledger: sync_queue stores it, plex/ reads and writes it --------------------------------


def previous_sync(queue: JobQueue, scene_id: int) -> PlexLedger | None:
    """What the last sync wrote, as plex/ expects it; a lost item keeps `written`, not its key."""
    entry = queue.ledger_get(scene_id)
    if entry is None:
        return None
    record = PlexLedger.from_any(entry.written)
    if record is not None and entry.lost:
        record = replace(record, plex_key=None)
    return record


def record_sync(queue: JobQueue, scene_id: int, outcome: SyncOutcome, now: float,
                scene: Scene | None = None) -> None:
    """Store what the sync wrote, plus the Stash ids it showed (`LEDGER_REFS`): once a
    performer, studio or tag is deleted, only these tell which scenes showed it."""
    ledger = outcome.ledger
    written = ledger.to_dict()
    if scene is not None:
        written[LEDGER_REFS] = scene_refs(scene)
    queue.ledger_put(scene_id, ledger.state_hash or "", outcome.plex_key, ledger.poster_hash,
                     ledger.art_hash, written, now)


#: Reason on the job of a scene whose Plex item another scene took over.
ITEM_CLAIMED = "item_claimed"


@dataclass
class LedgerClaims:
    """`plex.sync.ClaimSource` over our ledger and Stash: who else holds an item."""

    queue: JobQueue | None  # None: no ledger yet (a dry run before the first sync)
    stash: FileOwners

    def rival(self, plex_key: str, scene_id: int) -> Claim | None:
        entry = self.queue.ledger_holder(plex_key, scene_id) if self.queue is not None else None
        if entry is None:
            return None
        record = PlexLedger.from_any(entry.written)
        return Claim(entry.scene_id, record.plex_file if record else None, locks_we_set(record))

    def scene_with_file(self, stash_path: str) -> int | None:
        return self.stash.scene_with_file(stash_path)


# --- a processing halt (bad Plex token): said once, kept until the token changes ------------


def token_fingerprint(token: str) -> str:
    """Enough to tell a changed token from the same one, without storing the token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()[:16]


def halt_record(reason: str, token: str, now: float) -> str:
    return json.dumps({"reason": reason, "token": token_fingerprint(token), "since": now})


def halt_applies(record: str | None, token: str) -> dict[str, Any] | None:
    """The stored halt if it still applies to this token; a new token lifts it."""
    if not record:
        return None
    try:
        data = json.loads(record)
    except json.JSONDecodeError:
        return None
    if not isinstance(data, dict) or data.get("token") != token_fingerprint(token):
        return None
    return data


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
                                     "Plex circuit breaker is open")
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
    elif isinstance(decision, DeadLetter):
        queue.dead_letter(job, decision.error_class.value, decision.message, now, decision.detail or None)
    else:  # StopDrain: the job goes back as it was taken; only the reason is noted on it
        queue.retry_later(job, job.next_retry_at, decision.error_class.value, decision.reason, now,
                          consume_attempt=False)


# --- folding events in ----------------------------------------------------------------------


def ingest(svc: Services, now: float) -> IngestResult:
    """Turn hook events into jobs, then expand performer/studio/tag events into their scenes.

    A fan-out that cannot finish (Stash unreachable) stays stored with its cursor and is tried
    again after `FANOUT_RETRY`; the drain goes on with the jobs it has.
    """
    result = svc.queue.ingest(now)
    if not result.fanout or now < svc.fanout_retry_at:
        return result
    try:
        expanded = expand_pending(result.fanout, svc.queue, svc.stash, state_function(svc.settings), now)  # type: ignore[arg-type]
    except Exception as exc:  # the events stay stored; a bug must not stop the jobs either
        svc.fanout_retry_at = now + FANOUT_RETRY
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


def drain(
    svc: Services,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
    *,
    progress: Callable[[float], None] | None = None,
    should_yield: Callable[[], bool] = lambda: False,
    max_jobs: int | None = None,
) -> DrainResult:
    """Process due jobs until none is due, the breaker refuses, or a decision stops it.

    Never waits for a deferred job: what is not due is reported, and the background worker
    (not this loop) decides whether to sleep until it is.
    """
    result = DrainResult(DrainSummary())
    queue = svc.queue
    ingest(svc, clock())
    last_ingest = clock()
    total = queue.counts(clock()).due
    pacer = Pacer()
    while max_jobs is None or result.processed < max_jobs:
        if should_yield():
            result.yielded = True
            break
        now = clock()
        if now - last_ingest >= INGEST_EVERY:
            folded = ingest(svc, now)
            total += folded.created
            last_ingest = now
        breaker = svc.breaker()
        if not allows_request(breaker, now, svc.breaker_config):
            result.breaker_until = next_probe_at(breaker)
            result.summary.stopped = result.summary.stopped or (
                f"{LABELS[ErrorClass.OUTAGE]}; next probe {_when(result.breaker_until)}")
            break
        pacer = wait_turn(pacer, RateLimit(), now, sleep)  # a Retry-After hold, if any
        now = clock()
        job = queue.take_due(now)
        if job is None:
            break
        decision = process_job(job, svc, now)
        result.summary.record(job.scene_id, decision)
        result.processed += 1
        _log_decision(svc.log, job, decision)
        if progress is not None:
            progress(result.processed / max(total, result.processed, 1))
        if isinstance(decision, StopDrain):
            if decision.error_class is ErrorClass.AUTH:
                # Every later job would get the same 401: remember it, so no worker started by
                # the next hook asks Plex again with this token (the error is said once).
                svc.state.put(HALT, halt_record(decision.reason, svc.token, now))
            break
        if isinstance(decision, RetryAt) and decision.error_class is ErrorClass.TRANSIENT:
            pacer = hold(pacer, decision.when, now)
    return result


def _log_decision(log: StashLog, job: Job, decision: Decision) -> None:
    if isinstance(decision, Complete):
        log.debug(f"scene {job.scene_id}: {decision.reason.value}")
    elif isinstance(decision, RetryAt):
        log.debug(f"scene {job.scene_id}: {decision.message}; next try {_when(decision.when)}")
    elif isinstance(decision, DeadLetter):
        log.warning(f"Stash2Plex: scene {job.scene_id} moved to the dead-letter list: {decision.message}")
    else:  # said once, by the caller: a task fails with it, the background worker logs it
        log.debug(f"scene {job.scene_id}: stops the drain: {decision.reason}")


def _when(when: float | None) -> str:
    return absolute_utc(when) if when is not None else "soon"
