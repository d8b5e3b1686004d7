"""Our tables in ``stash2plex.db``, their version, and the migrations that move them forward.

Standard library only: the hook fast path creates the schema when it is the first to touch a
new database. persist-queue creates its own table (``ack_queue_jobs``) when ``JobQueue``
opens it; we never change that table's shape, only read and write its rows in its format.

Tables (version 9):

* ``meta(key, value)``: ``schema_version``.
* ``inbox``: events appended by hooks, drained by ``JobQueue.ingest``.
* ``schedule``: one row per live job, keyed by the persist-queue row id; holds what SQL needs
  to decide due-ness (scene, attempts, next_retry_at, last error) plus the "event arrived
  while in flight" flag. ``scene_id`` is UNIQUE: one live job per scene by construction.
* ``ledger``: what was last written to Plex per scene.
* ``dlq``: dead letters, one per scene.
* ``fanout``: performer/studio/tag events waiting for a processor to expand them.
* ``counters`` (v2): skip and merge counts for status reports.
* v3: ``schedule.taken_at`` is NULL exactly while a job is ready, so the partial index
  ``schedule_ready`` holds ready jobs only and the next due job is its first entry (one
  index look-up, however many jobs are in flight); ``schedule.state_hash`` and
  ``dlq.state_hash`` remember the Stash state a bulk or reconcile pass queued the job for,
  so an unchanged dead-lettered scene is not re-queued by every pass.
* v4: ``ledger_plex_key`` indexes the ledger by Plex item, so a sync asks in one look-up
  whether another scene already holds its item.
* v5: ``watch_plays``, one row per Plex play the watch-history import has dealt with (its
  idempotent key, the scene or NULL when no scene matched, its time); ``watch_cursor``, per
  account scope, where the import continues and what its last run did. Both are written in
  one transaction per page, so the keys and the cursor can never disagree.
* v6: ``collections``, the Plex collections this plugin created (per section, kind and Stash
  id), what they should show and what we last wrote to them (``sync_queue.collections``).
* v7: ``collections.past``, the names a collection of ours had before its renames, so an
  item or a collection left under one of them is still known as ours.
* v8: ``schedule.started_at``, set when the processor starts an in-flight job's attempt (NULL
  while a taken batch's job waits its turn), so a processor killed mid-batch charges an
  attempt only to the jobs it had started. Jobs in flight at the upgrade count as started.
* v9: ``locks_in_flight``, per scene, the Plex item and the locks a write may set on it,
  recorded before the write goes out and cleared with the ledger row that records it
  (``sync_queue.ledger``): a process killed after Plex took an edit but before its ledger row
  was written still knows the locks that edit set as its own, not a person's.

A migration is a function of a connection inside a write transaction; ``migrate`` runs the
missing ones in order and bumps ``schema_version`` in the same transaction, so a crash leaves
the database at the old or the new version, never between. Add migrations at the end; never
edit one that has shipped.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence

from sync_queue.db import write_txn

Migration = Callable[[sqlite3.Connection], None]


def _v1_core(conn: sqlite3.Connection) -> None:
    for statement in (
        "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        """CREATE TABLE IF NOT EXISTS inbox (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            kind TEXT NOT NULL,
            entity_id INTEGER NOT NULL,
            reason TEXT NOT NULL,
            payload TEXT,
            created_at REAL NOT NULL)""",
        """CREATE TABLE IF NOT EXISTS schedule (
            job_id INTEGER PRIMARY KEY,
            scene_id INTEGER NOT NULL UNIQUE,
            reasons TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_retry_at REAL NOT NULL,
            last_error_class TEXT,
            last_error TEXT,
            enqueued_at REAL NOT NULL,
            first_failed_at REAL,
            taken_at REAL,
            rerun INTEGER NOT NULL DEFAULT 0,
            rerun_reasons TEXT)""",
        "CREATE INDEX IF NOT EXISTS schedule_due ON schedule (next_retry_at, job_id)",
        """CREATE TABLE IF NOT EXISTS ledger (
            scene_id INTEGER PRIMARY KEY,
            fields_hash TEXT NOT NULL,
            plex_key TEXT,
            poster_hash TEXT,
            art_hash TEXT,
            written TEXT NOT NULL,
            synced_at REAL NOT NULL,
            lost INTEGER NOT NULL DEFAULT 0)""",
        """CREATE TABLE IF NOT EXISTS dlq (
            scene_id INTEGER PRIMARY KEY,
            error_class TEXT NOT NULL,
            message TEXT NOT NULL,
            detail TEXT,
            attempts INTEGER NOT NULL,
            reasons TEXT NOT NULL,
            first_failed_at REAL NOT NULL,
            last_failed_at REAL NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS dlq_class ON dlq (error_class)",
        "CREATE INDEX IF NOT EXISTS dlq_last ON dlq (last_failed_at)",
        """CREATE TABLE IF NOT EXISTS fanout (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            kind TEXT NOT NULL,
            entity_id INTEGER NOT NULL,
            reasons TEXT NOT NULL,
            payload TEXT,
            created_at REAL NOT NULL,
            UNIQUE (kind, entity_id))""",
    ):
        conn.execute(statement)


def _v2_counters(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)")


def _v3_ready_index(conn: sqlite3.Connection) -> None:
    conn.execute("ALTER TABLE schedule ADD COLUMN state_hash TEXT")
    conn.execute("ALTER TABLE dlq ADD COLUMN state_hash TEXT")
    # Before v3, retry_later left taken_at set on a ready row; v3 makes NULL mean ready.
    has_pq = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'ack_queue_jobs'").fetchone()
    if has_pq:
        conn.execute(
            "UPDATE schedule SET taken_at = NULL "
            "WHERE job_id IN (SELECT _id FROM ack_queue_jobs WHERE status < 2)"
        )
    conn.execute("DROP INDEX IF EXISTS schedule_due")
    conn.execute("CREATE INDEX IF NOT EXISTS schedule_ready ON schedule (next_retry_at, job_id) WHERE taken_at IS NULL")


def _v4_ledger_by_item(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE INDEX IF NOT EXISTS ledger_plex_key ON ledger (plex_key)")


def _v5_watch_history(conn: sqlite3.Connection) -> None:
    conn.execute("""CREATE TABLE IF NOT EXISTS watch_plays (
        play_key TEXT PRIMARY KEY,
        scene_id INTEGER,
        rating_key TEXT,
        account_id INTEGER,
        viewed_at INTEGER NOT NULL,
        outcome TEXT NOT NULL,
        recorded_at REAL NOT NULL)""")
    conn.execute("CREATE INDEX IF NOT EXISTS watch_plays_scene ON watch_plays (scene_id, viewed_at)")
    conn.execute("""CREATE TABLE IF NOT EXISTS watch_cursor (
        scope TEXT PRIMARY KEY,
        viewed_at INTEGER NOT NULL,
        resume_at INTEGER,
        updated_at REAL NOT NULL,
        last_run TEXT)""")


def _v6_collections(conn: sqlite3.Connection) -> None:
    conn.execute("""CREATE TABLE IF NOT EXISTS collections (
        section TEXT NOT NULL,
        kind TEXT NOT NULL,
        source_id TEXT NOT NULL,
        title TEXT NOT NULL,
        rating_key TEXT,
        wanted TEXT NOT NULL,
        written TEXT NOT NULL,
        dirty INTEGER NOT NULL DEFAULT 1,
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        updated_at REAL NOT NULL,
        PRIMARY KEY (section, kind, source_id))""")


def _v7_collection_past_names(conn: sqlite3.Connection) -> None:
    columns = {row[1] for row in conn.execute("PRAGMA table_info(collections)")}
    if "past" not in columns:  # v6's CREATE IF NOT EXISTS kept a table that already has it
        conn.execute("ALTER TABLE collections ADD COLUMN past TEXT NOT NULL DEFAULT '[]'")


def _v8_started(conn: sqlite3.Connection) -> None:
    if "started_at" not in {row[1] for row in conn.execute("PRAGMA table_info(schedule)")}:
        conn.execute("ALTER TABLE schedule ADD COLUMN started_at REAL")  # a stepped-back test database has it
    conn.execute("UPDATE schedule SET started_at = taken_at WHERE taken_at IS NOT NULL")


def _v9_locks_in_flight(conn: sqlite3.Connection) -> None:
    conn.execute("""CREATE TABLE IF NOT EXISTS locks_in_flight (
        scene_id INTEGER PRIMARY KEY,
        plex_key TEXT NOT NULL,
        locks TEXT NOT NULL,
        noted_at REAL NOT NULL)""")


#: Ordered: MIGRATIONS[i] takes the database from version i to version i + 1.
MIGRATIONS: tuple[Migration, ...] = (_v1_core, _v2_counters, _v3_ready_index, _v4_ledger_by_item, _v5_watch_history,
                                  _v6_collections, _v7_collection_past_names, _v8_started, _v9_locks_in_flight)
SCHEMA_VERSION = len(MIGRATIONS)


class SchemaTooNew(RuntimeError):
    """The database was written by a newer Stash2Plex; refusing beats corrupting it."""


def current_version(conn: sqlite3.Connection) -> int:
    """0 for a database without our tables."""
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return 0
        raise
    return int(row[0]) if row else 0


def migrate(conn: sqlite3.Connection, migrations: Sequence[Migration] = MIGRATIONS) -> int:
    """Bring the database to ``len(migrations)`` in place; return the version it ended at.

    Safe when many processes open a new database at once: the version is re-read inside the
    write transaction, so each migration runs exactly once.
    """
    target = len(migrations)
    version = current_version(conn)
    if version == target:
        return version
    if version > target:
        raise SchemaTooNew(f"stash2plex.db is at schema {version}; this version understands up to {target}.")
    with write_txn(conn):
        version = current_version(conn)
        for index in range(version, target):
            migrations[index](conn)
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('schema_version', ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (str(index + 1),),
            )
        return max(version, target)


def ensure_schema(conn: sqlite3.Connection) -> int:
    """The one entry every opener calls."""
    return migrate(conn, MIGRATIONS)
