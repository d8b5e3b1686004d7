"""The hook fast path: record the event durably, make sure a worker will see it, return.

Stash makes the user's save wait for this process (until its stdout closes), so it does
no network call and imports nothing beyond the standard library and our inbox.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from base.errors import Stash2PlexError
from base.protocol import PluginInput
from plugin.dispatch import HOOKS


class BadHookInput(Stash2PlexError):
    """The hook context lacks what we need (a positive integer id)."""


def hook_entity_id(context: dict[str, Any]) -> int:
    """The id of the object the hook is about; Stash omits it only when it is 0."""
    raw = context.get("id")
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise BadHookInput(f"Hook {context.get('type')} carries no usable id ({raw!r}); nothing recorded.") from None
    if value <= 0:
        raise BadHookInput(f"Hook {context.get('type')} carries no usable id ({raw!r}); nothing recorded.")
    return value


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
    ids: set[int] = set()
    for value in sources:
        try:
            number = int(value)
        except (TypeError, ValueError):
            continue
        if number > 0:
            ids.add(number)
    ids.discard(hook_entity_id(context))
    return sorted(ids)


def hook_payload(context: dict[str, Any]) -> dict[str, Any] | None:
    """What the inbox row must carry beyond (kind, id, trigger); None for almost every hook."""
    if context.get("type") == "Tag.Merge.Post":
        sources = merged_sources(context)
        return {"merged": sources} if sources else None
    return None


def handle_hook(inp: PluginInput, data_dir: Path, entrypoint: Path, now: float) -> dict[str, Any]:
    """Record one hook event and start a background worker if none is running."""
    from sync_queue.inbox import record_event
    from worker.launch import ensure_worker, worker_input

    context = inp.hook_context or {}
    trigger = str(context.get("type"))
    entity_id = hook_entity_id(context)
    record_event(data_dir, HOOKS[trigger], entity_id, trigger, now, payload=hook_payload(context))
    started = ensure_worker(data_dir, entrypoint, worker_input(inp.server_connection), now)
    return {"recorded": {"trigger": trigger, "id": entity_id}, "worker_started": started}
