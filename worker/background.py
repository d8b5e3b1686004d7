"""The detached background worker a hook starts: drain, sleep until the next due job, exit.

It runs only while it holds the processor lock, so there are never two. It drains through
`worker.core.drain` like every other caller. Between drains it sleeps until the earliest
due job (or the breaker's next probe) if that lies within `HORIZON`, and exits otherwise;
the next hook starts a new one. Waiting is `time.sleep` in one-second ticks with one `stat`
per tick (for a hook's wake-up or a task's handover request): no CPU, no query to anyone.
It logs to the rotating `worker.log` in the data folder, because its stderr goes nowhere.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

from base.errors import Stash2PlexError
from sync_queue.inbox import has_events
from sync_queue.lock import LockNotAcquired, ProcessorLock
from sync_queue.state import HALT, LAST_RECONCILE, OUTAGE_SAID
from worker.breaker import BreakerState
from worker.core import Services, drain
from worker.filelog import FileLog, open_worker_log
from worker.halt import halt_applies
from worker.handover import handover_requested, wake_stamp
from worker.launch import SPAWN_STAMP
from worker.runtime import RunContext
from worker.summary import format_summary, held_for_probe

#: Sleep for a due job at most this far ahead; beyond it, exit and let a hook restart us.
HORIZON = 900.0
TICK = 1.0
#: A hook holds the lock for an instant while it decides whether to spawn us: wait that out.
START_WAIT = 2.0


def next_wake(next_due: float | None, breaker_until: float | None, now: float,
              horizon: float = HORIZON) -> float | None:
    """When to drain again, or None to exit. Pure.

    Jobs held back by an open breaker are due already; the probe time is when they may go.
    """
    candidates = [t for t in (next_due, breaker_until) if t is not None]
    if not candidates:
        return None
    wake = max(candidates) if breaker_until is not None else min(candidates)
    return wake if wake - now <= horizon else None


def say_outage(svc: Any, log: FileLog, outage: str | None, now: float) -> None:
    """Once per outage, not once per probe nor once per worker a hook starts meanwhile: the
    moment it was said is stored beside the breaker, and cleared once Plex answers."""
    said = svc.state.get(OUTAGE_SAID)
    if outage and not said:
        log.warning(f"{outage.rstrip('.')}. Every job is kept; Plex is asked again every few seconds, "
                    "then every minute, and the jobs go as soon as it answers.")
        svc.state.put(OUTAGE_SAID, repr(now))
    elif said and not outage and svc.breaker().state is BreakerState.CLOSED:
        svc.state.put(OUTAGE_SAID, None)


def reconcile_due(last: float | None, interval: float | None, now: float) -> bool:
    """Whether auto-reconcile should run now. Pure.

    `interval` None is "never". A record from the future (the clock was set back) is not
    trusted: it would postpone the next reconcile by however far the clock moved.
    """
    if interval is None:
        return False
    return last is None or not 0 <= now - last < interval


def stored_time(raw: str | None) -> float | None:
    """An epoch kept as text in the state store; None when absent or unreadable."""
    try:
        return float(raw) if raw else None
    except ValueError:
        return None


def _auto_reconcile(ctx: RunContext, svc: Services) -> bool:
    """Run a whole-library reconcile if `reconcile_interval` says it is due; True when the
    caller should drain again (gaps were queued, or a handover interrupted the pass).

    Only here, in the worker, under the processor lock it holds: never on a hook's path,
    never two at once. A failed pass is recorded like a finished one, so an unreachable
    Plex is not listed again by every worker a hook starts; the next try is an interval on.
    """
    from reconciliation.reconcile import reconcile_pass, record_reconcile

    now = time.time()
    if not reconcile_due(stored_time(svc.state.get(LAST_RECONCILE)), ctx.settings.reconcile_seconds, now):
        return False
    ctx.log.info(f"auto-reconcile ({ctx.settings.reconcile_interval}) is due: looking for gaps")
    try:
        report = reconcile_pass(svc.queue, svc.state, svc.plex, ctx.stash, ctx.settings, ctx.log, "reconcile_all", now,
                                should_stop=lambda: handover_requested(ctx.data_dir, time.time()))
    except Stash2PlexError as exc:
        svc.state.put(LAST_RECONCILE, repr(now))
        ctx.log.warning(f"auto-reconcile failed: {exc}; next try after {ctx.settings.reconcile_interval} interval")
        return False
    record_reconcile(svc.state, report, now)
    for line in report.lines():
        ctx.log.info(line)
    return report.queued > 0 or not report.completed


def sleep_until(wake: float, interrupted: Callable[[], bool], clock: Callable[[], float] = time.time,
                sleep: Callable[[float], None] = time.sleep, tick: float = TICK) -> None:
    while True:
        left = wake - clock()
        if left <= 0 or interrupted():
            return
        sleep(min(tick, left))


def _interrupted_by_news(data_dir: Any) -> Callable[[], bool]:
    """True once a hook touched the wake file or a task asked to take over."""
    stamp = wake_stamp(data_dir)
    return lambda: wake_stamp(data_dir) != stamp or handover_requested(data_dir, time.time())


def run(ctx: RunContext) -> dict[str, Any]:
    """Entry for the internal `_worker` mode.

    Serves once more if an event reached the inbox while it was letting go: the hook that
    recorded it found the lock held, so it only touched the wake file and started nobody.
    """
    log = open_worker_log(ctx.data_dir)
    try:
        while True:
            outcome = _hold_and_serve(ctx, log)
            if outcome.get("worker") != "idle" or not has_events(ctx.data_dir):
                return outcome
    finally:
        log.close()


def _hold_and_serve(ctx: RunContext, log: FileLog) -> dict[str, Any]:
    lock = ProcessorLock(ctx.data_dir)
    try:
        lock.acquire(START_WAIT)
    except LockNotAcquired:
        # The holder serves instead; drop the stamp that announced us, or a task finishing
        # within the spawn grace would take it for a worker still starting and start nobody.
        (ctx.data_dir / SPAWN_STAMP).unlink(missing_ok=True)
        return {"worker": "another processor is running"}
    # We are the worker the spawn stamp announced; once we are gone, the next hook must
    # start a new one instead of taking the stamp for a worker still starting up.
    (ctx.data_dir / SPAWN_STAMP).unlink(missing_ok=True)
    try:
        return _serve(dataclasses.replace(ctx, log=log))
    except Stash2PlexError as exc:
        log.error(f"worker stopped: {exc}")
        return {"worker": "stopped", "error": str(exc)}
    except Exception as exc:  # nobody reads our stderr: the file log is the error boundary
        import traceback

        log.error(f"worker crashed: {type(exc).__name__}: {exc}")
        log.debug(traceback.format_exc())
        return {"worker": "crashed"}
    finally:
        lock.release()


def _serve(ctx: RunContext) -> dict[str, Any]:
    from worker.services import services

    settings = ctx.settings
    log = ctx.log
    if not settings.enabled:
        log.info("plugin disabled: events stay queued, nothing is sent to Plex")
        return {"worker": "disabled"}
    processed = 0
    with services(ctx) as svc:
        now = time.time()
        recovered = svc.queue.recover_abandoned(now, max_attempts=svc.policy.max_retries)
        if recovered:
            log.info(f"{recovered} job(s) left in flight by a stopped processor are queued again")
        halt = halt_applies(svc.state.get(HALT), svc.token)
        if halt is not None:
            log.debug(f"halted since {halt.get('since')}: {halt.get('reason')}; run Process Queue after fixing it")
            return {"worker": "halted"}
        while True:
            # Taken before the drain's first ingest: a hook that records an event after that
            # ingest touches the wake file after this, so it cuts the sleep below short.
            news = _interrupted_by_news(ctx.data_dir)
            result = drain(svc, time.time, time.sleep,
                           should_yield=lambda: handover_requested(ctx.data_dir, time.time()))
            processed += result.processed
            if result.processed:
                held_for_probe(result.summary, result.breaker_until)
                log.info(format_summary(result.summary, time.time()))
            say_outage(svc, log, result.outage, time.time())
            waiting = result.breaker_until is not None or result.outage is not None
            if result.summary.stopped:  # an outage is a wait, anything else needs the user
                (log.debug if waiting else log.error)(f"stopped: {result.summary.stopped}")
            if result.yielded:
                return {"worker": "handed over", "processed": processed}
            if result.summary.stopped and not waiting:
                return {"worker": "stopped", "processed": processed, "reason": result.summary.stopped}
            if not waiting and not result.summary.stopped and _auto_reconcile(ctx, svc):
                continue  # it queued gaps (or was interrupted): drain them / hand over
            if result.breaker_until is None and not result.summary.stopped:
                from worker.watch_import import import_if_due

                import_if_due(ctx, svc)
            now = time.time()
            wake = next_wake(svc.queue.report.next_due_at(), result.breaker_until, now)
            if wake is None:
                return {"worker": "idle", "processed": processed}
            sleep_until(wake, news)
