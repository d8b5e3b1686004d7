"""Queue tasks Stash shows as buttons: Process Queue, Queue Status and the dead-letter tools.

Each mutating task holds the processor lock (taking it over from the background worker),
so nothing changes the queue beside the one processor. Process Queue drains through
`worker.core.drain`, the same code the background worker runs, then leaves what is
deferred to a background worker started for it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from plugin.errors import Stash2PlexError
from plugin.runtime import RunContext
from sync_queue.dlq import DeadLetter
from sync_queue.inbox import has_events
from sync_queue.jobs import Job, JobQueue, QueueCounts
from sync_queue.state import BREAKER, HALT, StateStore
from worker.breaker import Breaker, next_probe_at
from worker.handover import processor
from worker.policy import ErrorClass
from worker.summary import Deferred, DrainSummary, absolute_utc, format_summary, held_for_probe, relative

if TYPE_CHECKING:
    from worker.core import Services

WORKER_MODE = "_worker"

#: Dead letters listed per reason in Queue Status (the JSON output adds each one's detail:
#: candidates, paths tried, traceback).
LETTERS_SHOWN = 20
#: Scenes listed whose fields were left alone under someone else's Plex lock.
LOCKED_SHOWN = 20


class BadTaskArgument(Stash2PlexError):
    """A task argument (days, error class) that cannot be used."""


class DrainStopped(Stash2PlexError):
    """The drain stopped for a cause outside any one job (bad token, missing setting, Stash
    down): the task fails with that cause, so Stash shows it failed and why, and every job
    stays queued."""


def start_worker_if_needed(ctx: RunContext, queue_has_work: bool) -> bool:
    """Leave a background worker for what the task did not finish.

    Counts the inbox too: a hook that ran while the task held the lock started nobody (it
    only touched the wake file), and an event it recorded after the drain's last inbox read
    has no job yet, so `queue_has_work` cannot know about it.
    """
    if not queue_has_work and not has_events(ctx.data_dir):
        return False
    from worker.launch import ensure_worker

    payload = {"server_connection": ctx.input.server_connection, "args": {"mode": WORKER_MODE}}
    return ensure_worker(ctx.data_dir, ctx.entrypoint, payload, time.time())


def process_queue(ctx: RunContext) -> dict[str, Any]:
    """Sync every due job now, then report what is deferred and until when."""
    def prepare(svc: Services, _progress: Callable[[float], None]) -> dict[str, Any]:
        svc.state.put(HALT, None)  # the user asked for a run: a remembered 401 is tried again
        svc.queue.recover_abandoned(time.time(), max_attempts=svc.policy.max_retries)
        return {}

    return foreground_drain(ctx, prepare, prepare_share=0.0)


def foreground_drain(ctx: RunContext, prepare: Callable[[Services, Callable[[float], None]], dict[str, Any]],
                     prepare_share: float) -> dict[str, Any]:
    """What every foreground task that syncs shares (Process Queue, Sync All/Recent,
    Reconcile): the processor lock, `prepare` (listing, queueing) on the first
    `prepare_share` of one progress bar, the shared drain on the rest, and a background
    worker left for what is still to do. Returns prepare's output with the summary."""
    from worker.services import services

    require_enabled(ctx)
    with processor(ctx.data_dir), services(ctx) as svc:
        ctx.log.progress(0.0)
        output = prepare(svc, lambda f: ctx.log.progress(prepare_share * f))
        summary, counts = drain_and_report(
            ctx, svc, lambda f: ctx.log.progress(prepare_share + (1 - prepare_share) * f))
    start_worker_if_needed(ctx, counts.due + counts.deferred > 0)
    return {**output, "summary": summary.to_dict(), "queue": queue_counts(counts)}


def require_enabled(ctx: RunContext) -> None:
    if not ctx.settings.enabled:
        raise Stash2PlexError("Stash2Plex is disabled (setting 'enabled'): nothing was sent to Plex.")


def drain_and_report(ctx: RunContext, svc: Services,
                     progress: Callable[[float], None]) -> tuple[DrainSummary, QueueCounts]:
    """The foreground tasks' drain: the shared core, then one summary in Stash's log."""
    from worker.core import drain

    result = drain(svc, time.time, time.sleep, progress=progress)
    ctx.log.progress(1.0)
    now = time.time()
    include_waiting(result.summary, svc.queue.deferred(now))
    held_for_probe(result.summary, result.breaker_until)
    ctx.log.info(format_summary(result.summary, now))
    if result.summary.stopped and result.breaker_until is None:
        # An open breaker is not a failure of the task: the jobs wait for its probe, which the
        # background worker the caller starts will send. Anything else needs the user.
        raise DrainStopped(f"{result.summary.stopped.rstrip('.')}. Every job is kept; run Process Queue once it is fixed.")
    return result.summary, svc.queue.counts(now)


def include_waiting(summary: DrainSummary, waiting: Iterable[Job]) -> None:
    """Add jobs deferred before this drain: the user asked what is left and when it runs,
    and a job an earlier worker deferred is as much left as one this drain deferred."""
    for job in waiting:
        try:
            kind = ErrorClass(job.last_error_class)
        except ValueError:  # None, or a queue-side mark such as an abandoned flight
            kind = ErrorClass.TRANSIENT
        summary.deferred.setdefault(job.scene_id, Deferred(job.next_retry_at, kind, job.last_error or ""))


def queue_counts(counts: QueueCounts) -> dict[str, int]:
    return {"due": counts.due, "deferred": counts.deferred, "in_flight": counts.in_flight,
            "dead_letters": counts.dlq, "synced_scenes": counts.ledger, "inbox": counts.inbox}


def queue_status(ctx: RunContext) -> dict[str, Any]:
    """Read-only: counts, the soonest deferred jobs, dead letters by reason, breaker, halt."""
    now = time.time()
    queue = JobQueue(ctx.data_dir)
    state = StateStore(ctx.data_dir)
    try:
        counts = queue.counts(now)
        deferred = queue.deferred(now, limit=10)
        groups = queue.dlq_summary()
        shown = {g.error_class: queue.dlq_list(g.error_class, limit=LETTERS_SHOWN) for g in groups}
        locked_count, locked = queue.ledger_user_locked(LOCKED_SHOWN)
        breaker = Breaker.load(state.get(BREAKER))
        halt = state.get(HALT)
    finally:
        state.close()
        queue.close(compact=False)
    lines = [
        f"Stash2Plex queue: {counts.due} due, {counts.deferred} deferred, {counts.in_flight} in flight, "
        f"{counts.inbox} new events, {counts.dlq} dead letters, {counts.ledger} scenes synced.",
        f"Plex circuit: {breaker.state.value}"
        + (f" until {absolute_utc(breaker.open_until)}" if breaker.open_until else "") + ".",
    ]
    if halt:
        lines.append("Processing is halted: Plex rejected the token. Fix it, then run Process Queue.")
    probe_at = next_probe_at(breaker)  # nothing runs before the breaker's probe
    for job in deferred:
        when = max(job.next_retry_at, probe_at or 0.0)
        lines.append(f"  scene {job.scene_id}: {job.last_error_class or 'waiting'}, attempt {job.attempts}, "
                     f"next try {relative(when - now)} ({absolute_utc(when)})")
    for group in groups:
        lines.append(f"  dead letters, {group.error_class}: {group.count}")
        for letter in shown.get(group.error_class, []):
            lines.append(f"    scene {letter.scene_id}: {letter.message} (attempts {letter.attempts}, "
                         f"last {absolute_utc(letter.last_failed_at)})")
    if locked_count:
        lines.append(f"  fields kept because someone locked them in Plex (overwrite_user_locks is "
                     f"{'on' if ctx.settings.overwrite_user_locks else 'off'}): {locked_count} scenes")
        lines += [f"    scene {sid}: {', '.join(fields)}" for sid, fields in locked]
    ctx.log.info("\n".join(lines))
    return {
        "queue": queue_counts(counts),
        "kept_locked": {"scenes": locked_count,
                        "entries": [{"scene_id": sid, "fields": fields} for sid, fields in locked]},
        "breaker": breaker.state.value,
        "halted": bool(halt),
        "deferred": [{"scene_id": j.scene_id, "next_retry_at": j.next_retry_at,
                      "error_class": j.last_error_class, "attempts": j.attempts} for j in deferred],
        "dead_letters": [{"error_class": g.error_class, "count": g.count,
                          "entries": [_letter_dict(d) for d in shown.get(g.error_class, [])]} for g in groups],
    }


def _letter_dict(letter: DeadLetter) -> dict[str, Any]:
    return {"scene_id": letter.scene_id, "message": letter.message, "detail": letter.detail,
            "attempts": letter.attempts, "first_failed_at": letter.first_failed_at,
            "last_failed_at": letter.last_failed_at, "reasons": list(letter.reasons)}


def _mutate(ctx: RunContext, action: Callable[[JobQueue, float], int], verb: str) -> dict[str, Any]:
    with processor(ctx.data_dir):
        queue = JobQueue(ctx.data_dir)
        try:
            done = action(queue, time.time())
            counts = queue.counts(time.time())
        finally:
            queue.close()
    ctx.log.info(f"Stash2Plex: {verb} {done}.")
    start_worker_if_needed(ctx, counts.due > 0)
    return {"count": done, "queue": queue_counts(counts)}


def clear_queue(ctx: RunContext) -> dict[str, Any]:
    # We hold the processor lock, so a job still in flight was left by a processor that died:
    # recovered first, it is cleared with the rest instead of coming back with the next worker.
    def clear(q: JobQueue, now: float) -> int:
        q.recover_abandoned(now)
        return q.clear_queue()

    return _mutate(ctx, clear, "dropped queued jobs:")


def clear_dlq(ctx: RunContext) -> dict[str, Any]:
    return _mutate(ctx, lambda q, now: q.clear_dlq(), "dropped dead letters:")


def purge_dlq(ctx: RunContext) -> dict[str, Any]:
    days = _number(ctx.args.get("days", "30"), "days")
    return _mutate(ctx, lambda q, now: q.purge_dlq(days, now), f"dropped dead letters older than {days:g} days:")


def retry_dlq(ctx: RunContext) -> dict[str, Any]:
    error_class = str(ctx.args.get("error_class") or "").strip() or None
    label = f" ({error_class})" if error_class else ""
    return _mutate(ctx, lambda q, now: q.retry_dlq(error_class, now), f"queued dead letters again{label}:")


def _number(raw: Any, name: str) -> float:
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise BadTaskArgument(f"Task argument '{name}' must be a number, got {raw!r}.") from None
    if not math.isfinite(value) or value < 0:
        raise BadTaskArgument(f"Task argument '{name}' must be a number of at least 0, got {raw!r}.")
    return value
