"""The drain every syncing task ends with: Process Queue, Sync All/Recent, Reconcile.

A task holds the processor lock (taking it over from the background worker), runs its own
step (listing and queueing) on the first share of one progress bar, then the core's drain
(`worker.core.drain`, the code the background worker runs) on the rest, and leaves a
background worker for whatever is still deferred. A step that is a listing the drain can
take page by page (Sync All's) runs inside the drain instead, under the same bar. A cause
outside any one job (bad token, missing setting, Stash down) fails the task with that
cause, and every job stays queued.
Each such task tries a token Plex refused before again (the halt of `worker.halt`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from base.clock import absolute_utc, relative
from base.errors import PlexUnavailable, Stash2PlexError
from sync_queue.inbox import has_events
from sync_queue.report import QueueCounts
from sync_queue.schedule import Job
from sync_queue.state import HALT
from worker.breaker import BreakerEvent, next_probe_at
from worker.core import Listing, Services, drain
from worker.handover import processor
from worker.policy import ErrorClass
from worker.runtime import RunContext
from worker.summary import Deferred, DrainSummary, format_summary, held_for_probe

#: Share of the progress bar for a listing pass (Sync All, Reconcile); the drain gets the rest.
LISTING_SHARE = 0.3


class TaskListing(Listing, Protocol):
    """A listing the drain takes page by page (`worker.core.Listing`) that ends with the
    task's output (`reconciliation.bulk.SyncPass`)."""

    def finish(self) -> dict[str, Any]: ...  # lists what the drain left; the counts


#: A task's own step, given the services and its share of the progress bar: the task's output,
#: or a listing still to run, which the drain then takes page by page.
Prepare = Callable[[Services, Callable[[float], None]], "dict[str, Any] | TaskListing"]


@dataclass
class SharedBar:
    """One progress bar over a listing and the drain taking its jobs meanwhile: the listing
    fills the first `share`, the drain the rest, and the bar never moves back (the drain's
    fraction is over jobs still being projected while pages are listed)."""

    show: Callable[[float], None]
    share: float
    listed: float = 0.0
    drained: float = 0.0
    shown: float = 0.0

    def listing(self, fraction: float) -> None:
        self.listed = fraction
        self._update()

    def drain(self, fraction: float) -> None:
        self.drained = fraction
        self._update()

    def _update(self) -> None:
        fraction = self.share * self.listed + (1 - self.share) * self.drained
        if fraction > self.shown:
            self.shown = fraction
            self.show(fraction)


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
    from worker.launch import ensure_worker, worker_input

    return ensure_worker(ctx.data_dir, ctx.entrypoint, worker_input(ctx.input.server_connection), time.time())


def foreground_drain(ctx: RunContext, prepare: Prepare, prepare_share: float) -> dict[str, Any]:
    """What every foreground task that syncs shares (Process Queue, Sync All/Recent,
    Reconcile): the processor lock, `prepare` (listing, queueing) on the first
    `prepare_share` of one progress bar, the shared drain on the rest, and a background
    worker left for what is still to do. Returns prepare's output with the summary."""
    from worker.services import services

    require_enabled(ctx)
    with processor(ctx.data_dir), services(ctx) as svc:
        # The user asked for a run: a remembered 401 is tried again. A sync that then works
        # must leave no halt behind, or the workers the next saves start would still refuse.
        svc.state.put(HALT, None)
        ctx.log.progress(0.0)
        bar = SharedBar(ctx.log.progress, prepare_share)
        try:
            prepared = prepare(svc, bar.listing)
        except PlexUnavailable as exc:
            # Reconcile reads Plex's library first: an outage there is said like any other
            # (one warning, nothing lost), not a failed task; there is nothing to drain into.
            summary, counts = plex_unreachable(ctx, svc, str(exc))
            output: dict[str, Any] = {"plex": "unreachable"}
        else:
            listing = None if isinstance(prepared, dict) else prepared
            summary, counts = drain_and_report(ctx, svc, bar.drain, listing)
            output = prepared if listing is None else listing.finish()
    start_worker_if_needed(ctx, counts.due + counts.deferred > 0)
    return {**output, "summary": summary.to_dict(), "queue": queue_counts(counts)}


def require_enabled(ctx: RunContext) -> None:
    if not ctx.settings.enabled:
        raise Stash2PlexError("Stash2Plex is disabled (setting 'enabled'): nothing was sent to Plex.")


def drain_and_report(ctx: RunContext, svc: Services, progress: Callable[[float], None],
                     listing: TaskListing | None = None) -> tuple[DrainSummary, QueueCounts]:
    """The foreground tasks' drain: the shared core, then one summary in Stash's log. What
    the drain left of `listing` is listed after it, before the counts are taken."""
    result = drain(svc, time.time, time.sleep, progress=progress, probe_first=True, listing=listing)
    if listing is not None:
        listing.finish()
    ctx.log.progress(1.0)
    now = time.time()
    include_waiting(result.summary, svc.queue.report.deferred(now))
    held_for_probe(result.summary, result.breaker_until)
    if result.outage:
        # Said once, as a warning: the task still succeeds (an outage may pass by itself).
        ctx.log.warning(outage_line(result.outage, svc.queue.report.counts(now), result.breaker_until
                                    or svc.queue.report.next_due_at(), now))
    ctx.log.info(format_summary(result.summary, now))
    if result.summary.stopped and result.breaker_until is None and result.outage is None:
        # An outage is not a failure of the task: the jobs wait for the next probe, which the
        # background worker the caller starts will send. Anything else needs the user.
        raise DrainStopped(f"{result.summary.stopped.rstrip('.')}. Every job is kept; run Process Queue once it is fixed.")
    return result.summary, svc.queue.report.counts(now)


def plex_unreachable(ctx: RunContext, svc: Services, cause: str) -> tuple[DrainSummary, QueueCounts]:
    now = time.time()
    svc.feed(BreakerEvent.OUTAGE, now)
    counts = svc.queue.report.counts(now)
    ctx.log.warning(outage_line(cause, counts, next_probe_at(svc.breaker()) or svc.queue.report.next_due_at(), now))
    ctx.log.progress(1.0)
    return DrainSummary(stopped=f"{cause.rstrip('.')}; nothing was read from Plex"), counts


def outage_line(cause: str, counts: QueueCounts, next_try: float | None, now: float) -> str:
    """The one warning of a task that could not reach Plex: where, why, what is kept, when next."""
    kept = counts.due + counts.deferred + counts.in_flight + counts.inbox
    if not kept:
        return f"Stash2Plex: {cause.rstrip('.')}. Nothing is queued and nothing was lost; run it again once Plex answers."
    when = f"next try {relative(next_try - now)} ({absolute_utc(next_try)})" if next_try else "next try soon"
    return (f"Stash2Plex: {cause.rstrip('.')}. Every job is kept ({kept} waiting, no attempt used); {when}, "
            "by the background worker.")


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
