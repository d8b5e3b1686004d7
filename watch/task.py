"""The "Import Plex Watch History" task, its dry run, and the run the background worker makes.

A real run holds the processor lock (taking it over from the background worker, which
runs imports too): two imports at once could both find a play missing in Stash and both
send it. A dry run writes nothing, so it takes no lock and may run with the setting off,
to see what turning it on would import.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from plex.connection import PlexConnection
from plugin.errors import Stash2PlexError
from plugin.protocol import StashLog
from plugin.runtime import RunContext
from plugin.settings import Settings
from sync_queue import watch_log
from watch.importer import DRY_RUN_KEPT, DRY_RUN_SHOWN, ImportReport, WatchImport
from watch.scope import needs_accounts, resolve_scope

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
    from worker.tasks import start_worker_if_needed

    queue = JobQueue(ctx.data_dir)
    try:
        counts = queue.counts(time.time())
    finally:
        queue.close(compact=False)
    start_worker_if_needed(ctx, counts.due + counts.deferred > 0)


def log_report(log: StashLog, report: ImportReport) -> None:
    lines = report.lines()
    if report.dry_run:
        lines.insert(0, "Dry run: nothing was written to Stash or to Stash2Plex's database.")
        lines += [f"  {line}" for line in report.would[:DRY_RUN_SHOWN]]
        if len(report.would) > DRY_RUN_SHOWN:
            lines.append(f"  … and {len(report.would) - DRY_RUN_SHOWN} more (all in the task's JSON output)")
    log.info("\n".join(lines))


def run_import(conn: PlexConnection, stash: Any, data_dir: Path, settings: Settings, clock: Callable[[], float],
               *, dry_run: bool = False, should_stop: Callable[[], bool] = lambda: False,
               progress: Callable[[float], None] = lambda fraction: None) -> ImportReport:
    """One import over the configured scope and movie libraries."""
    from plex import history, xmlread
    from plex.sync import choose_sections

    accounts = history.accounts(conn) if needs_accounts(settings.watch_history_account) else None
    scope = resolve_scope(settings.watch_history_account, accounts)
    sections = choose_sections(xmlread.sections(conn.query("/library/sections")), settings.plex_library)
    db = watch_log.open_log(data_dir, create=not dry_run)
    try:
        importer = WatchImport(conn, stash, db, scope, [s.key for s in sections], settings.path_map,
                               dry_run=dry_run)
        return importer.run(clock, should_stop, progress)
    finally:
        db.close()

