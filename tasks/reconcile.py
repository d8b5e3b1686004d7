"""Reconcile All, Last 24 Hours, Last 7 Days: queue the gaps, then the core drains.

`reconciliation.reconcile.reconcile_pass` finds and queues the gaps; this module adds the
processor lock, the drain under one progress bar, and the report lines in Stash's log.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from reconciliation.reconcile import reconcile_pass, record_reconcile
from tasks.drain import LISTING_SHARE, foreground_drain
from worker.core import Services
from worker.runtime import RunContext


def reconcile_all(ctx: RunContext) -> dict[str, Any]:
    return reconcile_task(ctx, "reconcile_all")


def reconcile_recent(ctx: RunContext) -> dict[str, Any]:
    return reconcile_task(ctx, "reconcile_recent")


def reconcile_7days(ctx: RunContext) -> dict[str, Any]:
    return reconcile_task(ctx, "reconcile_7days")


def reconcile_task(ctx: RunContext, scope: str) -> dict[str, Any]:
    def prepare(svc: Services, progress: Callable[[float], None]) -> dict[str, Any]:
        now = time.time()
        report = reconcile_pass(svc.queue, svc.state, svc.plex, ctx.stash, ctx.settings, ctx.log, scope, now,
                                progress=progress)
        record_reconcile(svc.state, report, now)
        for line in report.lines():
            ctx.log.info(line)
        return report.to_dict()

    return foreground_drain(ctx, prepare, prepare_share=LISTING_SHARE)
