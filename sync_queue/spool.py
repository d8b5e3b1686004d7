"""Where a hook puts its event when ``stash2plex.db`` cannot take it in time.

Stash's save waits for the hook, so a database locked by another program (a backup, a
database browser, a long transaction) must not hold the user up for more than about a
second, and the event must not be lost either. The hook then writes the event as one small
JSON file in ``<data_dir>/spool/``: written to a ``.tmp`` name, flushed, and renamed, so a
file with the final ``.json`` name is always complete and a killed hook leaves at most a
``.tmp`` the absorber ignores.

The processor (holding the processor lock) moves spooled events into the inbox before every
ingest, exactly once: the inbox rows and the list of file names they came from commit in
one transaction (the names under ``meta`` key ``spool.absorbed``); the files are deleted
after that commit and the list cleared last. A processor killed in between finds the list on
its next start and deletes those files without inserting them again. File names start with
the event's time in microseconds, so events enter the inbox in the order they happened.

Standard library only: the hook fast path imports this.
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import Any

from sync_queue.db import write_txn
from sync_queue.inbox import INSERT_EVENT, record_event

SPOOL_DIR = "spool"
ABSORBED_KEY = "spool.absorbed"
#: How long a hook lets SQLite wait for the write lock before it spools instead.
HOOK_WAIT = 0.5
BATCH = 500
#: A hook writes its file in milliseconds; a ``.tmp`` this old belongs to no live hook.
STALE_TMP = 3600.0


def spool_dir(data_dir: Path) -> Path:
    return Path(data_dir) / SPOOL_DIR


def spool_event(data_dir: Path, kind: str, entity_id: int, reason: str, now: float,
                payload: dict[str, Any] | None = None) -> Path:
    """Write one event file atomically; raises OSError (and leaves nothing) if it cannot."""
    folder = spool_dir(data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{max(0, int(now * 1_000_000)):020d}-{os.getpid()}-{os.urandom(4).hex()}"
    tmp, final = folder / f"{name}.tmp", folder / f"{name}.json"
    record = {"kind": kind, "entity_id": int(entity_id), "reason": str(reason), "payload": payload,
              "created_at": float(now)}
    try:
        with open(tmp, "x", encoding="utf-8") as handle:
            handle.write(json.dumps(record))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, final)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
    return final


def spooled(data_dir: Path) -> list[Path]:
    """Complete spool files, oldest event first."""
    try:
        return sorted(spool_dir(data_dir).glob("*.json"))
    except OSError:
        return []


def has_spooled(data_dir: Path) -> bool:
    folder = spool_dir(data_dir)
    return folder.is_dir() and any(folder.glob("*.json"))


def absorb(conn: sqlite3.Connection, data_dir: Path, now: float, batch: int = BATCH) -> int:
    """Move every spooled event into the inbox exactly once; how many were moved.

    Only the processor-lock holder may call it. A file that is not a valid event (never
    written by a hook) is renamed to ``.bad`` and left for a person to look at; a ``.tmp``
    older than ``STALE_TMP`` was left by a hook killed while writing it, and is deleted.
    """
    _forget_absorbed(conn, data_dir)
    _drop_stale_tmp(data_dir, now)
    moved = 0
    while True:
        files = spooled(data_dir)[:batch]
        if not files:
            return moved
        rows, names = [], []
        for path in files:
            row = _row(path)
            if row is None:
                path.replace(path.with_suffix(".bad"))
                continue
            rows.append(row)
            names.append(path.name)
        with write_txn(conn) as txn:
            txn.executemany(INSERT_EVENT, rows)
            txn.execute("INSERT INTO meta (key, value) VALUES (?, ?) "
                        "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (ABSORBED_KEY, json.dumps(names)))
        moved += len(rows)
        _forget_absorbed(conn, data_dir)


def _drop_stale_tmp(data_dir: Path, now: float) -> None:
    folder = spool_dir(data_dir)
    if not folder.is_dir():
        return
    for path in folder.glob("*.tmp"):
        try:
            if now - path.stat().st_mtime > STALE_TMP:
                path.unlink()
        except OSError:
            pass  # gone meanwhile


def _forget_absorbed(conn: sqlite3.Connection, data_dir: Path) -> None:
    """Delete the files whose events already reached the inbox, then the list naming them."""
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (ABSORBED_KEY,)).fetchone()
    if row is None:
        return
    for name in json.loads(row[0]):
        (spool_dir(data_dir) / name).unlink(missing_ok=True)
    with write_txn(conn) as txn:
        txn.execute("DELETE FROM meta WHERE key = ?", (ABSORBED_KEY,))


def _row(path: Path) -> tuple[str, int, str, str | None, float] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        payload = data.get("payload")
        return (str(data["kind"]), int(data["entity_id"]), str(data["reason"]),
                json.dumps(payload) if payload is not None else None, float(data["created_at"]))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def record_or_spool(data_dir: Path, kind: str, entity_id: int, reason: str, now: float,
                    payload: dict[str, Any] | None = None, wait: float = HOOK_WAIT) -> sqlite3.Error | None:
    """The hook's way to record: the inbox if it answers within ``wait``, else the spool.

    Returns None when the event is in the inbox, or the database error that sent it to the
    spool. Raises OSError when the spool cannot be written either (a read-only folder, a
    full disk); the database error is then the OSError's ``__context__``.
    """
    try:
        record_event(data_dir, kind, entity_id, reason, now, payload=payload, wait=wait)
        return None
    except sqlite3.Error as exc:
        spool_event(data_dir, kind, entity_id, reason, now, payload)
        return exc
