"""The schedule table and persist-queue's row beside it: one live job, in two rows.

A *live job* is one row in persist-queue's table ``ack_queue_jobs`` with status ready
(``STATUS_INITED``/``STATUS_READY``) or in flight (``STATUS_IN_FLIGHT``), plus one row in our
``schedule`` table with the same id. The persist-queue row carries the payload, an envelope
``{"v": 1, "scene_id": S}``; the schedule row carries what SQL must see: scene, reasons,
attempts, ``next_retry_at``, last error. The envelope may also carry ``listed``: the scene
as a listing pass (Sync All, reconcile) read it from Stash, so the drain need not read it
again; every event merged into the job rewrites it (a hook, which read nothing, removes
it), so it is never older than the job's newest event. ``schedule.scene_id`` is UNIQUE, so
one live job per scene holds by construction. ``schedule.taken_at`` is NULL exactly while the job is ready;
every transition writes it together with persist-queue's status, and the selection checks
both.

This module holds the names (statuses, rerun marks), the record (``Job``), the selection
SQL, the pure rules for merging events into a job, and the row helpers the queue's
transitions are built from. The helpers take a connection and never commit: the caller
(``JobQueue``) owns the transaction, so a transition that writes both rows is one commit.

How persist-queue's pitfalls are designed around
================================================

* *No delayed visibility; a nacked row comes straight back at the head*: we never use
  ``get()``'s FIFO to choose. Selection is our indexed query on ``schedule``.
* *auto_resume resets rows another process is working on*: the queue is always opened with
  ``auto_resume=False``; hooks never open it at all (they write the inbox). In-flight rows
  come back only through ``recover_abandoned``, called by the lock holder at start-up.
* *get(id=) hands out acked rows*: we never call it. A job is marked in flight by
  ``UPDATE ... SET status = <in flight> WHERE _id = ? AND status < <in flight>`` in the same
  transaction that chose it, which cannot touch an acked or failed row.
* *Size counters drift*: ``qsize``/``size``/``len`` are never read; counts are SQL.
* *Payload keys can collide with its internals*: ``ack(item)`` treats any dict with a
  ``pqid`` key as a raw record. We never pass items, only ``id=``, and the payload is our
  envelope, never a caller's dict spread at top level.
* *Multi-process use is unsupported*: one processor (the lock); hooks append to our inbox.
* *Each persist-queue method commits on its own connection*: a transition that changes its
  row and our schedule row would have a crash window between two commits. So every
  transition is one transaction on our connection that writes both rows, using
  persist-queue's own row format and status codes. A crash leaves the state before or after
  the transition, never between; there is no ordering to get right and nothing to repair.
* *Acked rows are never removed*: ``JobQueue.compact`` removes them (``sync_queue.compaction``).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any

from persistqueue.serializers import json as pq_json

from sync_queue import counters
from sync_queue.db import named

PQ_NAME = "jobs"
PQ_TABLE = f"ack_queue_{PQ_NAME}"
ENVELOPE_VERSION = 1

# persist-queue's AckStatus values (persistqueue.sqlackqueue.AckStatus), as its rows hold them.
STATUS_INITED = 0  # what put() writes
STATUS_READY = 1  # nacked back: ready again
STATUS_IN_FLIGHT = 2  # "unack": handed out, not finished
STATUS_ACKED = 5
STATUS_ACK_FAILED = 9
READY_STATES = (STATUS_INITED, STATUS_READY)

# schedule.rerun: what an event that arrived during the flight asks for.
RERUN_NONE = 0
RERUN_KEEP_SCHEDULE = 1  # a bulk/reconcile event: run again, but never earlier than planned
RERUN_NOW = 2  # a hook event: the user changed something, run again as soon as possible

MAX_REASONS = 16


class EnqueueOutcome(str, Enum):
    CREATED = "created"
    MERGED = "merged"
    DEFERRED_BEHIND_INFLIGHT = "deferred_behind_inflight"


class JobNotInFlight(RuntimeError):
    """complete/retry_later/dead_letter got a job that is not in flight (a caller bug)."""


@dataclass(frozen=True)
class Job:
    """A plain record of a live job; no persist-queue object leaks out.

    ``attempts`` counts failed attempts before this one. ``last_error_class`` is one of the
    error class names defined by the worker's policy, stored as text.
    """

    job_id: int
    scene_id: int
    reasons: tuple[str, ...]
    attempts: int
    next_retry_at: float
    last_error_class: str | None
    last_error: str | None
    enqueued_at: float
    first_failed_at: float | None = None
    #: The scene as the listing that queued the job read it (Stash's GraphQL answer), when
    #: one did and no event since: the drain checks it is still current instead of reading it.
    listed: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)


JOB_COLUMNS = (
    "s.job_id, s.scene_id, s.reasons, s.attempts, s.next_retry_at, s.last_error_class, s.last_error, "
    "s.enqueued_at, s.first_failed_at"
)
# ``s.taken_at IS NULL`` must appear literally for SQLite to use the partial index
# schedule_ready. CROSS JOIN pins the join order: the first index entry, then persist-queue's
# row by primary key as a second check that it is really ready.
READY = (f"FROM schedule AS s CROSS JOIN {PQ_TABLE} AS q "
         f"WHERE s.taken_at IS NULL AND q._id = s.job_id AND q.status < {STATUS_IN_FLIGHT}")
_TAKE = f"SELECT {JOB_COLUMNS}, q.data {READY} AND s.next_retry_at <= ? ORDER BY s.next_retry_at, s.job_id"
TAKE_SQL = f"{_TAKE} LIMIT 1"  # the earliest due job; the same index walk as the batch's
#: The due jobs of one drain batch, earliest first (``?``: due at or before, how many).
TAKE_BATCH_SQL = f"{_TAKE} LIMIT ?"
NEXT_DUE_SQL = f"SELECT s.next_retry_at {READY} ORDER BY s.next_retry_at, s.job_id LIMIT 1"
DEFERRED_SQL = f"SELECT {JOB_COLUMNS} {READY} AND s.next_retry_at > ? ORDER BY s.next_retry_at, s.job_id LIMIT ?"
#: Live jobs joined with their persist-queue row (ready or in flight), for the readers.
LIVE = f"FROM schedule AS s JOIN {PQ_TABLE} AS q ON q._id = s.job_id"


def job_from_row(row: sqlite3.Row) -> Job:
    return Job(row["job_id"], row["scene_id"], tuple(json.loads(row["reasons"])), row["attempts"],
               row["next_retry_at"], row["last_error_class"], row["last_error"], row["enqueued_at"],
               row["first_failed_at"])


# ---- pure decisions -------------------------------------------------------------------


def merge_reasons(existing: Sequence[str], new: Iterable[str], cap: int = MAX_REASONS) -> tuple[str, ...]:
    """Union in first-seen order, capped so a scene saved 10,000 times stays a small row."""
    merged = list(dict.fromkeys(existing))
    for reason in new:
        if reason not in merged:
            merged.append(reason)
    return tuple(merged[-cap:]) if len(merged) > cap else tuple(merged)


def merged_due_at(current: float, now: float, urgent: bool) -> float:
    """Due time after a new event merges into a ready job.

    A hook event (urgent) makes the job due now but keeps its attempt count: the user just
    changed the scene, which may be what the last attempt was missing, and a stream of saves
    still cannot keep a failing job alive past its attempt budget. A bulk or reconcile event
    keeps the existing schedule: it carries no news, and resetting backoff from a loop would
    let every pass over the library retry every failing scene at once (a retry storm).
    """
    return min(current, now) if urgent else current


def rerun_mark(current: int, urgent: bool) -> int:
    return max(current, RERUN_NOW if urgent else RERUN_KEEP_SCHEDULE)


def due_after_retry(backoff_until: float, rerun: int, now: float) -> float:
    """A failed job's next due time, given what arrived during its flight (same rule as merging)."""
    return merged_due_at(backoff_until, now, rerun == RERUN_NOW)


def envelope(scene_id: int, listed: Mapping[str, Any] | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {"v": ENVELOPE_VERSION, "scene_id": int(scene_id)}
    if listed is not None:
        data["listed"] = listed
    return data


def taken_job(row: sqlite3.Row) -> Job:
    """A job read with its payload (``TAKE_SQL``), the payload checked against the schedule."""
    job = job_from_row(row)
    data = pq_json.loads(row["data"])
    if envelope_scene(data) != job.scene_id:
        raise AssertionError(f"job {job.job_id}: payload and schedule disagree on the scene")
    listed = data.get("listed")
    return replace(job, listed=listed) if isinstance(listed, Mapping) else job


def envelope_scene(data: Any) -> int:
    """The scene id inside a persist-queue payload; raise on anything that is not our envelope."""
    if not isinstance(data, dict) or data.get("v") != ENVELOPE_VERSION or not isinstance(data.get("scene_id"), int):
        raise ValueError(f"not a Stash2Plex job envelope: {data!r}")
    return data["scene_id"]


# ---- row helpers (the caller owns the transaction) --------------------------------------


def set_status(conn: sqlite3.Connection, job_id: int, status: int) -> None:
    conn.execute(f"UPDATE {PQ_TABLE} SET status = ? WHERE _id = ?", (status, job_id))


def live_row(conn: sqlite3.Connection, scene_id: int) -> sqlite3.Row | None:
    """The scene's schedule row with its persist-queue ``status`` (None when that row is gone)."""
    return named(conn).execute(
        f"SELECT s.job_id, s.reasons, s.next_retry_at, s.rerun, s.rerun_reasons, q.status "
        f"FROM schedule AS s LEFT JOIN {PQ_TABLE} AS q ON q._id = s.job_id WHERE s.scene_id = ?",
        (scene_id,),
    ).fetchone()


def create(conn: sqlite3.Connection, scene_id: int, reasons: Sequence[str], now: float,
           state_hash: str | None, listed: Mapping[str, Any] | None = None) -> int:
    """Both rows of a new job, due now. The persist-queue row is the one its put() would
    write (serializer output, put time, ``STATUS_INITED``), written here so that it commits
    together with its schedule row."""
    job_id = conn.execute(
        f"INSERT INTO {PQ_TABLE} (data, timestamp, status) VALUES (?, ?, ?)",
        (pq_json.dumps(envelope(scene_id, listed)), now, STATUS_INITED),
    ).lastrowid
    assert job_id is not None
    conn.execute(
        "INSERT INTO schedule (job_id, scene_id, reasons, attempts, next_retry_at, enqueued_at, state_hash) "
        "VALUES (?, ?, ?, 0, ?, ?, ?)",
        (job_id, scene_id, json.dumps(merge_reasons((), reasons)), now, now, state_hash),
    )
    return job_id


def finish(conn: sqlite3.Connection, job_id: int, status: int) -> None:
    """The job is done (``STATUS_ACKED``) or given up (``STATUS_ACK_FAILED``): no longer live."""
    conn.execute("DELETE FROM schedule WHERE job_id = ?", (job_id,))
    set_status(conn, job_id, status)


def refresh(conn: sqlite3.Connection, job_id: int, reasons: Sequence[str], now: float) -> None:
    """Turn a finished flight into a fresh job for the event that arrived during it."""
    conn.execute(
        "UPDATE schedule SET reasons = ?, attempts = 0, next_retry_at = ?, last_error_class = NULL, "
        "last_error = NULL, first_failed_at = NULL, taken_at = NULL, rerun = ?, rerun_reasons = NULL, "
        "enqueued_at = ? WHERE job_id = ?",
        (json.dumps(merge_reasons((), reasons)), now, RERUN_NONE, now, job_id),
    )
    set_status(conn, job_id, STATUS_READY)


def enqueue(conn: sqlite3.Connection, scene_id: int, reasons: Sequence[str], now: float, urgent: bool,
            state_hash: str | None = None, listed: Mapping[str, Any] | None = None) -> EnqueueOutcome:
    """One live job per scene: create it, merge into the ready one, or mark the in-flight one
    to run again. ``state_hash`` is the Stash state the event saw, when the source knows it
    (bulk and reconcile); an event without one (a hook) means "changed to something unknown".
    ``listed`` is the scene that state was computed from; it replaces the job's (a hook's
    None included), so the next run never starts from a listing older than the event."""
    row = live_row(conn, scene_id)
    if row is not None and (row["status"] is None or row["status"] > STATUS_IN_FLIGHT):
        # A schedule row without a live persist-queue row cannot arise from our own
        # transitions; if someone edited the file, drop the husk rather than lose the event.
        conn.execute("DELETE FROM schedule WHERE job_id = ?", (row["job_id"],))
        row = None
    if row is None:
        create(conn, scene_id, reasons, now, state_hash, listed)
        return EnqueueOutcome.CREATED
    set_listed(conn, row["job_id"], scene_id, listed)
    if row["status"] == STATUS_IN_FLIGHT:
        earlier = json.loads(row["rerun_reasons"]) if row["rerun_reasons"] else ()
        conn.execute(
            "UPDATE schedule SET rerun = ?, rerun_reasons = ?, state_hash = ? WHERE job_id = ?",
            (rerun_mark(row["rerun"], urgent), json.dumps(merge_reasons(earlier, reasons)), state_hash,
             row["job_id"]),
        )
        counters.bump(conn, counters.MERGED_IN_FLIGHT)
        return EnqueueOutcome.DEFERRED_BEHIND_INFLIGHT
    conn.execute(
        "UPDATE schedule SET reasons = ?, next_retry_at = ?, state_hash = ? WHERE job_id = ?",
        (json.dumps(merge_reasons(json.loads(row["reasons"]), reasons)),
         merged_due_at(row["next_retry_at"], now, urgent), state_hash, row["job_id"]),
    )
    counters.bump(conn, counters.MERGED)
    return EnqueueOutcome.MERGED


def set_listed(conn: sqlite3.Connection, job_id: int, scene_id: int, listed: Mapping[str, Any] | None) -> None:
    conn.execute(f"UPDATE {PQ_TABLE} SET data = ? WHERE _id = ?", (pq_json.dumps(envelope(scene_id, listed)), job_id))


def in_flight_row(conn: sqlite3.Connection, job: Job) -> tuple[int, tuple[str, ...]]:
    """(rerun mark, rerun reasons) of a job that must be in flight."""
    row = named(conn).execute(
        f"SELECT s.rerun, s.rerun_reasons, q.status {LIVE} WHERE s.job_id = ?", (job.job_id,)
    ).fetchone()
    if row is None or row["status"] != STATUS_IN_FLIGHT:
        raise JobNotInFlight(f"job {job.job_id} (scene {job.scene_id}) is not in flight")
    return row["rerun"], tuple(json.loads(row["rerun_reasons"])) if row["rerun_reasons"] else ()


def release_held(conn: sqlite3.Connection, error_class: str, now: float) -> int:
    """Ready jobs deferred after a failure of `error_class` become due now; how many."""
    return conn.execute(
        f"UPDATE schedule SET next_retry_at = ? WHERE last_error_class = ? AND next_retry_at > ? "
        f"AND job_id IN (SELECT _id FROM {PQ_TABLE} WHERE status < ?)",
        (now, error_class, now, STATUS_IN_FLIGHT)).rowcount
