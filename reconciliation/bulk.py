"""Sync All and Sync Recent: page through Stash, enqueue only what differs, drain.

A scene is enqueued only when the state it asks Plex for differs from what the ledger says
we last wrote (or it was never synced, or Plex lost it): running Sync All twice on an
unchanged library enqueues nothing the second time (field report 001 cannot happen).
The state hash needs no Plex request, so the listing pass costs Stash pages only.

Resumable: the id of the last scene whose page was enqueued is kept in the state store, so
a cancelled Sync All (Stash kills it with SIGKILL) continues after it when run again.
Memory stays flat: one page of scenes at a time, enqueued in one transaction.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from typing import Any

from plex.desired import desired_state
from plex.diff import state_hash
from plugin.runtime import RunContext
from plugin.settings import Settings
from stash.records import Scene
from worker.handover import processor

PAGE = 200
_FRACTION = re.compile(r"\.\d+(?=Z|[+-]\d\d:\d\d$|$)")
#: Stash compares timestamp filters as text in its own zone; ask this much wider, then check.
ZONE_SLACK = 14 * 3600.0
RECENT_WINDOW = 86400.0
#: Share of the progress bar for the listing pass; the drain gets the rest.
LISTING_SHARE = 0.3


def scene_state(scene: Scene, settings: Settings) -> str:
    """The ledger hash of what a sync of `scene` would write: equal to the one a sync stores."""
    return state_hash(desired_state(scene, settings), lock=settings.lock_synced_fields,
                      preserve=settings.preserve_plex_edits)


def stash_stamp(when: float) -> str:
    return datetime.fromtimestamp(when, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_stamp(text: str) -> float | None:
    """Stash's RFC 3339 `Time` text (any offset, maybe fractional seconds) as epoch seconds."""
    if not text:
        return None
    # gqlgen writes RFC 3339 with up to nine fractional digits; seconds are all Stash stores.
    whole = _FRACTION.sub("", text.strip()).replace("Z", "+00:00")
    try:
        return datetime.fromisoformat(whole).timestamp()
    except ValueError:
        return None


def recent_filter(now: float, window: float) -> dict[str, Any]:
    return {"updated_at": {"value": stash_stamp(now - window - ZONE_SLACK), "modifier": "GREATER_THAN"}}


def changed_within(scenes: Iterable[Scene], since: float) -> Iterator[Scene]:
    """Scenes created or updated at or after `since` (a created scene has updated_at >= it)."""
    for scene in scenes:
        stamp = parse_stamp(scene.updated_at) or parse_stamp(scene.created_at)
        if stamp is None or stamp >= since:
            yield scene


def cursor_key(reason: str) -> str:
    return f"bulk_cursor.{reason}"


def sync_all(ctx: RunContext) -> dict[str, Any]:
    return bulk_sync(ctx, "sync_all", window=None)


def sync_recent(ctx: RunContext) -> dict[str, Any]:
    return bulk_sync(ctx, "sync_recent", window=RECENT_WINDOW)


def bulk_sync(ctx: RunContext, reason: str, window: float | None) -> dict[str, Any]:
    from worker.services import services
    from worker.tasks import drain_and_report, queue_counts, require_enabled, start_worker_if_needed

    require_enabled(ctx)
    settings = ctx.settings
    start = time.time()
    scene_filter = recent_filter(start, window) if window else None
    with processor(ctx.data_dir), services(ctx) as svc:
        key = cursor_key(reason)
        after = int(svc.state.get(key) or 0) if window is None else 0
        total = max(ctx.stash.count_scenes(scene_filter), 1)
        seen = queued = 0
        ctx.log.progress(0.0)
        if after:
            ctx.log.info(f"Stash2Plex: resuming {reason} after scene {after}.")
        page: list[tuple[int, str]] = []
        scenes = ctx.stash.iter_scenes(scene_filter, after_id=after, page_size=PAGE)
        if window:
            scenes = changed_within(scenes, start - window)
        for scene in scenes:
            page.append((scene.id, scene_state(scene, settings)))
            seen += 1
            if len(page) >= PAGE:
                queued += svc.queue.enqueue_changed_many(page, reason, time.time())
                if window is None:
                    svc.state.put(key, str(page[-1][0]))
                page.clear()
                ctx.log.progress(LISTING_SHARE * min(seen / total, 1.0))
        if page:
            queued += svc.queue.enqueue_changed_many(page, reason, time.time())
        svc.state.put(key, None)
        ctx.log.info(f"Stash2Plex: {seen} scenes read from Stash, {queued} queued, "
                     f"{seen - queued} unchanged since their last sync.")
        summary, counts = drain_and_report(
            ctx, svc, lambda f: ctx.log.progress(LISTING_SHARE + (1 - LISTING_SHARE) * f))
    start_worker_if_needed(ctx, counts.due + counts.deferred > 0)
    return {"scenes": seen, "queued": queued, "unchanged": seen - queued,
            "summary": summary.to_dict(), "queue": queue_counts(counts)}
