"""Connections to ``stash2plex.db`` and the one retry loop around "database is locked".

Standard library and `base.backoff` only: the hook fast path uses this.

Every connection runs in WAL mode with a 30 s busy timeout, so readers never wait for the
writer and writers queue up inside SQLite. Our connections are in autocommit mode and open
write transactions with ``BEGIN IMMEDIATE``: a deferred transaction that upgrades from read to
write gets SQLITE_BUSY at once, without the busy handler, which is where "database is locked"
comes from even with a generous timeout. What still slips through (a checkpoint, a WAL reset
under heavy load) is retried with backoff by ``retry_locked``, so it never reaches the user.
"""

from __future__ import annotations

import random
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from base.backoff import LOCK_BACKOFF, LOCK_RETRIES, RandomSource, delay

DB_FILE = "stash2plex.db"
BUSY_TIMEOUT_S = 30.0
#: This module's own random source: a lock retry never draws from (or reseeds) the global one.
_RNG = random.Random()
WAL_LIMIT_BYTES = 4 * 1024 * 1024

T = TypeVar("T")


def db_path(data_dir: Path) -> Path:
    return Path(data_dir) / DB_FILE


def connect(data_dir: Path, busy_timeout: float = BUSY_TIMEOUT_S, retries: int = LOCK_RETRIES) -> sqlite3.Connection:
    """Open our own connection: autocommit (we say BEGIN ourselves), WAL, long busy timeout.

    A hook passes a short ``busy_timeout`` and ``retries=1``: Stash's save waits for it, so
    a database held by another program must make it give up quickly, not queue up inside
    SQLite for minutes.

    ``synchronous=NORMAL`` is safe in WAL mode against a crashed or killed process (the case
    that matters for a plugin Stash SIGKILLs); only a power cut can lose the last commits.
    """
    conn = sqlite3.connect(str(db_path(data_dir)), timeout=busy_timeout, isolation_level=None)
    try:
        _configure(conn, busy_timeout, retries)
    except BaseException:
        conn.close()
        raise
    return conn


def _configure(conn: sqlite3.Connection, busy_timeout: float, retries: int) -> None:
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
    # Takes effect only on a database without tables, and must come before the first write
    # (switching to WAL writes the header). Lets compaction give pages back to the OS. Only on
    # an empty file: on an existing one the pragma is a write transaction of its own (a
    # header update, fsynced), which cost every hook ~7 ms and one more turn at the write lock.
    if conn.execute("PRAGMA page_count").fetchone()[0] == 0:
        conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
    retry_locked(lambda: conn.execute("PRAGMA journal_mode = WAL"), retries)
    conn.execute("PRAGMA synchronous = NORMAL")
    # A 100,000-scene Sync All commits large transactions; without a limit the -wal file keeps
    # its high-water size for good after the checkpoint.
    conn.execute(f"PRAGMA journal_size_limit = {WAL_LIMIT_BYTES}")


#: SQLite's messages for the result codes we act on, for Python 3.10, whose sqlite3 errors
#: carry no ``sqlite_errorname``.
_CODE_BY_TEXT = (
    ("database is locked", "SQLITE_BUSY"),
    ("database table is locked", "SQLITE_LOCKED"),
    ("file is not a database", "SQLITE_NOTADB"),
    ("database disk image is malformed", "SQLITE_CORRUPT"),
    ("attempt to write a readonly database", "SQLITE_READONLY"),
    ("database or disk is full", "SQLITE_FULL"),
    ("unable to open database file", "SQLITE_CANTOPEN"),
    ("disk i/o error", "SQLITE_IOERR"),
)


def error_code(exc: BaseException) -> str:
    """SQLite's result code name for a sqlite3 error ("SQLITE_BUSY", ...), or "" for others."""
    if not isinstance(exc, sqlite3.Error):
        return ""
    name = getattr(exc, "sqlite_errorname", None)
    if name:
        return str(name)
    text = str(exc).lower()
    return next((code for message, code in _CODE_BY_TEXT if message in text), "")


def named(conn: sqlite3.Connection) -> sqlite3.Cursor:
    """A cursor on `conn` whose rows read by column name (`row["scene_id"]`) as well as by
    position; the connection's other cursors keep plain tuples."""
    cursor = conn.cursor()
    cursor.row_factory = sqlite3.Row
    return cursor


def is_lock_error(exc: BaseException) -> bool:
    """SQLite reports contention as OperationalError with 'locked' or 'busy' in the text."""
    if not isinstance(exc, sqlite3.OperationalError):
        return False
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def retry_locked(
    action: Callable[[], T],
    retries: int = LOCK_RETRIES,
    sleep: Callable[[float], None] = time.sleep,
    rng: RandomSource = _RNG,
) -> T:
    """Run ``action``; on a lock error wait (exponential, jittered for contention) and rerun it.

    Jitter is right here, unlike in a retry policy for an unreachable server: the other side
    is our own processes, and spreading them out is what lets them through.
    """
    for attempt in range(retries):
        try:
            return action()
        except sqlite3.OperationalError as exc:
            if not is_lock_error(exc) or attempt == retries - 1:
                raise
            sleep(delay(LOCK_BACKOFF, attempt + 1, rng))
    raise AssertionError("unreachable")


@contextmanager
def write_txn(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A write transaction that holds the write lock from its first statement."""
    retry_locked(lambda: conn.execute("BEGIN IMMEDIATE"))
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    else:
        retry_locked(lambda: conn.execute("COMMIT"))
