"""The processor's queue: live jobs on persist-queue's ``SQLiteAckQueue``, scheduled by SQL.

Contract
========

* A *live job* is one row in persist-queue's table ``ack_queue_jobs`` with status ready
  (0/1) or in flight (2), plus one row in our ``schedule`` table with the same id. The
  persist-queue row carries the payload, an envelope ``{"v": 1, "scene_id": S}``; the
  schedule row carries what SQL must see: scene, reasons, attempts, ``next_retry_at``,
  last error. Job states: *due* (ready, ``next_retry_at <= now``), *deferred* (ready, later),
  *in flight* (handed out by ``take_due``), *dead-lettered* (in ``dlq``), *done* (gone).
* ``schedule.scene_id`` is UNIQUE, so one live job per scene holds by construction. Merging,
  not dedup windows, is how repeated events are absorbed. The job carries only the scene id
  and why it was queued; the processor reads the scene from Stash when it runs the job, so
  the newest Stash state wins.
* ``take_due(now)`` hands out the live, ready job with the smallest ``next_retry_at <= now``:
  the first entry of the partial index ``schedule_ready`` (ready jobs only, ordered by due
  time), so the cost is one index look-up however many jobs are deferred or in flight. A
  deferred job is never handed out and never blocks a due job (seed 000 cannot happen: the
  retry time is a column the selection reads, not a field inside a payload a FIFO ``get``
  ignores). ``schedule.taken_at`` is NULL exactly while the job is ready; every transition
  writes it together with persist-queue's status, and the selection checks both.
* An event for a scene whose job is in flight sets the job's ``rerun`` mark instead of
  creating a second job; whichever way the flight ends (``complete``, ``retry_later``,
  ``dead_letter``, crash + ``recover_abandoned``), the job stays live for the new event.
* Every mutator must be called by the one process holding ``ProcessorLock``; readers
  (``counts``, ``deferred``, ``dlq_list``...) may run anywhere. Every method that looks at
  time takes ``now``.

How persist-queue's pitfalls are designed around (shared reference §6)
=====================================================================

* *No delayed visibility; a nacked row comes straight back at the head*: we never use
  ``get()``'s FIFO to choose. Selection is our indexed query on ``schedule``.
* *auto_resume resets rows another process is working on*: the queue is always opened with
  ``auto_resume=False``; hooks never open it at all (they write the inbox). In-flight rows
  come back only through ``recover_abandoned``, called by the lock holder at start-up.
* *get(id=) hands out acked rows*: we never call it. A job is marked in flight by
  ``UPDATE ... SET status = 2 WHERE _id = ? AND status < 2`` in the same transaction that
  chose it, which cannot touch an acked or failed row.
* *Size counters drift*: ``qsize``/``size``/``len`` are never read; ``counts`` is SQL.
* *Payload keys can collide with its internals*: ``ack(item)`` treats any dict with a
  ``pqid`` key as a raw record. We never pass items, only ``id=``, and the payload is our
  envelope, never a caller's dict spread at top level.
* *Multi-process use is unsupported*: one processor (the lock); hooks append to our inbox.
* *Each persist-queue method commits on its own connection*: a transition that changes its
  row and our schedule row would have a crash window between two commits. So every
  transition is one transaction on our connection that writes both rows, using
  persist-queue's own row format and status codes. A crash leaves the state before or after
  the transition, never between; there is no ordering to get right and nothing to repair.
* *Acked rows are never removed*: ``compact`` calls ``clear_acked_data(max_delete=0,
  keep_latest=0, clear_ack_failed=True)`` (the one combination that avoids its
  OFFSET-without-LIMIT bug) and hands free pages back with ``incremental_vacuum``.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import persistqueue
from persistqueue.serializers import json as pq_json

from sync_queue import dlq as dlq_table
from sync_queue import ledger as ledger_table
from sync_queue.db import BUSY_TIMEOUT_S, DB_FILE, connect, retry_locked, write_txn
from sync_queue.dlq import DeadLetter, DlqGroup
from sync_queue.inbox import FANOUT_KINDS, SCENE, SCENE_DESTROYED, InboxEvent, read_inbox
from sync_queue.ledger import LedgerEntry, needs_sync
from sync_queue.schema import ensure_schema
from sync_queue.spool import absorb as absorb_spool
from sync_queue.spool import spooled

PQ_NAME = "jobs"
PQ_TABLE = f"ack_queue_{PQ_NAME}"
ENVELOPE_VERSION = 1

# persist-queue's AckStatus values (persistqueue.sqlackqueue.AckStatus).
READY_STATES = (0, 1)
STATUS_READY = 1
STATUS_IN_FLIGHT = 2
STATUS_ACKED = 5
STATUS_ACK_FAILED = 9

# schedule.rerun: what an event that arrived during the flight asks for.
RERUN_NONE = 0
RERUN_KEEP_SCHEDULE = 1  # a bulk/reconcile event: run again, but never earlier than planned
RERUN_NOW = 2  # a hook event: the user changed something, run again as soon as possible

#: Key of the ledger's ``written`` map under which the worker keeps the Stash ids a sync
#: showed (``{"performer": [..], "studio": [..], "tag": [..]}``), and key of a fan-out
#: row's payload that holds its resume cursor.
LEDGER_REFS = "refs"
FANOUT_CURSOR = "cursor"

ABANDONED = "Abandoned"
MAX_REASONS = 16
COMPACT_EVERY = 1000


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


@dataclass(frozen=True)
class FanOutEvent:
    """A performer/studio/tag change waiting to be expanded into scenes by a processor."""

    event_id: int
    kind: str
    entity_id: int
    reasons: tuple[str, ...]
    payload: dict[str, Any] | None
    created_at: float


@dataclass
class IngestResult:
    """What ``ingest`` did, and what it leaves to the caller (``fanout``)."""

    events: int = 0
    created: int = 0
    merged: int = 0
    deferred_behind_inflight: int = 0
    destroyed: list[int] = field(default_factory=list)
    unknown: int = 0
    fanout: list[FanOutEvent] = field(default_factory=list)


@dataclass(frozen=True)
class QueueCounts:
    due: int
    deferred: int
    in_flight: int
    dlq: int
    ledger: int
    inbox: int
    fanout: int


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
    keeps the existing schedule: it carries no news, and resetting backoff from a loop is
    exactly the retry storm of seed 000.
    """
    return min(current, now) if urgent else current


def rerun_mark(current: int, urgent: bool) -> int:
    return max(current, RERUN_NOW if urgent else RERUN_KEEP_SCHEDULE)


def due_after_retry(backoff_until: float, rerun: int, now: float) -> float:
    """A failed job's next due time, given what arrived during its flight (same rule as merging)."""
    return merged_due_at(backoff_until, now, rerun == RERUN_NOW)


def merge_fanout_payload(stored: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> str | None:
    """A fan-out row's payload after another event for the same entity merged into it.

    Lists (the tags a merge removed) are united, so two merges into one tag both count; the
    resume cursor is dropped, since the new event may concern scenes a pass already passed.
    """
    merged: dict[str, Any] = {k: v for k, v in (stored or {}).items() if k != FANOUT_CURSOR}
    for key, value in (new or {}).items():
        old = merged.get(key)
        if isinstance(old, list) and isinstance(value, list) and all(isinstance(v, int) for v in old + value):
            merged[key] = sorted(set(old) | set(value))
        else:
            merged[key] = value
    return json.dumps(merged) if merged else None


def envelope(scene_id: int) -> dict[str, Any]:
    return {"v": ENVELOPE_VERSION, "scene_id": int(scene_id)}


def envelope_scene(data: Any) -> int:
    """The scene id inside a persist-queue payload; raise on anything that is not our envelope."""
    if not isinstance(data, dict) or data.get("v") != ENVELOPE_VERSION or not isinstance(data.get("scene_id"), int):
        raise ValueError(f"not a Stash2Plex job envelope: {data!r}")
    return data["scene_id"]


# ---- the queue --------------------------------------------------------------------------

_JOB_COLUMNS = (
    "s.job_id, s.scene_id, s.reasons, s.attempts, s.next_retry_at, s.last_error_class, s.last_error, "
    "s.enqueued_at, s.first_failed_at"
)
# ``s.taken_at IS NULL`` must appear literally for SQLite to use the partial index
# schedule_ready. CROSS JOIN pins the join order: the first index entry, then persist-queue's
# row by primary key as a second check that it is really ready.
_READY = f"FROM schedule AS s CROSS JOIN {PQ_TABLE} AS q WHERE s.taken_at IS NULL AND q._id = s.job_id AND q.status < 2"
_TAKE_SQL = f"SELECT {_JOB_COLUMNS} {_READY} AND s.next_retry_at <= ? ORDER BY s.next_retry_at, s.job_id LIMIT 1"
_NEXT_DUE_SQL = f"SELECT s.next_retry_at {_READY} ORDER BY s.next_retry_at, s.job_id LIMIT 1"
_DEFERRED_SQL = f"SELECT {_JOB_COLUMNS} {_READY} AND s.next_retry_at > ? ORDER BY s.next_retry_at, s.job_id LIMIT ?"


def _job(row: Sequence[Any]) -> Job:
    return Job(row[0], row[1], tuple(json.loads(row[2])), row[3], row[4], row[5], row[6], row[7], row[8])


class JobQueue:
    """Jobs, schedule, ledger and dead letters in ``<data_dir>/stash2plex.db``.

    Open it in the processor (holding ``ProcessorLock``) to change anything; other processes
    may open it to read counts and lists. ``close()`` when done.
    """

    def __init__(self, data_dir: Path, compact_every: int = COMPACT_EVERY) -> None:
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._conn = connect(self.data_dir)
        ensure_schema(self._conn)  # before persist-queue, so a new file gets auto_vacuum
        self._pq = persistqueue.SQLiteAckQueue(
            path=str(self.data_dir),
            db_file_name=DB_FILE,
            name=PQ_NAME,
            auto_resume=False,  # see the module docstring: never reset another process's rows
            multithreading=True,
            serializer=pq_json,
            timeout=BUSY_TIMEOUT_S,
        )
        self._compact_every = compact_every
        self._finished_since_compact = 0

    # -- life cycle --

    def close(self, compact: bool = True) -> None:
        """Compact (if asked) and close both connections."""
        if compact:
            self.compact()
        self._pq.close()
        self._conn.close()

    def __enter__(self) -> JobQueue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- adding work --

    def enqueue(self, scene_id: int, reason: str, now: float, urgent: bool = True) -> EnqueueOutcome:
        """One live job per scene: create it, or merge into the existing one.

        ``urgent`` is True for hook and user events, False for bulk and reconcile sources;
        see ``merged_due_at`` for what that changes.
        """
        with write_txn(self._conn) as conn:
            return self._enqueue(conn, scene_id, (reason,), now, urgent)

    def enqueue_if_changed(self, scene_id: int, state_hash: str, reason: str, now: float) -> bool:
        """The ledger rule for bulk and reconcile sources; True if the scene was (re)queued.

        Skips are counted (``counter('skipped_unchanged')``) for the status report.
        """
        with write_txn(self._conn) as conn:
            return self._enqueue_if_changed(conn, scene_id, state_hash, reason, now)

    def enqueue_changed_many(
        self, states: Iterable[tuple[int, str]], reason: str, now: float, batch: int = 1000
    ) -> int:
        """``enqueue_if_changed`` over (scene_id, state_hash) pairs, ``batch`` per transaction.

        For Sync All and reconcile over a whole library; returns how many were queued.
        """
        queued = 0
        pending: list[tuple[int, str]] = []

        def flush() -> int:
            with write_txn(self._conn) as conn:
                return sum(self._enqueue_if_changed(conn, s, h, reason, now) for s, h in pending)

        for pair in states:
            pending.append(pair)
            if len(pending) >= batch:
                queued += flush()
                pending.clear()
        if pending:
            queued += flush()
        return queued

    def ingest(self, now: float, batch: int = 500) -> IngestResult:
        """Turn inbox events into jobs, ``batch`` events per transaction, oldest first.

        Events a hook had to spool (``sync_queue.spool``) join the inbox first.

        Each batch is read, applied and deleted from the inbox in one transaction, so an event
        is applied exactly once even if the processor dies half-way. ``scene_destroyed`` drops
        the scene's ready job, its ledger row and its dead letter here. Fan-out events are
        stored (merged per entity) and returned in ``IngestResult.fanout`` together with any
        left over from an earlier run; call ``fanout_done`` once each has been expanded.
        """
        result = IngestResult()
        absorb_spool(self._conn, self.data_dir, now)
        while True:
            with write_txn(self._conn) as conn:
                events = read_inbox(conn, batch)
                for event in events:
                    self._apply_event(conn, event, now, result)
                conn.executemany("DELETE FROM inbox WHERE id = ?", [(e.event_id,) for e in events])
            result.events += len(events)
            if len(events) < batch:
                break
        result.fanout = self.pending_fanout()
        return result

    def pending_fanout(self) -> list[FanOutEvent]:
        rows = self._conn.execute(
            "SELECT id, kind, entity_id, reasons, payload, created_at FROM fanout ORDER BY id"
        ).fetchall()
        return [
            FanOutEvent(r[0], r[1], r[2], tuple(json.loads(r[3])), json.loads(r[4]) if r[4] else None, r[5])
            for r in rows
        ]

    def fanout_done(self, event_id: int) -> bool:
        with write_txn(self._conn) as conn:
            return conn.execute("DELETE FROM fanout WHERE id = ?", (event_id,)).rowcount > 0

    def fanout_progress(self, event_id: int, cursor: Mapping[str, Any] | None) -> None:
        """Remember how far a fan-out got (``payload["cursor"]``), so a crash resumes there.

        An event that merges into the row later drops the cursor (see ``_store_fanout``): it
        may change scenes the earlier pass already went by.
        """
        with write_txn(self._conn) as conn:
            row = conn.execute("SELECT payload FROM fanout WHERE id = ?", (event_id,)).fetchone()
            if row is None:
                return
            payload = json.loads(row[0]) if row[0] else {}
            if cursor is None:
                payload.pop(FANOUT_CURSOR, None)
            else:
                payload[FANOUT_CURSOR] = dict(cursor)
            conn.execute("UPDATE fanout SET payload = ? WHERE id = ?", (json.dumps(payload) if payload else None,
                                                                       event_id))

    def enqueue_many(self, scene_ids: Iterable[int], reason: str, now: float, urgent: bool = False) -> int:
        """``enqueue`` for many scenes in one transaction (fan-out); how many were given."""
        with write_txn(self._conn) as conn:
            ids = list(scene_ids)
            for scene_id in ids:
                self._enqueue(conn, scene_id, (reason,), now, urgent)
        return len(ids)

    def ledger_scenes_referencing(self, kind: str, entity_ids: Iterable[int], after: int = 0,
                                  limit: int = 1000) -> list[int]:
        """Scenes whose last sync showed one of these performers/studios/tags, by scene id.

        Reads ``written[LEDGER_REFS][kind]`` (ids the worker stores at sync time), because
        after a delete or merge Stash no longer relates any scene to the old id. A full scan
        of the ledger, inside SQLite: it serves deletes and merges, which are rare.
        """
        ids = sorted({int(i) for i in entity_ids})
        if not ids:
            return []
        marks = ", ".join("?" for _ in ids)
        rows = self._conn.execute(
            f"SELECT DISTINCT l.scene_id FROM ledger AS l, json_each(l.written, ?) AS j "
            f"WHERE l.scene_id > ? AND j.value IN ({marks}) ORDER BY l.scene_id LIMIT ?",
            (f"$.{LEDGER_REFS}.{kind}", after, *ids, limit),
        ).fetchall()
        return [r[0] for r in rows]

    # -- taking work --

    def take_due(self, now: float) -> Job | None:
        """Hand out the earliest due job and mark it in flight; None if nothing is due.

        Destructive by name: the job stays in flight until ``complete``, ``retry_later`` or
        ``dead_letter`` (or a crash and ``recover_abandoned``).
        """
        with write_txn(self._conn) as conn:
            row = conn.execute(_TAKE_SQL, (now,)).fetchone()
            if row is None:
                return None
            job = _job(row)
            # The status guard is the whole point: unlike get(id=), this cannot revive a
            # finished row.
            marked = conn.execute(
                f"UPDATE {PQ_TABLE} SET status = ? WHERE _id = ? AND status < 2", (STATUS_IN_FLIGHT, job.job_id)
            ).rowcount
            if marked != 1:
                raise AssertionError(f"job {job.job_id} changed status under the processor lock")
            data = conn.execute(f"SELECT data FROM {PQ_TABLE} WHERE _id = ?", (job.job_id,)).fetchone()[0]
            if envelope_scene(pq_json.loads(data)) != job.scene_id:
                raise AssertionError(f"job {job.job_id}: payload and schedule disagree on the scene")
            conn.execute("UPDATE schedule SET taken_at = ? WHERE job_id = ?", (now, job.job_id))
        return job

    def next_due_at(self) -> float | None:
        """When the earliest ready job falls due (maybe in the past), so a worker can sleep."""
        row = self._conn.execute(_NEXT_DUE_SQL).fetchone()
        return row[0] if row else None

    # -- finishing work --

    def complete(self, job: Job, now: float) -> None:
        """The job succeeded. If an event arrived during the flight, the job stays live as a
        fresh job (attempts 0, the new reasons) due now; otherwise it is acked and any dead
        letter for the scene is dropped, since the scene is now in sync."""
        with write_txn(self._conn) as conn:
            rerun, rerun_reasons = self._in_flight_row(conn, job)
            if rerun:
                self._refresh(conn, job.job_id, rerun_reasons, now)
            else:
                conn.execute("DELETE FROM schedule WHERE job_id = ?", (job.job_id,))
                self._set_status(conn, job.job_id, STATUS_ACKED)
                dlq_table.remove(conn, job.scene_id)
        self._finished(1)

    def retry_later(
        self,
        job: Job,
        next_retry_at: float,
        error_class: str,
        message: str,
        now: float,
        consume_attempt: bool = True,
    ) -> None:
        """The attempt failed; run the job again at ``next_retry_at`` (or earlier, only if a
        hook event arrived during the flight).

        Schedule and status change in one transaction: the row becomes ready in the same
        commit that sets its new due time, so there is no moment where it is ready with the
        old, already-passed due time (the retry storm of seed 000), and a crash can only leave
        it in flight, which ``recover_abandoned`` handles. ``consume_attempt=False`` is for
        failures that are not the job's fault (Plex down, breaker open).
        """
        with write_txn(self._conn) as conn:
            rerun, rerun_reasons = self._in_flight_row(conn, job)
            conn.execute(
                "UPDATE schedule SET attempts = attempts + ?, next_retry_at = ?, last_error_class = ?, "
                "last_error = ?, first_failed_at = COALESCE(first_failed_at, ?), reasons = ?, rerun = 0, "
                "rerun_reasons = NULL, taken_at = NULL WHERE job_id = ?",
                (
                    1 if consume_attempt else 0,
                    due_after_retry(next_retry_at, rerun, now),
                    error_class,
                    message,
                    now,
                    json.dumps(merge_reasons(job.reasons, rerun_reasons)),
                    job.job_id,
                ),
            )
            self._set_status(conn, job.job_id, STATUS_READY)

    def dead_letter(self, job: Job, error_class: str, message: str, now: float, detail: str | None = None) -> None:
        """Give up on the job: record it in the DLQ with its error and attempts (this failed
        attempt included). An event that arrived during the flight still gets a fresh job."""
        with write_txn(self._conn) as conn:
            rerun, rerun_reasons = self._in_flight_row(conn, job)
            self._dead_letter(conn, job, error_class, message, now, detail)
            if rerun:
                self._refresh(conn, job.job_id, rerun_reasons, now)
            else:
                conn.execute("DELETE FROM schedule WHERE job_id = ?", (job.job_id,))
                self._set_status(conn, job.job_id, STATUS_ACK_FAILED)
        self._finished(1)

    def recover_abandoned(self, now: float, max_attempts: int | None = None) -> int:
        """Return jobs left in flight by a dead processor to the ready state; how many.

        Call once, right after taking the processor lock and before taking jobs: holding the
        lock proves their processor is gone. Each such job comes back exactly once, as the
        same row (one live job per scene still holds), due at its old time, with its rerun
        reasons folded in. The interrupted attempt counts as a failed attempt
        (``last_error_class = "Abandoned"``), so a job that kills the processor every time
        cannot loop forever: with ``max_attempts``, it is dead-lettered when it reaches it.
        """
        recovered = 0
        with write_txn(self._conn) as conn:
            rows = conn.execute(
                f"SELECT {_JOB_COLUMNS}, s.rerun, s.rerun_reasons FROM schedule AS s JOIN {PQ_TABLE} AS q "
                "ON q._id = s.job_id WHERE q.status = ?",
                (STATUS_IN_FLIGHT,),
            ).fetchall()
            for row in rows:
                job = _job(row)
                reasons = merge_reasons(job.reasons, json.loads(row[10]) if row[10] else ())
                attempts = job.attempts + 1
                message = "the processor stopped while this job was in flight"
                if max_attempts is not None and attempts >= max_attempts:
                    self._dead_letter(conn, job, ABANDONED, message, now, None)
                    conn.execute("DELETE FROM schedule WHERE job_id = ?", (job.job_id,))
                    self._set_status(conn, job.job_id, STATUS_ACK_FAILED)
                    continue
                conn.execute(
                    "UPDATE schedule SET attempts = ?, reasons = ?, rerun = 0, rerun_reasons = NULL, taken_at = NULL, "
                    "last_error_class = ?, last_error = ?, first_failed_at = COALESCE(first_failed_at, ?) "
                    "WHERE job_id = ?",
                    (attempts, json.dumps(reasons), ABANDONED, message, now, job.job_id),
                )
                self._set_status(conn, job.job_id, STATUS_READY)
                recovered += 1
        return recovered

    # -- reading state --

    def counts(self, now: float) -> QueueCounts:
        """All from SQL; persist-queue's in-memory counters drift and are never used."""
        due, deferred, in_flight = self._conn.execute(
            f"SELECT COALESCE(SUM(q.status < 2 AND s.next_retry_at <= ?), 0), "
            f"COALESCE(SUM(q.status < 2 AND s.next_retry_at > ?), 0), COALESCE(SUM(q.status = 2), 0) "
            f"FROM schedule AS s JOIN {PQ_TABLE} AS q ON q._id = s.job_id",
            (now, now),
        ).fetchone()
        one = self._scalar
        return QueueCounts(
            due=due,
            deferred=deferred,
            in_flight=in_flight,
            dlq=one("SELECT COUNT(*) FROM dlq"),
            ledger=one("SELECT COUNT(*) FROM ledger"),
            inbox=one("SELECT COUNT(*) FROM inbox") + len(spooled(self.data_dir)),  # spooled events are new too
            fanout=one("SELECT COUNT(*) FROM fanout"),
        )

    def deferred(self, now: float, limit: int = 1000) -> list[Job]:
        """Ready jobs not yet due, soonest first."""
        rows = self._conn.execute(_DEFERRED_SQL, (now, limit)).fetchall()
        return [_job(r) for r in rows]

    def in_flight(self) -> list[Job]:
        rows = self._conn.execute(
            f"SELECT {_JOB_COLUMNS} FROM schedule AS s JOIN {PQ_TABLE} AS q ON q._id = s.job_id "
            "WHERE q.status = 2 ORDER BY s.job_id"
        ).fetchall()
        return [_job(r) for r in rows]

    def job_for_scene(self, scene_id: int) -> Job | None:
        """The scene's live job, ready or in flight."""
        row = self._conn.execute(
            f"SELECT {_JOB_COLUMNS} FROM schedule AS s JOIN {PQ_TABLE} AS q ON q._id = s.job_id "
            "WHERE s.scene_id = ? AND q.status <= 2",
            (scene_id,),
        ).fetchone()
        return _job(row) if row else None

    def counter(self, name: str) -> int:
        row = self._conn.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
        return row[0] if row else 0

    # -- ledger --

    def ledger_get(self, scene_id: int) -> LedgerEntry | None:
        return ledger_table.get(self._conn, scene_id)

    def ledger_put(
        self,
        scene_id: int,
        fields_hash: str,
        plex_key: str | None,
        poster_hash: str | None,
        art_hash: str | None,
        written: Mapping[str, Any],
        now: float,
    ) -> None:
        """Record what a successful sync wrote; call before ``complete`` for that job."""
        with write_txn(self._conn) as conn:
            ledger_table.put(conn, scene_id, fields_hash, plex_key, poster_hash, art_hash, written, now)

    def ledger_holder(self, plex_key: str, other_than: int) -> LedgerEntry | None:
        return ledger_table.holder(self._conn, plex_key, other_than)

    def release_claim(self, scene_id: int, reason: str, now: float) -> bool:
        """Another scene took over this scene's Plex item: its row no longer holds the item
        (marked lost) and it is queued once more, for the state it was synced in, so its own
        job reaches the ownership rule and is dead-lettered there, naming the owner."""
        with write_txn(self._conn) as conn:
            entry = ledger_table.get(conn, scene_id)
            if entry is None or entry.lost:
                return False
            ledger_table.mark_lost(conn, scene_id)
            self._enqueue(conn, scene_id, (reason,), now, urgent=False, state_hash=entry.fields_hash)
            return True

    def ledger_user_locked(self, limit: int) -> tuple[int, list[tuple[int, list[str]]]]:
        return ledger_table.user_locked(self._conn, limit)

    def ledger_mark_lost(self, scene_id: int) -> bool:
        with write_txn(self._conn) as conn:
            return ledger_table.mark_lost(conn, scene_id)

    def ledger_delete(self, scene_id: int) -> bool:
        with write_txn(self._conn) as conn:
            return ledger_table.delete(conn, scene_id)

    def ledger_iter(self) -> Iterator[LedgerEntry]:
        return ledger_table.iterate(self._conn)

    # -- dead letters and clearing --

    def dlq_list(self, error_class: str | None = None, limit: int | None = None) -> list[DeadLetter]:
        return dlq_table.list_all(self._conn, error_class, limit)

    def dlq_summary(self) -> list[DlqGroup]:
        return dlq_table.summary(self._conn)

    def retry_dlq(self, error_class: str | None, now: float) -> int:
        """Re-queue dead letters (all, or one error class) as fresh jobs due now; how many.

        A scene that already has a live job is merged into it instead.
        """
        with write_txn(self._conn) as conn:
            letters = dlq_table.list_all(conn, error_class)
            for letter in letters:
                self._enqueue(conn, letter.scene_id, (*letter.reasons, "retry_dlq"), now, urgent=True)
                dlq_table.remove(conn, letter.scene_id)
        return len(letters)

    def purge_dlq(self, older_than_days: float, now: float) -> int:
        with write_txn(self._conn) as conn:
            return dlq_table.purge_older_than(conn, older_than_days, now)

    def clear_dlq(self) -> int:
        with write_txn(self._conn) as conn:
            return dlq_table.clear(conn)

    def clear_queue(self) -> int:
        """Drop all pending work; how many scenes would have synced.

        Pending work is every ready job (due or deferred), every scene event still in the inbox
        (left there, the next ``ingest`` would bring the cleared jobs back), every fan-out row,
        and the "run again" mark of an in-flight job. Scene deletions in the inbox are facts,
        not work: they are applied, so no ledger row or dead letter outlives its scene.
        In-flight jobs themselves are left to their processor; the ledger and dead letters stay.
        One transaction: an event recorded after it is kept.
        """
        with write_txn(self._conn) as conn:
            scenes: set[int] = set()
            while events := read_inbox(conn, 1000):
                for event in events:
                    if event.kind == SCENE:
                        scenes.add(event.entity_id)
                    elif event.kind == SCENE_DESTROYED:
                        self._destroy(conn, event.entity_id)
                        scenes.discard(event.entity_id)
                conn.execute("DELETE FROM inbox WHERE id <= ?", (events[-1].event_id,))
            conn.execute("DELETE FROM fanout")
            rows = conn.execute(
                f"SELECT s.job_id, s.scene_id, q.status, s.rerun FROM schedule AS s JOIN {PQ_TABLE} AS q "
                "ON q._id = s.job_id WHERE q.status < 2 OR (q.status = 2 AND s.rerun > 0)"
            ).fetchall()
            ready = [job_id for job_id, _, status, _ in rows if status < 2]
            conn.executemany("DELETE FROM schedule WHERE job_id = ?", [(i,) for i in ready])
            conn.executemany(f"UPDATE {PQ_TABLE} SET status = ? WHERE _id = ?", [(STATUS_ACKED, i) for i in ready])
            conn.execute("UPDATE schedule SET rerun = 0, rerun_reasons = NULL WHERE rerun > 0")
            scenes.update(scene_id for _, scene_id, _, _ in rows)
        self._finished(len(ready))
        return len(scenes)

    # -- compaction --

    def compact(self) -> int:
        """Delete finished persist-queue rows and give free pages back; rows deleted.

        ``keep_latest=0, max_delete=0`` builds no LIMIT/OFFSET clause at all, which sidesteps
        persist-queue's OFFSET-without-LIMIT bug. Nothing reads finished rows: dedup is the
        ledger's job, not a window over acked rows.
        """
        before = self._scalar(f"SELECT COUNT(*) FROM {PQ_TABLE} WHERE status IN (5, 9)")
        if before:
            retry_locked(lambda: self._pq.clear_acked_data(max_delete=0, keep_latest=0, clear_ack_failed=True))
        self._finished_since_compact = 0
        free = self._scalar("PRAGMA freelist_count")
        pages = self._scalar("PRAGMA page_count")
        if free > 256 and free * 4 > pages:
            # executescript, not execute: the pragma frees one page per step of its statement,
            # and execute() steps a statement that returns no rows only once (one page freed).
            retry_locked(lambda: self._conn.executescript("PRAGMA incremental_vacuum;"))
        return before

    # -- internals --

    def _scalar(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self._conn.execute(sql, params).fetchone()[0]

    def _finished(self, n: int) -> None:
        self._finished_since_compact += n
        if self._finished_since_compact >= self._compact_every:
            self.compact()

    def _bump(self, conn: sqlite3.Connection, name: str, by: int = 1) -> None:
        conn.execute(
            "INSERT INTO counters (name, value) VALUES (?, ?) "
            "ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
            (name, by),
        )

    def _set_status(self, conn: sqlite3.Connection, job_id: int, status: int) -> None:
        conn.execute(f"UPDATE {PQ_TABLE} SET status = ? WHERE _id = ?", (status, job_id))

    def _live_row(self, conn: sqlite3.Connection, scene_id: int) -> tuple[Any, ...] | None:
        """(job_id, reasons, next_retry_at, rerun, rerun_reasons, pq status or None)."""
        return conn.execute(
            f"SELECT s.job_id, s.reasons, s.next_retry_at, s.rerun, s.rerun_reasons, q.status "
            f"FROM schedule AS s LEFT JOIN {PQ_TABLE} AS q ON q._id = s.job_id WHERE s.scene_id = ?",
            (scene_id,),
        ).fetchone()

    def _create(
        self, conn: sqlite3.Connection, scene_id: int, reasons: Sequence[str], now: float, state_hash: str | None
    ) -> int:
        # The row persist-queue's put() would write (serializer output, put time, status 0),
        # written here so that it commits together with its schedule row.
        job_id = conn.execute(
            f"INSERT INTO {PQ_TABLE} (data, timestamp, status) VALUES (?, ?, 0)",
            (pq_json.dumps(envelope(scene_id)), now),
        ).lastrowid
        conn.execute(
            "INSERT INTO schedule (job_id, scene_id, reasons, attempts, next_retry_at, enqueued_at, state_hash) "
            "VALUES (?, ?, ?, 0, ?, ?, ?)",
            (job_id, scene_id, json.dumps(merge_reasons((), reasons)), now, now, state_hash),
        )
        assert job_id is not None
        return job_id

    def _enqueue(
        self,
        conn: sqlite3.Connection,
        scene_id: int,
        reasons: Sequence[str],
        now: float,
        urgent: bool,
        state_hash: str | None = None,
    ) -> EnqueueOutcome:
        """``state_hash`` is the Stash state the event saw, when the source knows it (bulk and
        reconcile); an event without one (a hook) means "changed to something unknown"."""
        row = self._live_row(conn, scene_id)
        if row is not None and (row[5] is None or row[5] > STATUS_IN_FLIGHT):
            # A schedule row without a live persist-queue row cannot arise from our own
            # transitions; if someone edited the file, drop the husk rather than lose the event.
            conn.execute("DELETE FROM schedule WHERE job_id = ?", (row[0],))
            row = None
        if row is None:
            self._create(conn, scene_id, reasons, now, state_hash)
            return EnqueueOutcome.CREATED
        job_id, current, next_retry_at, rerun, rerun_reasons, status = row
        if status == STATUS_IN_FLIGHT:
            pending = merge_reasons(json.loads(rerun_reasons) if rerun_reasons else (), reasons)
            conn.execute(
                "UPDATE schedule SET rerun = ?, rerun_reasons = ?, state_hash = ? WHERE job_id = ?",
                (rerun_mark(rerun, urgent), json.dumps(pending), state_hash, job_id),
            )
            self._bump(conn, "merged_in_flight")
            return EnqueueOutcome.DEFERRED_BEHIND_INFLIGHT
        conn.execute(
            "UPDATE schedule SET reasons = ?, next_retry_at = ?, state_hash = ? WHERE job_id = ?",
            (
                json.dumps(merge_reasons(json.loads(current), reasons)),
                merged_due_at(next_retry_at, now, urgent),
                state_hash,
                job_id,
            ),
        )
        self._bump(conn, "merged")
        return EnqueueOutcome.MERGED

    def _enqueue_if_changed(
        self, conn: sqlite3.Connection, scene_id: int, state_hash: str, reason: str, now: float
    ) -> bool:
        if not needs_sync(ledger_table.get(conn, scene_id), state_hash):
            self._bump(conn, "skipped_unchanged")
            return False
        if dlq_table.state_hash_of(conn, scene_id) == state_hash:
            # Dead-lettered for exactly this state: only the user (retry_dlq) or a real change
            # brings it back, or every pass would replay the same failure.
            self._bump(conn, "skipped_dead_lettered")
            return False
        live = conn.execute(
            "SELECT s.state_hash FROM schedule AS s JOIN "
            f"{PQ_TABLE} AS q ON q._id = s.job_id WHERE s.scene_id = ? AND q.status = ?",
            (scene_id, STATUS_IN_FLIGHT),
        ).fetchone()
        if live is not None and live[0] == state_hash:
            # In flight for this very state: the worker reads the scene after it was queued,
            # so it sees this state or a newer one (which brings its own event).
            self._bump(conn, "skipped_in_flight")
            return False
        self._enqueue(conn, scene_id, (reason,), now, urgent=False, state_hash=state_hash)
        return True

    def _apply_event(self, conn: sqlite3.Connection, event: InboxEvent, now: float, result: IngestResult) -> None:
        if event.kind == SCENE:
            outcome = self._enqueue(conn, event.entity_id, (event.reason,), now, urgent=True)
            if outcome is EnqueueOutcome.CREATED:
                result.created += 1
            elif outcome is EnqueueOutcome.MERGED:
                result.merged += 1
            else:
                result.deferred_behind_inflight += 1
        elif event.kind == SCENE_DESTROYED:
            self._destroy(conn, event.entity_id)
            result.destroyed.append(event.entity_id)
        elif event.kind in FANOUT_KINDS:
            self._store_fanout(conn, event)
        else:
            result.unknown += 1

    def _destroy(self, conn: sqlite3.Connection, scene_id: int) -> None:
        row = self._live_row(conn, scene_id)
        if row is not None:
            if row[5] == STATUS_IN_FLIGHT:
                # Its processor will find the scene gone; nothing should run after it.
                conn.execute("UPDATE schedule SET rerun = 0, rerun_reasons = NULL WHERE job_id = ?", (row[0],))
            else:
                conn.execute("DELETE FROM schedule WHERE job_id = ?", (row[0],))
                if row[5] is not None:
                    self._set_status(conn, row[0], STATUS_ACKED)
        ledger_table.delete(conn, scene_id)
        dlq_table.remove(conn, scene_id)

    def _store_fanout(self, conn: sqlite3.Connection, event: InboxEvent) -> None:
        row = conn.execute(
            "SELECT id, reasons, payload FROM fanout WHERE kind = ? AND entity_id = ?", (event.kind, event.entity_id)
        ).fetchone()
        payload = json.dumps(event.payload) if event.payload is not None else None
        if row is None:
            conn.execute(
                "INSERT INTO fanout (kind, entity_id, reasons, payload, created_at) VALUES (?, ?, ?, ?, ?)",
                (event.kind, event.entity_id, json.dumps([event.reason]), payload, event.created_at),
            )
        else:
            reasons = merge_reasons(json.loads(row[1]), (event.reason,))
            conn.execute(
                "UPDATE fanout SET reasons = ?, payload = ? WHERE id = ?",
                (json.dumps(reasons), merge_fanout_payload(json.loads(row[2]) if row[2] else None, event.payload),
                 row[0]),
            )

    def _in_flight_row(self, conn: sqlite3.Connection, job: Job) -> tuple[int, tuple[str, ...]]:
        """(rerun mark, rerun reasons) of a job that must be in flight."""
        row = conn.execute(
            f"SELECT s.rerun, s.rerun_reasons, q.status FROM schedule AS s JOIN {PQ_TABLE} AS q "
            "ON q._id = s.job_id WHERE s.job_id = ?",
            (job.job_id,),
        ).fetchone()
        if row is None or row[2] != STATUS_IN_FLIGHT:
            raise JobNotInFlight(f"job {job.job_id} (scene {job.scene_id}) is not in flight")
        return row[0], tuple(json.loads(row[1])) if row[1] else ()

    def _refresh(self, conn: sqlite3.Connection, job_id: int, reasons: Sequence[str], now: float) -> None:
        """Turn a finished flight into a fresh job for the event that arrived during it."""
        conn.execute(
            "UPDATE schedule SET reasons = ?, attempts = 0, next_retry_at = ?, last_error_class = NULL, "
            "last_error = NULL, first_failed_at = NULL, taken_at = NULL, rerun = 0, rerun_reasons = NULL, "
            "enqueued_at = ? WHERE job_id = ?",
            (json.dumps(merge_reasons((), reasons)), now, now, job_id),
        )
        self._set_status(conn, job_id, STATUS_READY)

    def _dead_letter(
        self, conn: sqlite3.Connection, job: Job, error_class: str, message: str, now: float, detail: str | None
    ) -> None:
        current = conn.execute(
            "SELECT attempts, reasons, first_failed_at, state_hash FROM schedule WHERE job_id = ?", (job.job_id,)
        ).fetchone()
        attempts, reasons, first_failed_at, state_hash = current
        dlq_table.add(
            conn,
            job.scene_id,
            error_class,
            message,
            detail,
            attempts + 1,
            json.loads(reasons),
            first_failed_at if first_failed_at is not None else now,
            now,
            state_hash=state_hash,
        )
