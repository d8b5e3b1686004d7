"""Before a task or the worker opens the queue: is ``stash2plex.db`` sound?

A damaged database would otherwise fail every task with a SQLite error and stop the worker
for good. The check costs one open and a `quick_check` (about 25 ms on a 100,000-scene
ledger), so it runs wherever the queue is about to be opened, never on the hook path (a hook
that meets a damaged database spools its event; see ``sync_queue.spool``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

RECONCILE = "Reconcile All"
TAKEOVER_TIMEOUT = 60.0


def notice(found: str, moved: Path) -> str:
    """The one line the user reads: what happened, where the old file is, what to run."""
    return (f"stash2plex.db was damaged ({found}) and was moved aside to {moved}; a fresh database "
            f"took its place. Run {RECONCILE} to rebuild what was queued and synced.")


def check_database(folder: Path, now: float, take_over: bool) -> str | None:
    """Replace a damaged database; the notice to log, or None when it was sound.

    A task (``take_over``) asks a running worker to hand over first; the worker itself
    never waits for the lock here: whoever holds it checks on its own start.
    """
    from sync_queue.recovery import damage, replace_damaged

    try:
        found = damage(folder)
    except sqlite3.Error:
        return None  # not damage (read-only, locked, full): the task meets it and says so
    if found is None:
        return None
    with _processor(folder, take_over) as held:
        if not held:
            return None
        found = damage(folder)  # another process may have replaced it while we waited
        if found is None:
            return None
        moved = replace_damaged(folder, now)
    return notice(found, moved)


@contextmanager
def _processor(folder: Path, take_over: bool) -> Iterator[bool]:
    """Hold the processor lock; yields False when the worker finds it taken."""
    from sync_queue.lock import ProcessorLock

    if take_over:
        from worker.handover import processor

        with processor(folder, timeout=TAKEOVER_TIMEOUT):
            yield True
        return
    lock = ProcessorLock(folder)
    if not lock.try_acquire():
        yield False
        return
    try:
        yield True
    finally:
        lock.release()
