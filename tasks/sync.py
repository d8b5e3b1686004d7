"""Sync All and Sync Recent: the listing pass enqueues what differs, then the core drains.

The pass (`reconciliation.bulk.LibraryPass` and the ledger rule) decides what to enqueue;
this module adds the processor lock and the drain under one progress bar.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from reconciliation.bulk import RECENT_WINDOW, LibraryPass, scene_state
from tasks.drain import LISTING_SHARE, foreground_drain
from worker.core import Services
from worker.runtime import RunContext


def sync_all(ctx: RunContext) -> dict[str, Any]:
    return bulk_sync(ctx, "sync_all", window=None)


def sync_recent(ctx: RunContext) -> dict[str, Any]:
    return bulk_sync(ctx, "sync_recent", window=RECENT_WINDOW)


def bulk_sync(ctx: RunContext, reason: str, window: float | None) -> dict[str, Any]:
    settings = ctx.settings

    def prepare(svc: Services, progress: Callable[[float], None]) -> dict[str, Any]:
        listing = LibraryPass(ctx.stash, svc.state, reason, window, time.time())
        queued = 0
        if listing.after:
            ctx.log.info(f"Stash2Plex: resuming {reason} after scene {listing.after}.")
        for page in listing.pages():
            states = [(scene.id, scene_state(scene, settings)) for scene in page]
            queued += svc.queue.enqueue_changed_many(states, reason, time.time())
            progress(listing.fraction)
        seen = listing.seen
        ctx.log.info(f"Stash2Plex: {seen} scenes read from Stash, {queued} queued, "
                     f"{seen - queued} unchanged since their last sync.")
        return {"scenes": seen, "queued": queued, "unchanged": seen - queued}

    return foreground_drain(ctx, prepare, prepare_share=LISTING_SHARE)
