"""The "Import Plex Watch History" task and its dry run (the run itself is `watch.run`).

A real run holds the processor lock (taking it over from the background worker, which
runs imports too): two imports at once could both find a play missing in Stash and both
send it. A dry run writes nothing, so it takes no lock and may run with the setting off,
to see what turning it on would import.
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from typing import Any

from base.errors import Stash2PlexError
from watch.importer import DRY_RUN_KEPT
from watch.run import log_report, run_import
from worker.runtime import RunContext

TRUE_WORDS = ("1", "true", "yes", "on")


def import_watch_history(ctx: RunContext) -> dict[str, Any]:
    """Task entry; `dry_run` in the task's arguments lists instead of writing."""
    dry_run = str(ctx.args.get("dry_run", "")).strip().lower() in TRUE_WORDS
    return _task(ctx, dry_run)


def watch_history_dry_run(ctx: RunContext) -> dict[str, Any]:
    """The dry run as a button of its own (Stash's task buttons cannot pass arguments)."""
    return _task(ctx, True)


def _task(ctx: RunContext, dry_run: bool) -> dict[str, Any]:
    from plex.connection import shared_connection
    from worker.handover import processor

    settings = ctx.settings
    if not settings.import_watch_history and not dry_run:
        raise Stash2PlexError("Importing Plex watch history is off (setting 'Import Plex watch history'): "
                              "nothing was imported. Run the dry run to see what it would import.")
    settings.require("plex_url", "plex_token")
    conn = shared_connection(settings, ctx.data_dir)
    with nullcontext() if dry_run else processor(ctx.data_dir):
        ctx.log.progress(0.0)
        report = run_import(conn, ctx.stash, ctx.data_dir, settings, time.time, dry_run=dry_run,
                            progress=ctx.log.progress)
    log_report(ctx.log, report)
    if not dry_run:
        _restart_worker(ctx)
    return {"watch_history": report.summary(), "would": report.would[:DRY_RUN_KEPT]}


def _restart_worker(ctx: RunContext) -> None:
    """The lock was taken over from any background worker: leave one for jobs still queued."""
    from sync_queue.jobs import JobQueue
    from tasks.drain import start_worker_if_needed

    queue = JobQueue(ctx.data_dir)
    try:
        counts = queue.report.counts(time.time())
    finally:
        queue.close(compact=False)
    start_worker_if_needed(ctx, counts.due + counts.deferred > 0)
