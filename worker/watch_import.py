"""The background worker's watch-history import: on the auto-reconcile interval, when on.

Runs only in the worker, under the processor lock it holds, like auto-reconcile. An attempt
is remembered whether it worked or not, so an unreachable Plex is not asked again by every
worker a hook starts; the next try is an interval on.
"""

from __future__ import annotations

import time
from typing import Any

from base.errors import Stash2PlexError
from worker.background import reconcile_due, stored_time
from worker.handover import handover_requested
from worker.runtime import RunContext

LAST_WATCH_IMPORT = "last_watch_import"


def import_if_due(ctx: RunContext, svc: Any) -> None:
    from watch.run import run_import

    settings = ctx.settings
    if not settings.import_watch_history:
        return
    now = time.time()
    if not reconcile_due(stored_time(svc.state.get(LAST_WATCH_IMPORT)), settings.reconcile_seconds, now):
        return
    svc.state.put(LAST_WATCH_IMPORT, repr(now))
    try:
        report = run_import(svc.plex.conn, ctx.stash, ctx.data_dir, settings, time.time,
                            should_stop=lambda: handover_requested(ctx.data_dir, time.time()))
    except Stash2PlexError as exc:
        ctx.log.warning(f"watch-history import failed: {exc}; next try after {settings.reconcile_interval} interval")
        return
    for line in report.lines():
        ctx.log.info(line)
