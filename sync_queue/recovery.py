"""Finding a damaged ``stash2plex.db`` and putting a fresh one in its place.

A database can be cut short (a full disk during a copy, a bad restore), overwritten with
something else, or written by a newer Stash2Plex the user has since rolled back from. None
of that can be repaired here, and a plugin that stops working until someone opens a SQLite
shell is worse than one that starts over: the queue, ledger and dead letters can all be
rebuilt from Stash and Plex by a Reconcile. So the damaged file is moved aside (kept, with
a timestamp, for anyone who wants to look) and a fresh database takes its place.

``check_database`` runs before a task or the worker opens the queue, holding the processor
lock while it replaces. It costs one open and a `quick_check` (about 25 ms on a
100,000-scene ledger) and never runs on the hook path (a hook that meets a damaged database
spools its event; see ``sync_queue.spool``). Standard library only, but for the processor
lock (filelock) the check holds.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

from sync_queue.db import DB_FILE, connect, db_path, error_code, write_txn
from sync_queue.inbox import INSERT_EVENT
from sync_queue.schema import SCHEMA_VERSION, current_version, ensure_schema
from sync_queue.state import LOCKS_FORGOTTEN, StateStore

QUARANTINE_MARK = ".damaged-"
_SIDE_FILES = ("-wal", "-shm")
_DAMAGE_CODES = ("SQLITE_CORRUPT", "SQLITE_NOTADB")
RECONCILE = "Reconcile All"
#: How a task holds the processor: it asks a running worker to hand over (the entry passes
#: ``worker.handover.processor``, which this layer may not import).
TakeOver = Callable[[Path], AbstractContextManager[Any]]


def is_damage(exc: BaseException) -> bool:
    """SQLite's word for a file that is not (or no longer) a sound database."""
    return isinstance(exc, sqlite3.DatabaseError) and error_code(exc).startswith(_DAMAGE_CODES)


def damage(data_dir: Path) -> str | None:
    """What is wrong with the database, or None if it is sound (or does not exist yet).

    Errors that are not damage (locked, read-only, full) are raised: moving a sound file
    aside because another program held it would throw away a good queue.
    """
    if not db_path(data_dir).exists():
        return None
    try:
        conn = connect(Path(data_dir))
    except sqlite3.DatabaseError as exc:
        if is_damage(exc):
            return str(exc)
        raise
    try:
        try:
            version = current_version(conn)
        except ValueError:
            return "its schema version is not a number"
        if version > SCHEMA_VERSION:
            return f"it was written by a newer Stash2Plex (schema {version}; this one knows up to {SCHEMA_VERSION})"
        rows = conn.execute("PRAGMA quick_check(1)").fetchall()
        if rows != [("ok",)]:
            return f"integrity check: {rows[0][0] if rows else 'no answer'}"
    except sqlite3.DatabaseError as exc:
        if is_damage(exc):
            return str(exc)
        raise
    finally:
        conn.close()
    return None


def quarantine_name(now: float) -> str:
    return f"{DB_FILE}{QUARANTINE_MARK}{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(now))}"


def salvage_inbox(data_dir: Path) -> list[tuple[object, ...]]:
    """Hook events still readable in the damaged file (none, if it cannot be read at all).

    A newer Stash2Plex's database, or one damaged elsewhere, may still hold events hooks
    recorded since the last drain; they are the one thing a Reconcile may not find again
    (a deleted scene, a merged tag), so they move with us into the fresh database.
    """
    try:
        conn = sqlite3.connect(f"file:{db_path(data_dir)}?mode=ro", uri=True, timeout=1.0)
    except sqlite3.Error:
        return []
    try:
        return conn.execute("SELECT kind, entity_id, reason, payload, created_at FROM inbox ORDER BY id").fetchall()
    except sqlite3.Error:
        return []
    finally:
        conn.close()


def replace_damaged(data_dir: Path, now: float) -> Path:
    """Move the database (and its -wal/-shm) aside under a timestamped name, create a fresh
    one holding the hook events that could be read back, and return where the damaged file
    went. The fresh one says the plugin no longer knows which Plex locks it set
    (``LOCKS_FORGOTTEN``): without that, every field it had locked would look like a
    person's decision and never follow Stash again."""
    events = salvage_inbox(data_dir)
    source = db_path(data_dir)
    target = Path(data_dir) / quarantine_name(now)
    n = 1
    while target.exists():
        n += 1
        target = Path(data_dir) / f"{quarantine_name(now)}-{n}"
    source.replace(target)
    for suffix in _SIDE_FILES:
        side = source.with_name(source.name + suffix)
        if side.exists():
            side.replace(target.with_name(target.name + suffix))
    conn = connect(Path(data_dir))
    try:
        ensure_schema(conn)
        with write_txn(conn) as txn:
            txn.executemany(INSERT_EVENT, events)
    finally:
        conn.close()
    with StateStore(Path(data_dir)) as state:
        state.put(LOCKS_FORGOTTEN, repr(now))
    return target


def notice(found: str, moved: Path) -> str:
    """The one line the user reads: what happened, where the old file is, what to run."""
    return (f"stash2plex.db was damaged ({found}) and was moved aside to {moved}; a fresh database "
            f"took its place. Run {RECONCILE} to rebuild what was queued and synced.")


def check_database(folder: Path, now: float, take_over: TakeOver | None = None) -> str | None:
    """Replace a damaged database; the notice to log, or None when it was sound.

    A task passes ``take_over`` to have a running worker hand over first; the worker itself
    never waits for the lock here: whoever holds it checks on its own start.
    """
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
def _processor(folder: Path, take_over: TakeOver | None) -> Iterator[bool]:
    """Hold the processor lock; yields False when the worker finds it taken."""
    from sync_queue.lock import ProcessorLock

    if callable(take_over):
        with take_over(folder):
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
