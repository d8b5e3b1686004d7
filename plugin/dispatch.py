"""Which code answers which task mode or hook type.

Handlers are named as `module:function` and imported only when their mode runs, so a hook
never pays for plexapi or stashapi imports.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from base.errors import Stash2PlexError
from worker.launch import WORKER_MODE

#: Task mode -> (button name, handler "module:function").
TASKS: dict[str, tuple[str, str]] = {
    "all": ("Sync All", "tasks.sync:sync_all"),
    "recent": ("Sync Recent", "tasks.sync:sync_recent"),
    "process_queue": ("Process Queue", "tasks.queue:process_queue"),
    "queue_status": ("Queue Status", "tasks.queue:queue_status"),
    "clear_queue": ("Clear Queue", "tasks.queue:clear_queue"),
    "clear_dlq": ("Clear Dead Letters", "tasks.queue:clear_dlq"),
    "purge_dlq": ("Purge Old Dead Letters", "tasks.queue:purge_dlq"),
    "retry_dlq": ("Retry Dead Letters", "tasks.queue:retry_dlq"),
    "reconcile_all": ("Reconcile All", "tasks.reconcile:reconcile_all"),
    "reconcile_recent": ("Reconcile Last 24 Hours", "tasks.reconcile:reconcile_recent"),
    "reconcile_7days": ("Reconcile Last 7 Days", "tasks.reconcile:reconcile_7days"),
    "health_check": ("Health Check", "tasks.health:health_check"),
    "dry_run": ("Dry Run", "tasks.dry_run:dry_run"),
    "import_watch_history": ("Import Plex Watch History", "tasks.watch_history:import_watch_history"),
    "watch_history_dry_run": ("Import Plex Watch History (Dry Run)", "tasks.watch_history:watch_history_dry_run"),
}

#: Modes Stash never shows: the detached background worker started by hooks.
INTERNAL: dict[str, str] = {WORKER_MODE: "worker.background:run"}

#: Hook trigger -> the inbox event kind it records. Only triggers Stash fires (`Post` hooks
#: only, `Merge` for tags only); Stash accepts a misspelt trigger silently and never fires
#: it, so this table is the one place they are written.
HOOKS: dict[str, str] = {
    "Scene.Create.Post": "scene",
    "Scene.Update.Post": "scene",
    "Scene.Destroy.Post": "scene_destroyed",
    "Performer.Update.Post": "performer",
    "Performer.Destroy.Post": "performer",
    "Studio.Update.Post": "studio",
    "Studio.Destroy.Post": "studio",
    "Tag.Update.Post": "tag",
    "Tag.Destroy.Post": "tag",
    "Tag.Merge.Post": "tag",
    # Stash v0.27+ fires Group.* and, for older plugins, Movie.* for the same change (one
    # fan-out row per group takes both); before v0.27 only Movie.* exists, with the same id.
    "Group.Update.Post": "group",
    "Group.Destroy.Post": "group",
    "Movie.Update.Post": "group",
    "Movie.Destroy.Post": "group",
}


class UnknownMode(Stash2PlexError):
    """The task mode is not one we declare."""


@dataclass(frozen=True)
class Route:
    """What the entrypoint should run: a hook trigger or a task mode."""

    kind: str  # "hook", "task" or "internal"
    name: str


def route(args: dict[str, Any]) -> Route:
    """Decide between hook and task from Stash's `args`; raise a clear error otherwise."""
    ctx = args.get("hookContext")
    if isinstance(ctx, dict):
        trigger = str(ctx.get("type") or "")
        if trigger not in HOOKS:
            known = ", ".join(sorted(HOOKS))
            raise UnknownMode(f"Unknown hook type {trigger!r}: Stash2Plex handles {known}.")
        return Route("hook", trigger)
    mode = args.get("mode")
    if not mode:
        raise UnknownMode("No task mode given: run Stash2Plex from one of its tasks in Stash.")
    if str(mode) in INTERNAL:
        return Route("internal", str(mode))
    if str(mode) not in TASKS:
        known = ", ".join(TASKS)
        raise UnknownMode(f"Unknown task mode {str(mode)!r}. Known modes: {known}.")
    return Route("task", str(mode))


def task_handler(mode: str) -> Callable[..., Any]:
    """Import and return the handler for a task (or internal) mode."""
    target = INTERNAL[mode] if mode in INTERNAL else TASKS[mode][1]
    module_name, func_name = target.split(":")
    return getattr(importlib.import_module(module_name), func_name)
