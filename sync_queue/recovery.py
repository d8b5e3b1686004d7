"""Finding a damaged ``stash2plex.db`` and putting a fresh one in its place.

A database can be cut short (a full disk during a copy, a bad restore), overwritten with
something else, or written by a newer Stash2Plex the user has since rolled back from. None
of that can be repaired here, and a plugin that stops working until someone opens a SQLite
shell is worse than one that starts over: the queue, ledger and dead letters can all be
rebuilt from Stash and Plex by a Reconcile. So the damaged file is moved aside (kept, with
a timestamp, for anyone who wants to look) and a fresh database takes its place.

Callers hold the processor lock while replacing (see ``plugin.db_check``). Standard library
only.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from sync_queue.db import DB_FILE, connect, db_path, error_code, write_txn
from sync_queue.schema import SCHEMA_VERSION, current_version, ensure_schema
from sync_queue.state import LOCKS_FORGOTTEN, StateStore

QUARANTINE_MARK = ".damaged-"
_SIDE_FILES = ("-wal", "-shm")
_DAMAGE_CODES = ("SQLITE_CORRUPT", "SQLITE_NOTADB")
_INSERT_EVENT = "INSERT INTO inbox (kind, entity_id, reason, payload, created_at) VALUES (?, ?, ?, ?, ?)"


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
            txn.executemany(_INSERT_EVENT, events)
    finally:
        conn.close()
    with StateStore(Path(data_dir)) as state:
        state.put(LOCKS_FORGOTTEN, repr(now))
    return target
