"""Sync All and Sync Recent: the listing pass enqueues what differs, then the core drains.

The pass (`reconciliation.bulk.sync_pass`: the listing and the ledger rule) decides what to
enqueue; this module adds the processor lock and the drain under one progress bar.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from reconciliation.bulk import RECENT_WINDOW, sync_pass
from tasks.drain import LISTING_SHARE, foreground_drain
from worker.core import Services
from worker.runtime import RunContext


def sync_all(ctx: RunContext) -> dict[str, Any]:
    return bulk_sync(ctx, "sync_all", window=None)


def sync_recent(ctx: RunContext) -> dict[str, Any]:
    return bulk_sync(ctx, "sync_recent", window=RECENT_WINDOW)


def bulk_sync(ctx: RunContext, reason: str, window: float | None) -> dict[str, Any]:
    def prepare(svc: Services, progress: Callable[[float], None]) -> dict[str, Any]:
        return sync_pass(svc.queue, svc.state, ctx.stash, ctx.settings, ctx.log, reason, window, time.time,
                         progress)

    return foreground_drain(ctx, prepare, prepare_share=LISTING_SHARE)
