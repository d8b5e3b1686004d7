"""Sync All and Sync Recent: the listing pass enqueues what differs while the core drains.

The pass (`reconciliation.bulk.SyncPass`: the listing and the ledger rule) decides what to
enqueue, a page at a time; the drain takes each page's jobs while later pages are listed.
This module adds the processor lock and the one progress bar (`tasks.drain`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from reconciliation.bulk import RECENT_WINDOW, SyncPass
from tasks.drain import LISTING_SHARE, foreground_drain
from worker.core import Services
from worker.runtime import RunContext


def sync_all(ctx: RunContext) -> dict[str, Any]:
    return bulk_sync(ctx, "sync_all", window=None)


def sync_recent(ctx: RunContext) -> dict[str, Any]:
    return bulk_sync(ctx, "sync_recent", window=RECENT_WINDOW)


def bulk_sync(ctx: RunContext, reason: str, window: float | None) -> dict[str, Any]:
    def prepare(svc: Services, progress: Callable[[float], None]) -> SyncPass:
        return SyncPass(svc.queue, svc.state, ctx.stash, ctx.settings, ctx.log, reason, window, time.time,
                        progress)

    return foreground_drain(ctx, prepare, prepare_share=LISTING_SHARE)
