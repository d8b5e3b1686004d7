"""Queue tasks Stash shows as buttons: Process Queue, Queue Status and the dead-letter tools.

Each mutating task holds the processor lock (taking it over from the background worker),
so nothing changes the queue beside the one processor. Process Queue is the shared
foreground drain (`tasks.drain`) with nothing to list first.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from base.clock import absolute_utc, relative
from sync_queue.dlq import DeadLetter, DlqGroup
from sync_queue.jobs import JobQueue
from sync_queue.report import QueueCounts
from sync_queue.schedule import Job
from sync_queue.state import BREAKER, HALT, StateStore
from tasks.args import number
from tasks.drain import foreground_drain, queue_counts, start_worker_if_needed
from tasks.health_checks import collection_words
from watch.status import facts_for
from watch.status import status_lines as watch_lines
from worker.breaker import Breaker, next_probe_at
from worker.core import Services
from worker.handover import processor
from worker.runtime import RunContext

#: Dead letters listed per reason in Queue Status (the JSON output adds each one's detail:
#: candidates, paths tried, traceback).
LETTERS_SHOWN = 20
#: Scenes listed whose fields were left alone under someone else's Plex lock.
LOCKED_SHOWN = 20


def process_queue(ctx: RunContext) -> dict[str, Any]:
    """Sync every due job now, then report what is deferred and until when."""
    def prepare(svc: Services, _progress: Callable[[float], None]) -> dict[str, Any]:
        svc.queue.recover_abandoned(time.time(), max_attempts=svc.policy.max_retries)
        return {}

    return foreground_drain(ctx, prepare, prepare_share=0.0)


@dataclass(frozen=True)
class StatusFacts:
    """What Queue Status reads, all at one moment."""

    now: float
    counts: QueueCounts
    deferred: list[Job]
    groups: list[DlqGroup]
    letters: dict[str, list[DeadLetter]]
    locked_count: int
    locked: list[tuple[int, list[str]]]
    breaker: Breaker
    halt: str | None
    collections: dict[str, int] = field(default_factory=dict)
    failed_collections: list[tuple[str, str]] = field(default_factory=list)  # (title, last error)


def read_status(data_dir: Path, now: float) -> StatusFacts:
    queue = JobQueue(data_dir)
    state = StateStore(data_dir)
    try:
        groups = queue.dlq.summary()
        locked_count, locked = queue.ledger.user_locked(LOCKED_SHOWN)
        return StatusFacts(
            now, queue.report.counts(now), queue.report.deferred(now, limit=10), groups,
            {g.error_class: queue.dlq.list_all(g.error_class, limit=LETTERS_SHOWN) for g in groups},
            locked_count, locked, Breaker.load(state.get(BREAKER)), state.get(HALT), queue.collections.counts(),
            [(r.title, r.last_error or "") for r in queue.collections.all() if r.dirty and r.last_error])
    finally:
        state.close()
        queue.close(compact=False)


def status_lines(facts: StatusFacts, overwrite_user_locks: bool) -> list[str]:
    """Queue Status as Stash's log shows it. Pure."""
    counts, breaker, now = facts.counts, facts.breaker, facts.now
    lines = [
        f"Stash2Plex queue: {counts.due} due, {counts.deferred} deferred, {counts.in_flight} in flight, "
        f"{counts.inbox} new events, {counts.dlq} dead letters, {counts.ledger} scenes synced.",
        f"Plex circuit: {breaker.state.value}"
        + (f" until {absolute_utc(breaker.open_until)}" if breaker.open_until else "") + ".",
    ]
    if facts.halt:
        lines.append("Processing is halted: Plex rejected the token. Fix it, then run Process Queue.")
    probe_at = next_probe_at(breaker)  # nothing runs before the breaker's probe
    for job in facts.deferred:
        when = max(job.next_retry_at, probe_at or 0.0)
        lines.append(f"  scene {job.scene_id}: {job.last_error_class or 'waiting'}, attempt {job.attempts}, "
                     f"next try {relative(when - now)} ({absolute_utc(when)})")
    for group in facts.groups:
        lines.append(f"  dead letters, {group.error_class}: {group.count}")
        for letter in facts.letters.get(group.error_class, []):
            lines.append(f"    scene {letter.scene_id}: {letter.message} (attempts {letter.attempts}, "
                         f"last {absolute_utc(letter.last_failed_at)})")
    if any(n for k, n in facts.collections.items() if k not in ("due", "failed")):
        lines.append(f"Collections: {collection_words(facts.collections)}.")
        lines += [f"  collection {title!r}: {error}" for title, error in facts.failed_collections[:LOCKED_SHOWN]]
    if facts.locked_count:
        lines.append(f"  fields kept because someone locked them in Plex (overwrite_user_locks is "
                     f"{'on' if overwrite_user_locks else 'off'}): {facts.locked_count} scenes")
        lines += [f"    scene {sid}: {', '.join(fields)}" for sid, fields in facts.locked]
    return lines


def queue_status(ctx: RunContext) -> dict[str, Any]:
    """Read-only: counts, the soonest deferred jobs, dead letters by reason, breaker, halt."""
    facts = read_status(ctx.data_dir, time.time())
    # Settings are a Stash round trip: read only when there is something they explain.
    overwrite = ctx.settings.overwrite_user_locks if facts.locked_count else False
    watch = facts_for(ctx)
    ctx.log.info("\n".join(status_lines(facts, overwrite) + watch_lines(watch, absolute_utc)))
    return {
        "queue": queue_counts(facts.counts),
        "watch_history": {"enabled": watch.enabled, "last_import": watch.last_at, "scope": watch.scope,
                          "cursor": watch.cursor, "resume_cursor": watch.resume_cursor, "last_run": watch.last_run},
        "kept_locked": {"scenes": facts.locked_count,
                        "entries": [{"scene_id": sid, "fields": fields} for sid, fields in facts.locked]},
        "breaker": facts.breaker.state.value,
        "halted": bool(facts.halt),
        "collections": {**facts.collections,
                        "failing": [{"title": t, "error": e} for t, e in facts.failed_collections]},
        "deferred": [{"scene_id": j.scene_id, "next_retry_at": j.next_retry_at,
                      "error_class": j.last_error_class, "attempts": j.attempts} for j in facts.deferred],
        "dead_letters": [{"error_class": g.error_class, "count": g.count,
                          "entries": [_letter_dict(d) for d in facts.letters.get(g.error_class, [])]}
                         for g in facts.groups],
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
            counts = queue.report.counts(time.time())
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
    return _mutate(ctx, lambda q, now: q.dlq.clear(), "dropped dead letters:")


def purge_dlq(ctx: RunContext) -> dict[str, Any]:
    days = number(ctx.args.get("days", "30"), "days")
    return _mutate(ctx, lambda q, now: q.dlq.purge(days, now), f"dropped dead letters older than {days:g} days:")


def retry_dlq(ctx: RunContext) -> dict[str, Any]:
    error_class = str(ctx.args.get("error_class") or "").strip() or None
    label = f" ({error_class})" if error_class else ""
    return _mutate(ctx, lambda q, now: q.retry_dlq(error_class, now), f"queued dead letters again{label}:")
