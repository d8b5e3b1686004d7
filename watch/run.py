"""One watch-history import over the configured scope and movie libraries, and its report.

The task (`tasks.watch_history`) and the background worker (`worker.watch_import`) both run
it; the caller holds the processor lock for a real run (a dry run writes nothing).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from base.protocol import StashLog
from base.settings import Settings
from plex.connection import PlexConnection
from sync_queue import watch_log
from watch.importer import DRY_RUN_SHOWN, ImportReport, WatchImport
from watch.scope import needs_accounts, resolve_scope


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
    from plex.sections import choose_sections

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

