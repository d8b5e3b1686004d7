"""The processor's queue: live jobs on persist-queue's ``SQLiteAckQueue``, scheduled by SQL.

Contract
========

* A live job is two rows (see ``sync_queue.schedule``). Job states: *due* (ready,
  ``next_retry_at <= now``), *deferred* (ready, later), *in flight* (handed out by
  ``take_due``), *dead-lettered* (in ``dlq``), *done* (gone).
* One live job per scene. Merging, not dedup windows, is how repeated events are absorbed.
  The job carries the scene id, why it was queued and, when a listing queued it, the scene
  as that listing read it; the processor reads the scene from Stash (or checks the listed one
  is still current) when it runs the job, so the newest Stash state wins.
* ``take_due(now)`` (``take_due_many(now, limit)`` for a batch) hands out the live, ready
  job with the smallest ``next_retry_at <= now``:
  the first entry of the partial index ``schedule_ready`` (ready jobs only, ordered by due
  time), so the cost is one index look-up however many jobs are deferred or in flight. A
  deferred job is never handed out and never blocks a due job: the retry time is a column
  the selection reads, not a field inside a payload a FIFO ``get`` would ignore.
* A job handed out is in flight and started. A batch may be taken unstarted instead
  (``started=False``): the processor starts each job (``start``) as its turn comes, and a
  crash brings back a job it never started as if never taken, no attempt charged.
* An event for a scene whose job is in flight sets the job's ``rerun`` mark instead of
  creating a second job; whichever way the flight ends (``complete``, ``retry_later``,
  ``dead_letter``, crash + ``recover_abandoned``), the job stays live for the new event.
* ``JobQueue`` holds the job life cycle and every transition that spans tables (a job and
  its ledger row, dead letter, fan-out row or inbox event), each one SQLite transaction.
  The tables a caller reads or writes on their own are handles on the same connection:
  ``ledger``, ``dlq``, ``fanout`` and the read-only ``report``.
* Every mutator must be called by the one process holding ``ProcessorLock``; readers
  (``report``, ``dlq.list_all``...) may run anywhere. Every method that looks at time
  takes ``now``.

persist-queue's pitfalls, and how the two rows of a job avoid each, are in
``sync_queue.schedule``.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import persistqueue
from persistqueue.serializers import json as pq_json

from sync_queue import collections, compaction, counters, dlq, fanout, ledger, schedule
from sync_queue.db import BUSY_TIMEOUT_S, DB_FILE, connect, named, write_txn
from sync_queue.fanout import FanOutEvent
from sync_queue.inbox import FANOUT_KINDS, SCENE, SCENE_DESTROYED, InboxEvent, read_inbox
from sync_queue.report import QueueReport
from sync_queue.schedule import (
    JOB_COLUMNS,
    PQ_NAME,
    PQ_TABLE,
    RERUN_NONE,
    STATUS_ACK_FAILED,
    STATUS_ACKED,
    STATUS_IN_FLIGHT,
    STATUS_READY,
    TAKE_BATCH_SQL,
    EnqueueOutcome,
    Job,
    due_after_retry,
    job_from_row,
    merge_reasons,
    taken_job,
)
from sync_queue.schema import ensure_schema
from sync_queue.spool import absorb as absorb_spool

ABANDONED = "Abandoned"
COMPACT_EVERY = 1000


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


class JobQueue:
    """Jobs and the tables beside them in ``<data_dir>/stash2plex.db``.

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
        self.ledger = ledger.LedgerTable(self._conn)
        self.dlq = dlq.DeadLetterTable(self._conn)
        self.fanout = fanout.FanOutTable(self._conn)
        self.collections = collections.CollectionTable(self._conn)
        self.report = QueueReport(self._conn, self.data_dir)

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
        see ``schedule.merged_due_at`` for what that changes.
        """
        with write_txn(self._conn) as conn:
            return schedule.enqueue(conn, scene_id, (reason,), now, urgent)

    def enqueue_many(self, scene_ids: Iterable[int], reason: str, now: float, urgent: bool = False) -> int:
        """``enqueue`` for many scenes in one transaction (fan-out); how many were given."""
        with write_txn(self._conn) as conn:
            ids = list(scene_ids)
            for scene_id in ids:
                schedule.enqueue(conn, scene_id, (reason,), now, urgent)
        return len(ids)

    def enqueue_if_changed(self, scene_id: int, state_hash: str, reason: str, now: float,
                           listed: Mapping[str, Any] | None = None) -> bool:
        """The ledger rule for bulk and reconcile sources; True if the scene was (re)queued.

        ``listed``: the scene as the source read it, carried by the job (see ``schedule``).
        Skips are counted (``report.counter(counters.SKIPPED_UNCHANGED)``) for the status report.
        """
        with write_txn(self._conn) as conn:
            return self._enqueue_if_changed(conn, scene_id, state_hash, reason, now, listed)

    def enqueue_changed_many(self, states: Iterable[tuple[int, str] | tuple[int, str, Mapping[str, Any] | None]],
                             reason: str, now: float, batch: int = 1000) -> int:
        """``enqueue_if_changed`` over (scene_id, state_hash[, listed]) tuples, ``batch`` per
        transaction. For Sync All and reconcile over a whole library; returns how many were queued.
        """
        queued = 0
        pending: list[tuple[Any, ...]] = []

        def flush() -> int:
            with write_txn(self._conn) as conn:
                return sum(self._enqueue_if_changed(conn, *item[:2], reason, now, *item[2:]) for item in pending)

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
        left over from an earlier run; call ``fanout.done`` once each has been expanded.
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
        result.fanout = self.fanout.pending()
        return result

    # -- taking work --

    def take_due(self, now: float) -> Job | None:
        """Hand out the earliest due job and mark it in flight; None if nothing is due.

        Destructive by name: the job stays in flight until ``complete``, ``retry_later`` or
        ``dead_letter`` (or a crash and ``recover_abandoned``).
        """
        taken = self.take_due_many(now, 1)
        return taken[0] if taken else None

    def take_due_many(self, now: float, limit: int, started: bool = True) -> list[Job]:
        """``take_due`` for up to ``limit`` jobs at once, earliest due first, in one transaction.

        Every job is in flight from this commit on and is acknowledged on its own; a processor
        killed before acknowledging some brings each of those back once (``recover_abandoned``).
        ``started=False``: none is started yet (see ``start``).
        """
        with write_txn(self._conn) as conn:
            rows = named(conn).execute(TAKE_BATCH_SQL, (now, max(1, limit))).fetchall()
            jobs = [taken_job(row) for row in rows]
            for job in jobs:
                # The status guard is the whole point: unlike get(id=), this cannot revive a
                # finished row.
                marked = conn.execute(
                    f"UPDATE {PQ_TABLE} SET status = ? WHERE _id = ? AND status < ?",
                    (STATUS_IN_FLIGHT, job.job_id, STATUS_IN_FLIGHT),
                ).rowcount
                if marked != 1:
                    raise AssertionError(f"job {job.job_id} changed status under the processor lock")
            conn.executemany("UPDATE schedule SET taken_at = ?, started_at = ? WHERE job_id = ?",
                             [(now, now if started else None, j.job_id) for j in jobs])
        return jobs

    def start(self, job: Job, now: float) -> None:
        """The processor begins the attempt of a job it took unstarted: from this commit on, a
        crash counts against the job (see ``recover_abandoned``)."""
        with write_txn(self._conn) as conn:
            conn.execute("UPDATE schedule SET started_at = ? WHERE job_id = ?", (now, job.job_id))

    # -- finishing work --

    def complete(self, job: Job, now: float) -> None:
        """The job succeeded. If an event arrived during the flight, the job stays live as a
        fresh job (attempts 0, the new reasons) due now; otherwise it is acked and any dead
        letter for the scene is dropped, since the scene is now in sync."""
        with write_txn(self._conn) as conn:
            rerun, rerun_reasons = schedule.in_flight_row(conn, job)
            if rerun:
                schedule.refresh(conn, job.job_id, rerun_reasons, now)
            else:
                schedule.finish(conn, job.job_id, STATUS_ACKED)
                dlq.remove(conn, job.scene_id)
        self._finished(1)

    def retry_later(self, job: Job, next_retry_at: float, error_class: str, message: str, now: float,
                     consume_attempt: bool = True) -> None:
        """The attempt failed; run the job again at ``next_retry_at`` (or earlier, only if a
        hook event arrived during the flight).

        Schedule and status change in one transaction: the row becomes ready in the same
        commit that sets its new due time, so there is no moment where it is ready with the
        old, already-passed due time (which would retry it at once, again and again), and a
        crash can only leave it in flight, which ``recover_abandoned`` handles.
        ``consume_attempt=False`` is for failures that are not the job's fault (Plex down,
        breaker open).
        """
        with write_txn(self._conn) as conn:
            rerun, rerun_reasons = schedule.in_flight_row(conn, job)
            conn.execute(
                "UPDATE schedule SET attempts = attempts + ?, next_retry_at = ?, last_error_class = ?, "
                "last_error = ?, first_failed_at = COALESCE(first_failed_at, ?), reasons = ?, rerun = ?, "
                "rerun_reasons = NULL, taken_at = NULL WHERE job_id = ?",
                (1 if consume_attempt else 0, due_after_retry(next_retry_at, rerun, now), error_class, message,
                 now, json.dumps(merge_reasons(job.reasons, rerun_reasons)), RERUN_NONE, job.job_id),
            )
            schedule.set_status(conn, job.job_id, STATUS_READY)

    def dead_letter(self, job: Job, error_class: str, message: str, now: float, detail: str | None = None) -> None:
        """Give up on the job: record it in the DLQ with its error and attempts (this failed
        attempt included). An event that arrived during the flight still gets a fresh job."""
        with write_txn(self._conn) as conn:
            rerun, rerun_reasons = schedule.in_flight_row(conn, job)
            self._dead_letter(conn, job, error_class, message, now, detail)
            if rerun:
                schedule.refresh(conn, job.job_id, rerun_reasons, now)
            else:
                schedule.finish(conn, job.job_id, STATUS_ACK_FAILED)
        self._finished(1)

    def release(self, jobs: Iterable[Job], now: float) -> None:
        """Hand back jobs taken but never started (the drain stopped before them), as if they
        had never been taken: attempts and last error unchanged, due at their old time, or
        now if a hook event asked for that during the flight. One transaction."""
        with write_txn(self._conn) as conn:
            for job in jobs:
                self._release(conn, job, now)

    def recover_abandoned(self, now: float, max_attempts: int | None = None) -> int:
        """Return jobs left in flight by a dead processor to the ready state; how many.

        Call once, right after taking the processor lock and before taking jobs: holding the
        lock proves their processor is gone. Each such job comes back exactly once, as the
        same row (one live job per scene still holds), due at its old time, with its rerun
        reasons folded in. The interrupted attempt counts as a failed attempt
        (``last_error_class = "Abandoned"``), so a job that kills the processor every time
        cannot loop forever: with ``max_attempts``, it is dead-lettered when it reaches it.
        A job of a batch that the processor had not started yet comes back as ``release``
        hands one back: it did nothing, so it is charged nothing.
        """
        recovered = 0
        message = "the processor stopped while this job was in flight"
        with write_txn(self._conn) as conn:
            rows = named(conn).execute(
                f"SELECT {JOB_COLUMNS}, s.rerun_reasons, s.started_at {schedule.LIVE} WHERE q.status = ?",
                (STATUS_IN_FLIGHT,)
            ).fetchall()
            for row in rows:
                job = job_from_row(row)
                if row["started_at"] is None:
                    self._release(conn, job, now)
                    recovered += 1
                    continue
                reasons = merge_reasons(job.reasons, json.loads(row["rerun_reasons"]) if row["rerun_reasons"] else ())
                attempts = job.attempts + 1
                if max_attempts is not None and attempts >= max_attempts:
                    self._dead_letter(conn, job, ABANDONED, message, now, None)
                    schedule.finish(conn, job.job_id, STATUS_ACK_FAILED)
                    continue
                conn.execute(
                    "UPDATE schedule SET attempts = ?, reasons = ?, rerun = 0, rerun_reasons = NULL, taken_at = NULL, "
                    "last_error_class = ?, last_error = ?, first_failed_at = COALESCE(first_failed_at, ?) "
                    "WHERE job_id = ?",
                    (attempts, json.dumps(reasons), ABANDONED, message, now, job.job_id),
                )
                schedule.set_status(conn, job.job_id, STATUS_READY)
                recovered += 1
        return recovered

    def release_held(self, error_class: str, now: float) -> int:
        """Make every job deferred after a failure of this class due now: what held it is over
        (Plex answers again). Attempts and messages stay; only the due time moves."""
        with write_txn(self._conn) as conn:
            return schedule.release_held(conn, error_class, now)

    # -- transitions between tables --

    def release_claim(self, scene_id: int, reason: str, now: float) -> bool:
        """Another scene took over this scene's Plex item: its row no longer holds the item
        (marked lost) and it is queued once more, for the state it was synced in, so its own
        job reaches the ownership rule and is dead-lettered there, naming the owner."""
        with write_txn(self._conn) as conn:
            entry = ledger.get(conn, scene_id)
            if entry is None or entry.lost:
                return False
            ledger.mark_lost(conn, scene_id)
            schedule.enqueue(conn, scene_id, (reason,), now, urgent=False, state_hash=entry.fields_hash)
            return True


    def retry_dlq(self, error_class: str | None, now: float) -> int:
        """Re-queue dead letters (all, or one error class) as fresh jobs due now; how many.

        A scene that already has a live job is merged into it instead.
        """
        with write_txn(self._conn) as conn:
            letters = dlq.list_all(conn, error_class)
            for letter in letters:
                schedule.enqueue(conn, letter.scene_id, (*letter.reasons, "retry_dlq"), now, urgent=True)
                dlq.remove(conn, letter.scene_id)
        return len(letters)

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
            scenes = self._drop_inbox(conn)
            fanout.clear(conn)
            rows = named(conn).execute(
                f"SELECT s.job_id, s.scene_id, q.status {schedule.LIVE} "
                f"WHERE q.status < ? OR (q.status = ? AND s.rerun > 0)", (STATUS_IN_FLIGHT, STATUS_IN_FLIGHT)
            ).fetchall()
            ready = [row["job_id"] for row in rows if row["status"] < STATUS_IN_FLIGHT]
            for job_id in ready:
                schedule.finish(conn, job_id, STATUS_ACKED)
            conn.execute("UPDATE schedule SET rerun = 0, rerun_reasons = NULL WHERE rerun > 0")
            scenes.update(row["scene_id"] for row in rows)
        self._finished(len(ready))
        return len(scenes)

    # -- compaction --

    def compact(self) -> int:
        """Delete finished persist-queue rows and give free pages back; rows deleted.

        ``keep_latest=0, max_delete=0`` builds no LIMIT/OFFSET clause at all, which sidesteps
        persist-queue's OFFSET-without-LIMIT bug.
        """
        self._finished_since_compact = 0
        return compaction.compact(
            self._conn, lambda: self._pq.clear_acked_data(max_delete=0, keep_latest=0, clear_ack_failed=True))

    # -- internals --

    def _finished(self, n: int) -> None:
        self._finished_since_compact += n
        if self._finished_since_compact >= self._compact_every:
            self.compact()

    def _release(self, conn: sqlite3.Connection, job: Job, now: float) -> None:
        rerun, rerun_reasons = schedule.in_flight_row(conn, job)
        conn.execute(
            "UPDATE schedule SET next_retry_at = ?, reasons = ?, rerun = ?, rerun_reasons = NULL, "
            "taken_at = NULL WHERE job_id = ?",
            (due_after_retry(job.next_retry_at, rerun, now), json.dumps(merge_reasons(job.reasons, rerun_reasons)),
             RERUN_NONE, job.job_id))
        schedule.set_status(conn, job.job_id, STATUS_READY)

    def _enqueue_if_changed(self, conn: sqlite3.Connection, scene_id: int, state_hash: str, reason: str,
                            now: float, listed: Mapping[str, Any] | None = None) -> bool:
        if not ledger.needs_sync(ledger.get(conn, scene_id), state_hash):
            counters.bump(conn, counters.SKIPPED_UNCHANGED)
            return False
        if dlq.state_hash_of(conn, scene_id) == state_hash:
            # Dead-lettered for exactly this state: only the user (retry_dlq) or a real change
            # brings it back, or every pass would replay the same failure.
            counters.bump(conn, counters.SKIPPED_DEAD_LETTERED)
            return False
        live = named(conn).execute(
            f"SELECT s.state_hash {schedule.LIVE} WHERE s.scene_id = ? AND q.status = ?",
            (scene_id, STATUS_IN_FLIGHT),
        ).fetchone()
        if live is not None and live["state_hash"] == state_hash:
            # In flight for this very state: the worker reads the scene after it was queued,
            # so it sees this state or a newer one (which brings its own event).
            counters.bump(conn, counters.SKIPPED_IN_FLIGHT)
            return False
        schedule.enqueue(conn, scene_id, (reason,), now, urgent=False, state_hash=state_hash, listed=listed)
        return True

    def _apply_event(self, conn: sqlite3.Connection, event: InboxEvent, now: float, result: IngestResult) -> None:
        if event.kind == SCENE:
            outcome = schedule.enqueue(conn, event.entity_id, (event.reason,), now, urgent=True)
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
            fanout.store(conn, event)
        else:
            result.unknown += 1

    def _drop_inbox(self, conn: sqlite3.Connection) -> set[int]:
        """Empty the inbox for ``clear_queue``: scene deletions applied, the other scenes returned."""
        scenes: set[int] = set()
        while events := read_inbox(conn, 1000):
            for event in events:
                if event.kind == SCENE:
                    scenes.add(event.entity_id)
                elif event.kind == SCENE_DESTROYED:
                    self._destroy(conn, event.entity_id)
                    scenes.discard(event.entity_id)
            conn.execute("DELETE FROM inbox WHERE id <= ?", (events[-1].event_id,))
        return scenes

    def _destroy(self, conn: sqlite3.Connection, scene_id: int) -> None:
        row = schedule.live_row(conn, scene_id)
        if row is not None:
            if row["status"] == STATUS_IN_FLIGHT:
                # Its processor will find the scene gone; nothing should run after it.
                conn.execute("UPDATE schedule SET rerun = 0, rerun_reasons = NULL WHERE job_id = ?", (row["job_id"],))
            elif row["status"] is None:
                conn.execute("DELETE FROM schedule WHERE job_id = ?", (row["job_id"],))
            else:
                schedule.finish(conn, row["job_id"], STATUS_ACKED)
        ledger.delete(conn, scene_id)
        dlq.remove(conn, scene_id)

    def _dead_letter(self, conn: sqlite3.Connection, job: Job, error_class: str, message: str, now: float,
                     detail: str | None) -> None:
        row = named(conn).execute(
            "SELECT attempts, reasons, first_failed_at, state_hash FROM schedule WHERE job_id = ?", (job.job_id,)
        ).fetchone()
        first = row["first_failed_at"] if row["first_failed_at"] is not None else now
        dlq.add(conn, job.scene_id, error_class, message, detail, row["attempts"] + 1, json.loads(row["reasons"]),
                first, now, state_hash=row["state_hash"])
