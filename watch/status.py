"""What Queue Status and Health Check say about the watch-history import.

`read_facts` reads the last import's cursor without creating or migrating anything (Health
Check must not write); `status_lines` and `watch_check` are pure.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sync_queue import watch_log
from sync_queue.db import db_path


@dataclass(frozen=True)
class WatchFacts:
    enabled: bool
    account_setting: str = ""
    last_at: float | None = None  # when the last import finished (epoch s)
    scope: str | None = None
    cursor: int | None = None  # plays up to this Plex time are imported
    resume_cursor: int | None = None
    last_run: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"enabled": self.enabled, "last_import": self.last_at, "scope": self.scope, "cursor": self.cursor,
                "resume_cursor": self.resume_cursor, "last_run": self.last_run}


def read_facts(data_dir: Path, enabled: bool, account_setting: str = "") -> WatchFacts:
    path = db_path(data_dir)
    if not path.exists():
        return WatchFacts(enabled, account_setting)
    try:
        conn = sqlite3.connect(f"file:{path.as_posix()}?mode=ro", uri=True, timeout=5.0)
        try:
            last = watch_log.latest(conn)
        finally:
            conn.close()
    except sqlite3.Error as exc:  # no watch tables yet (an older schema) reads as "never ran"
        return WatchFacts(enabled, account_setting, error=None if "no such table" in str(exc) else str(exc))
    if last is None:
        return WatchFacts(enabled, account_setting)
    return WatchFacts(enabled, account_setting, last.updated_at, str(last.last_run.get("scope") or last.scope),
                      last.viewed_at, last.resume_at, last.last_run)


def facts_for(ctx: Any) -> WatchFacts:
    """The facts for a task that reads settings only for this: Queue Status works without
    Stash's answer, so an unreadable setting reads as "off" rather than failing the task."""
    from base.errors import Stash2PlexError

    try:
        enabled, account = ctx.settings.import_watch_history, ctx.settings.watch_history_account
    except Stash2PlexError:
        enabled, account = False, ""
    return read_facts(ctx.data_dir, enabled, account)


def describe_last(f: WatchFacts, absolute: Any) -> str:
    """One sentence on the last import; `absolute` formats an epoch as UTC text."""
    if f.last_at is None:
        return "no import yet"
    run = f.last_run
    cursor = absolute(f.cursor) if f.cursor else "none yet"
    return (f"last import {absolute(f.last_at)} for {f.scope}: {run.get('added', 0)} plays added, "
            f"{run.get('in_stash', 0)} already in Stash, {run.get('no_scene', 0)} with no Stash scene, "
            f"{run.get('resumes_set', 0) + run.get('resumes_cleared', 0)} resume points; "
            f"cursor: Plex plays up to {cursor}")


def status_lines(f: WatchFacts, absolute: Any) -> list[str]:
    """Queue Status's lines."""
    state = "on" if f.enabled else "off"
    whose = f.account_setting or "the Plex token's account"
    return [f"Watch history import: {state} ({whose}); {describe_last(f, absolute)}."]
