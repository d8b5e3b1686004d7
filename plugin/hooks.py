"""The hook fast path: record the event durably, make sure a worker will see it, return.

Stash makes the user's save wait for this process (until its stdout closes), so it does
no network call and imports nothing beyond the standard library and our inbox.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from base.errors import Stash2PlexError
from base.protocol import PluginInput, StashLog
from plugin.dispatch import HOOKS

MAX_ID = 2**63 - 1  # SQLite's largest integer; Stash's ids are far below it


class BadHookInput(Stash2PlexError):
    """The hook context lacks what we need (a positive integer id)."""


def hook_entity_id(context: dict[str, Any]) -> int:
    """The id of the object the hook is about; Stash omits it only when it is 0."""
    raw = context.get("id")
    value = positive_id(raw)
    if value is None:
        raise BadHookInput(f"Hook {context.get('type')!r} carries no usable id ({raw!r}); nothing recorded.")
    return value


def positive_id(raw: Any) -> int | None:
    """`raw` as an id SQLite can store (1 to 2**63 - 1), or None."""
    try:
        value = int(raw)
    except (TypeError, ValueError, OverflowError):
        return None
    return value if 0 < value <= MAX_ID else None


def merged_sources(context: dict[str, Any]) -> list[int]:
    """The tag ids a `Tag.Merge.Post` merged away (its `input.source`), destination excluded.

    Stash deletes them in the merge, so afterwards nothing but this hook knows them; the
    processor finds their scenes through what our ledger says we last wrote. Ids that are not
    positive integers are dropped rather than failing the user's merge.
    """
    raw = context.get("input")
    sources = raw.get("source") if isinstance(raw, dict) else None
    if not isinstance(sources, list):
        return []
    ids = {number for number in map(positive_id, sources) if number is not None}
    ids.discard(hook_entity_id(context))
    return sorted(ids)


def hook_payload(context: dict[str, Any]) -> dict[str, Any] | None:
    """What the inbox row must carry beyond (kind, id, trigger); None for almost every hook."""
    if context.get("type") == "Tag.Merge.Post":
        sources = merged_sources(context)
        return {"merged": sources} if sources else None
    return None


def handle_hook(inp: PluginInput, data_dir: Path, entrypoint: Path, now: float,
                log: StashLog | None = None) -> dict[str, Any]:
    """Record one hook event and start a background worker if none is running.

    A database that does not take the event within the hook's budget (locked by another
    program or a burst of hooks, damaged) gets it in the spool instead; a folder where not
    even that can be written fails the hook with one line saying why and what to do.
    """
    from sync_queue.db import is_lock_error
    from sync_queue.spool import record_or_spool, spool_dir
    from worker.launch import ensure_worker, worker_input

    context = inp.hook_context or {}
    trigger = str(context.get("type"))
    entity_id = hook_entity_id(context)
    try:
        held_up = record_or_spool(data_dir, HOOKS[trigger], entity_id, trigger, now, payload=hook_payload(context))
    except OSError as exc:
        from sync_queue.storage import explain_hook

        known = explain_hook(exc, data_dir, trigger, entity_id)
        if known is None:
            raise
        raise known from exc
    if held_up is not None and log is not None:
        # Contention is routine in a burst of hundreds of hooks and loses nothing: debug only.
        # Anything else (a damaged file) the user should hear about, once per save.
        (log.debug if is_lock_error(held_up) else log.warning)(
            f"Stash2Plex: stash2plex.db did not take the event in time ({held_up}); "
            f"it waits in {spool_dir(data_dir)} for the worker")
    started = ensure_worker(data_dir, entrypoint, worker_input(inp.server_connection), now)
    recorded = {"trigger": trigger, "id": entity_id}
    return {"recorded": recorded, "worker_started": started, **({"spooled": True} if held_up is not None else {})}
