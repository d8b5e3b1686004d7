"""Issue 5 end to end, the hard cases: both field reports, head-of-line, a Plex outage, a bad
token, SIGKILL at points in a drain, and what a sleeping worker costs.

Same rules as `test_e2e_worker.py`: every run goes through the Stash host against both
emulators, the plugin is observed from outside only, and backoffs are skipped with
`Stage.age` rather than waited out.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest
import requests

from emulators.stage import PLEX_ROOT, Stage, stage
from sync_queue.inbox import record_event
from sync_queue.state import HALT, StateStore
from tests.e2e_worker_support import (
    QUIET,
    audited,
    counts,
    cpu_ticks,
    deferred_ids,
    inbox_ids,
    item_edits,
    ledger_count,
    lookups,
    mismatches,
    queue_of,
    stored_breaker,
    summary_of,
    synced,
    worker_log,
    writes,
)
from tests.secret_audit import AUDIT
from worker.breaker import BreakerConfig, BreakerState
from worker.core import AHEAD, WRITERS

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")


def plex_scan(st: Stage, folder: str = PLEX_ROOT) -> None:
    """What Plex's own scanner does (here asked over HTTP, as a user's 'Scan Library Files')."""
    requests.get(f"{st.plex.url}/library/sections/1/refresh", params={"path": folder},
                 headers={"X-Plex-Token": st.plex.token}, timeout=5).raise_for_status()


def jobs(st: Stage, ids):
    with queue_of(st) as queue:
        return {sid: queue.report.job_for_scene(sid) for sid in ids}


def wait_deferred(st: Stage, ids, attempts: int = 1) -> None:
    def ready() -> bool:
        return all(j is not None and j.attempts >= attempts and j.next_retry_at > time.time()
                   for j in jobs(st, ids).values())

    try:
        st.wait_until(ready)
    except TimeoutError:
        raise AssertionError(f"not deferred: {jobs(st, ids)} {counts(st)}\n{worker_log(st)}") from None


# --- field report 000: files Plex has not scanned yet ---------------------------------------


@pytest.mark.slow
def test_seed_000_unscanned_files_are_looked_up_once_per_window_and_all_sync_after_the_scan(
        tmp_path: Path) -> None:
    n = 5
    with stage(n, seed=60, work_dir=tmp_path, scanned=False, settings=QUIET,
               on_result=audited("seed 000")) as st:
        AUDIT.add_secret(st.plex.token)
        ids = st.library.sorted_ids()
        st.pend_in_plex(ids)
        for sid in ids:
            assert st.hook(sid).error is None
        wait_deferred(st, ids)
        assert [lookups(st, sid) for sid in ids] == [1] * n
        st.age(-120)  # a wider window than the 15-30 s first backoff, however slow this machine is

        # Inside the backoff window every batch path runs, as often as a user could click:
        # none of them may look the scenes up again (the storm was 3-5 look-ups in 2 s).
        for _ in range(2):
            summary = summary_of(st.task("process_queue"))
            assert summary["synced"] == 0 and deferred_ids(summary) == set(ids)
            assert {d["error_class"] for d in summary["deferred"]} == {"not_found"}
            assert all(d["next_retry_at"] > time.time() for d in summary["deferred"])
        bulk = st.task("all")
        assert bulk.error is None, bulk.stderr
        assert [lookups(st, sid) for sid in ids] == [1] * n
        c = counts(st)
        assert (c.deferred, c.dlq, c.ledger) == (n, 0, 0)  # none dropped

        # One window passes without a Plex scan: one more look-up each, deferred for longer.
        before = jobs(st, ids)
        st.age(151)
        summary = summary_of(st.task("process_queue"))
        assert deferred_ids(summary) == set(ids)
        assert [lookups(st, sid) for sid in ids] == [2] * n
        after = jobs(st, ids)
        assert all(after[s].attempts == before[s].attempts + 1 for s in ids)

        # Plex scans; once the backoff is over, every scene syncs.
        plex_scan(st)
        st.age(700)
        summary = summary_of(st.task("process_queue"))
        # (the worker the last task left for the deferred jobs may have synced a few itself)
        assert summary["deferred"] == []
        assert [mismatches(st, sid) for sid in ids] == [[]] * n
        assert [lookups(st, sid) for sid in ids] == [3] * n
        c = counts(st)
        assert (c.due, c.deferred, c.in_flight, c.dlq, c.ledger) == (0, 0, 0, 0, n)


# --- field report 001: an unchanged library is never requeued -------------------------------


@pytest.mark.slow
def test_seed_001_sync_all_again_and_hooks_for_unchanged_scenes_write_nothing(tmp_path: Path) -> None:
    n = 10
    with stage(n, seed=61, work_dir=tmp_path, settings=QUIET, on_result=audited("seed 001")) as st:
        ids = st.library.sorted_ids()
        first = st.task("all")
        assert summary_of(first)["synced"] == n and first.output["queued"] == n
        assert [sid for sid in ids if mismatches(st, sid)] == []
        assert item_edits(st) == n  # one edit per scene, no artwork in this stage

        st.plex.reset_log()
        for mode in ("all", "reconcile_all", "all", "reconcile_all"):  # whole-library passes
            again = st.task(mode)
            assert again.error is None and again.output["queued"] == 0, (mode, again.output)
            assert summary_of(again)["synced"] == 0
        assert writes(st) == 0
        st.plex.reset_log()
        for sid in ids[:4]:  # the user saves scenes without changing anything Plex shows
            assert st.hook(sid).error is None
        st.wait_until(lambda: counts(st).inbox == 0 and counts(st).due == 0)
        st.wait_for_worker()
        assert writes(st) == 0
        # Each save cost one read of its item at most: no job came back after completing.
        assert st.plex.count("GET", "/library/metadata") <= 4
        c = counts(st)
        assert (c.due, c.deferred, c.in_flight, c.dlq, c.ledger) == (0, 0, 0, 0, n)
        assert st.task("all").output["queued"] == 0

        # A real change still gets through, once.
        st.library.update_scene(ids[5], title="Renamed after the sync")
        changed = st.task("all")
        assert changed.output["queued"] == 1 and summary_of(changed)["synced"] == 1
        assert st.plex_item(ids[5]).title == "Renamed after the sync"
        assert writes(st) == 1


# --- head-of-line ---------------------------------------------------------------------------


def test_a_deferred_job_never_delays_a_fresh_one(tmp_path: Path) -> None:
    with stage(4, seed=62, work_dir=tmp_path, scanned=False, settings=QUIET,
               on_result=audited("head of line")) as st:
        waiting, fresh, *_ = st.library.sorted_ids()
        st.pend_in_plex([waiting])
        st.scan_into_plex([fresh])
        st.hook(waiting)
        wait_deferred(st, [waiting])
        due_at = jobs(st, [waiting])[waiting].next_retry_at
        assert st.worker_running()  # asleep until then
        assert st.hook(fresh).output["worker_started"] is False  # woken, not a second worker
        st.wait_until(lambda: synced(st, fresh))
        assert time.time() < due_at  # synced while the deferred job still waits
        job = jobs(st, [waiting])[waiting]
        assert job.next_retry_at == pytest.approx(due_at) and job.attempts == 1
        assert lookups(st, waiting) == 1  # the wake-up did not retry it early


def test_a_save_during_the_workers_drain_is_not_held_behind_its_sleep(tmp_path: Path) -> None:
    """The hook lands after the drain read the inbox: it only touches the wake file, and the
    sleep that follows must end for it rather than run to the deferred job's due time."""
    with stage(4, seed=69, work_dir=tmp_path, scanned=False, settings=QUIET,
               on_result=audited("save during drain")) as st:
        waiting, fresh, *_ = st.library.sorted_ids()
        st.pend_in_plex([waiting])
        st.scan_into_plex([fresh])
        with st.plex.faults.holding():  # the deferred job's look-up lasts until the save is in
            st.hook(waiting)
            st.wait_until(lambda: st.worker_running() and counts(st).inbox == 0, poll=0.01)
            assert st.hook(fresh).output["worker_started"] is False
        wait_deferred(st, [waiting])
        due_at = jobs(st, [waiting])[waiting].next_retry_at
        st.wait_until(lambda: synced(st, fresh))
        assert time.time() < due_at


# --- Plex outage ----------------------------------------------------------------------------


@pytest.mark.slow
def test_plex_down_mid_drain_opens_the_breaker_without_a_storm_then_drains_fully(tmp_path: Path) -> None:
    n = 20
    threshold = BreakerConfig().threshold
    with stage(n, seed=63, work_dir=tmp_path, settings=QUIET, on_result=audited("outage")) as st:
        ids = st.library.sorted_ids()
        st.plex.faults.down_after(5)  # five scenes written, then Plex goes away
        st.task("all")  # enqueue all and drain; Plex goes away part-way
        done = [sid for sid in ids if synced(st, sid)]
        assert 5 <= len(done) < n
        b = stored_breaker(st)
        assert b.state is BreakerState.OPEN and b.consecutive_failures == threshold
        left = jobs(st, [sid for sid in ids if sid not in done])
        assert all(j is not None for j in left.values()), "a job was lost"
        # A job whose edit Plex applied just before the connection dropped is synced yet failed
        # (the drain writes several at once): it tried Plex too, so it is counted with the rest.
        hit = [sid for sid, j in jobs(st, ids).items() if j is not None and j.last_error_class == "outage"]
        # No storm: after the outage began, the writes in flight and then one job per failure up
        # to the breaker's threshold tried Plex (an outage is not retried inside a job); a write
        # started earlier that lands after a failure may count as a success between two, so up
        # to WRITERS - 1 more. None of them used an attempt.
        assert threshold <= len(hit) <= threshold + WRITERS - 1
        assert all(j.attempts == 0 for j in left.values())
        c = counts(st)
        assert c.dlq == 0 and c.in_flight == 0

        # The next processes respect the stored breaker: a task and a hook's worker take no job.
        # They ask Plex with one cheap request each (the task at once, the worker on the
        # breaker's schedule), never with a job.
        st.task("process_queue")
        untouched = next(sid for sid in left if sid not in hit)
        assert st.hook(untouched).error is None
        st.wait_until(lambda: counts(st).inbox == 0)  # its worker has ingested it
        again = jobs(st, ids)
        assert [s for s, j in again.items() if j is not None and j.last_error_class == "outage"] == hit
        assert all(j.attempts == 0 for j in again.values() if j is not None)
        assert stored_breaker(st).state is not BreakerState.CLOSED

        # Plex is back: a Process Queue asks it at once and drains everything, without waiting
        # for the breaker's schedule (the worker the last task left may take a few first).
        st.plex.faults.down = False
        summary = summary_of(st.task("process_queue"))
        assert summary["deferred"] == []
        assert [sid for sid in ids if mismatches(st, sid)] == []
        assert stored_breaker(st).state is BreakerState.CLOSED
        c = counts(st)
        assert (c.due, c.deferred, c.in_flight, c.dlq, c.ledger) == (0, 0, 0, 0, n)


# --- bad token ------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_revoked_token_is_said_once_stops_processing_and_keeps_every_job(tmp_path: Path) -> None:
    n = 5
    with stage(n, seed=64, work_dir=tmp_path, settings=QUIET, on_result=audited("bad token")) as st:
        AUDIT.add_secret(st.plex.token)
        ids = st.library.sorted_ids()
        st.plex.faults.revoke_token()
        for sid in ids[:3]:
            st.hook(sid)
            st.wait_for_worker()
        errors = [line for line in worker_log(st).splitlines() if " ERROR " in line]
        assert len(errors) == 1 and "token" in errors[0], errors
        rejected = st.plex.count()
        assert rejected <= 3  # the first worker's connection attempt; later workers ask nobody
        with StateStore(st.data_dir) as state:
            assert state.get(HALT)

        for sid in ids[3:]:
            st.hook(sid)
            st.wait_for_worker()
        assert st.plex.count() == rejected
        assert len([line for line in worker_log(st).splitlines() if " ERROR " in line]) == 1
        c = counts(st)
        # Every event is kept: as a job, or still in the inbox (a halted worker takes nothing).
        assert (c.due + c.inbox, c.deferred, c.dlq, c.ledger) == (n, 0, 0, 0)
        assert all(j.attempts == 0 for j in jobs(st, ids).values() if j is not None)

        # Process Queue before the fix: one clear error line in Stash's log, nothing lost.
        before_fix = st.task("process_queue")
        error_lines = before_fix.lines("error")
        assert len(error_lines) == 1 and "token" in error_lines[0].lower(), before_fix.logs
        c = counts(st)
        assert (c.due + c.inbox, c.dlq) == (n, 0)

        st.plex.faults.restore_token()  # the user fixed the token in Plex
        summary = summary_of(st.task("process_queue"))
        assert summary["synced"] == n and [sid for sid in ids if mismatches(st, sid)] == []
        with StateStore(st.data_dir) as state:
            assert not state.get(HALT)


# --- crash safety ---------------------------------------------------------------------------


def assert_nothing_lost(st: Stage, ids) -> None:
    """Every scene is synced, still has a live job or its event waits in the inbox; nothing
    went to the dead letters."""
    live = jobs(st, ids)
    recorded = inbox_ids(st)
    lost = [sid for sid in ids if live[sid] is None and sid not in recorded and not synced(st, sid)]
    assert lost == [], f"jobs lost: {lost}"
    assert counts(st).dlq == 0


@pytest.mark.slow
def test_sigkill_of_process_queue_at_points_in_a_drain_loses_no_job(tmp_path: Path) -> None:
    # Enough scenes that the last kill point lands inside the drain: a write whose requests
    # were all answered before the hold is still recorded, and up to WRITERS + AHEAD are in
    # flight when the 13th is (with 24, all of them could finish first).
    n = 13 + WRITERS + AHEAD + 5
    with stage(n, seed=65, work_dir=tmp_path, settings=QUIET, on_result=audited("kill task")) as st:
        ids = st.library.sorted_ids()
        with queue_of(st) as queue:
            for sid in ids:
                queue.enqueue(sid, "test", time.time())

        def kill_when_synced(count: int, killed: list[int]) -> None:
            st.wait_until(lambda: bool(st.run_pids()), poll=0.005)
            (pid,) = st.run_pids()
            st.wait_until(lambda: ledger_count(st) >= count, poll=0.005)
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

        # Kill points by progress: once `at` scenes are recorded the task stalls at its next
        # Plex request until it is killed, so they land inside the drain however loaded the
        # machine ...
        for at in (2, 7, 13):
            killed: list[int] = []
            killer = threading.Thread(target=kill_when_synced, args=(at, killed))
            killer.start()
            with st.plex.faults.holding(when=lambda at=at, killed=killed: ledger_count(st) >= at and not killed):
                result = st.task("process_queue")
            killer.join()
            assert result.returncode == -signal.SIGKILL, result.stderr
            assert ledger_count(st) < n
            assert_nothing_lost(st, ids)
        # ... and one by time, through the host's cancel (what Stash's Cancel button does).
        st.plex.faults.latency = 0.05
        result = st.task("process_queue", cancel_after=0.8)
        assert_nothing_lost(st, ids)
        st.plex.faults.latency = 0.0
        summary_of(st.task("process_queue"))
        assert [(sid, mismatches(st, sid)) for sid in ids if mismatches(st, sid)] == []
        c = counts(st)
        assert (c.due, c.deferred, c.in_flight, c.dlq, c.ledger) == (0, 0, 0, 0, n)


def test_a_job_killed_in_the_middle_of_its_plex_write_is_done_again_harmlessly(tmp_path: Path) -> None:
    with stage(3, seed=66, work_dir=tmp_path, settings=QUIET, on_result=audited("kill mid-write")) as st:
        ids = st.library.sorted_ids()
        target = ids[1]
        key = st.plex_item(target).rating_key
        edit = st.plex.library.edit
        state = {"armed": True, "killed": []}

        def edit_then_kill(section, keys, query, now):
            edit(section, keys, query, now=now)  # Plex has applied the write ...
            if state["armed"] and key in keys:
                state["armed"] = False
                for pid in st.run_pids():  # ... and the plugin dies before it hears back
                    os.kill(pid, signal.SIGKILL)
                    state["killed"].append(pid)

        st.plex.library.edit = edit_then_kill
        with queue_of(st) as queue:
            for sid in ids:
                queue.enqueue(sid, "test", time.time())
        first = st.task("process_queue")
        assert first.returncode == -signal.SIGKILL and state["killed"], first.stderr
        assert mismatches(st, target) == []  # the write landed
        with queue_of(st) as queue:
            assert queue.ledger.get(target) is None  # but was never recorded
            assert queue.report.job_for_scene(target) is not None  # so the job is still there
            # Every job not acknowledged when the plugin died (the target, those after it, and
            # any written beside it by the drain's pool) is still there, once.
            unfinished = [sid for sid in ids if queue.ledger.get(sid) is None]
            assert all(queue.report.job_for_scene(sid) is not None for sid in unfinished)
        summary = summary_of(st.task("process_queue"))
        assert summary["synced"] + summary["unchanged"] == len(unfinished)
        assert [(sid, mismatches(st, sid)) for sid in ids if mismatches(st, sid)] == []
        c = counts(st)
        assert (c.due, c.deferred, c.in_flight, c.dlq, c.ledger) == (0, 0, 0, 0, len(ids))


@pytest.mark.slow
def test_sigkill_of_the_background_worker_mid_drain_loses_no_job(tmp_path: Path) -> None:
    n = 16
    with stage(n, seed=67, work_dir=tmp_path, settings=QUIET, on_result=audited("kill worker")) as st:
        ids = st.library.sorted_ids()
        for at in (3, 9):
            # The worker stalls at its next Plex request once `at` scenes are recorded, so it is
            # still draining when the test looks for it, however slow the hooks were.
            with st.plex.faults.holding(when=lambda at=at: ledger_count(st) >= at):
                for sid in ids:
                    if not synced(st, sid):
                        st.hook(sid)
                st.wait_until(lambda at=at: ledger_count(st) >= at and st.lock_holder() is not None, poll=0.01)
                pid = st.lock_holder()  # the worker that is draining right now
                assert pid is not None and pid in st.worker_pids(), (pid, st.worker_pids())
                os.kill(pid, signal.SIGKILL)
                st.wait_until(lambda: not st.worker_running())  # the OS freed the lock
            assert_nothing_lost(st, ids)
        st.hook(ids[0])  # the next save starts a worker, which recovers the abandoned flight
        st.wait_until(lambda: counts(st).ledger == n)
        st.wait_for_worker()
        assert [(sid, mismatches(st, sid)) for sid in ids if mismatches(st, sid)] == []
        c = counts(st)
        assert (c.due, c.deferred, c.in_flight, c.dlq) == (0, 0, 0, 0)


@pytest.mark.slow
def test_a_task_killed_while_waiting_for_the_handover_does_not_stop_the_worker(tmp_path: Path) -> None:
    """Stash cancels a task with SIGKILL, so the task's request to take over outlives it; the
    worker must not take that for a live request and stop for a taker that never comes."""
    n = 6
    with stage(n, seed=70, work_dir=tmp_path, settings=QUIET, on_result=audited("killed requester")) as st:
        ids = st.library.sorted_ids()
        for sid in ids[1:]:
            record_event(st.data_dir, "scene", sid, "Scene.Update.Post", time.time())
        request = st.data_dir / "handover.request"
        victims: list[int] = []

        def cancel_when_waiting() -> None:
            st.wait_until(request.exists, poll=0.01)
            for pid in st.run_pids():
                os.kill(pid, signal.SIGKILL)
                victims.append(pid)

        with st.plex.faults.holding(when=lambda: not victims):  # the worker's job in hand lasts until then
            st.hook(ids[0])
            st.wait_until(st.worker_running, poll=0.01)
            killer = threading.Thread(target=cancel_when_waiting)
            killer.start()
            task = st.task("process_queue")
            killer.join()
        assert task.returncode == -signal.SIGKILL and victims
        # No hook, no task: the worker that was running carries on and syncs everything.
        # In Plex and recorded: a job's write lands a moment before the worker records it.
        st.wait_until(lambda: all(synced(st, s) for s in ids) and ledger_count(st) == n)
        c = counts(st)
        assert (c.due, c.in_flight, c.inbox, c.dlq) == (0, 0, 0, 0)


# --- waiting costs nothing ------------------------------------------------------------------


def test_a_sleeping_worker_makes_no_request_and_uses_almost_no_cpu(tmp_path: Path) -> None:
    with stage(2, seed=68, work_dir=tmp_path, scanned=False, settings=QUIET,
               on_result=audited("idle cost")) as st:
        sid = st.library.sorted_ids()[0]
        st.pend_in_plex([sid])
        st.hook(sid)
        wait_deferred(st, [sid])
        (pid,) = st.worker_pids()
        assert st.worker_running()
        st.plex.reset_log()
        st.stash.reset_log()
        ticks = cpu_ticks(pid)
        time.sleep(2.5)
        spent = cpu_ticks(pid) - ticks
        assert st.worker_pids() == [pid]  # still the same sleeper
        assert st.plex.count() == 0 and len(st.stash.requests) == 0
        # A busy loop burns ~100 ticks/s; one stat per second costs well under one tick.
        assert spent <= 5, f"{spent} CPU ticks while asleep"
