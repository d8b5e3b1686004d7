"""The drain's batches end to end: each job of a batch is decided and acknowledged on its own.

Every run goes through the Stash host against both emulators, observed from outside: a
kill between a batch's reads and its acknowledgements, saves landing around a batch, a
429 and a 400 partway through one, and what Sync All's drain reads (nothing twice).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from emulators.plex_library import EditError
from emulators.stage import stage
from reconciliation.bulk import SYNC_PAGE
from sync_queue.jobs import JobQueue
from tests.e2e_worker_support import (
    QUIET,
    audited,
    counts,
    item_edits,
    mismatches,
    queue_of,
    summary_of,
    synced,
)
from worker.core import AHEAD, WRITERS
from worker.handover import processor

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")

BATCH_READS = ("S2PScenesById", "S2PSceneStamps")


def test_a_kill_between_a_batchs_reads_and_its_acknowledgements_brings_each_job_back_once(
        tmp_path: Path) -> None:
    with stage(8, seed=181, work_dir=tmp_path, settings=QUIET, on_result=audited("kill mid-batch")) as st:
        ids = st.library.sorted_ids()
        with queue_of(st) as queue:
            for sid in ids:
                queue.enqueue(sid, "test", time.time())
        killed: list[int] = []

        def kill_after_the_batch_read(record, phase: str) -> bool:
            if phase == "after" and record.operation_name in BATCH_READS and not killed:
                for pid in st.run_pids():  # the batch is read; nothing is acknowledged yet
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
            return False

        st.stash.faults.intercept = kill_after_the_batch_read
        first = st.task("process_queue")
        st.stash.faults.intercept = None
        assert first.returncode == -signal.SIGKILL and killed, first.stderr
        c = counts(st)
        assert (c.in_flight, c.ledger, c.dlq) == (len(ids), 0, 0)  # every job taken, none finished

        st.plex.reset_log()
        summary = summary_of(st.task("process_queue"))
        assert summary["synced"] == len(ids)
        assert item_edits(st) == len(ids)  # each job exactly once
        assert [sid for sid in ids if mismatches(st, sid)] == []
        c = counts(st)
        assert (c.due, c.deferred, c.in_flight, c.dlq, c.ledger) == (0, 0, 0, 0, len(ids))


def test_a_kill_mid_batch_charges_an_attempt_only_to_the_jobs_it_had_started(tmp_path: Path) -> None:
    """Killed while every writer waits on Plex: the jobs whose writes were in flight (and the
    few started behind them) come back once, charged the interrupted attempt; the rest of the
    batch, never started, comes back as it was taken. Repeated kills would otherwise push a
    whole batch onto the dead-letter list."""
    n = 3 * (WRITERS + AHEAD)
    with stage(n, seed=185, work_dir=tmp_path, settings=QUIET, on_result=audited("kill mid-batch, started")) as st:
        ids = st.library.sorted_ids()
        scene_of = {str(st.plex_item(sid).rating_key): sid for sid in ids}
        with queue_of(st) as queue:
            for sid in ids:
                queue.enqueue(sid, "test", time.time())
        arrived: set[int] = set()

        def item_edit(method: str, _path: str, query: dict[str, str]) -> bool:
            if method == "PUT" and query.get("type") == "1":
                arrived.add(scene_of[query["id"]])
                return True
            return False

        with st.plex.faults.holding(which=item_edit), ThreadPoolExecutor(max_workers=1) as pool:
            run = pool.submit(st.task, "process_queue")
            st.wait_until(lambda: len(arrived) >= WRITERS)  # every writer waits on Plex
            for pid in st.run_pids():
                os.kill(pid, signal.SIGKILL)
            assert run.result().returncode == -signal.SIGKILL
        in_flight = set(arrived)

        with processor(st.data_dir):
            queue = JobQueue(st.data_dir)
            try:
                assert queue.recover_abandoned(time.time()) == n  # each job back, once
                jobs = {sid: queue.report.job_for_scene(sid) for sid in ids}
            finally:
                queue.close(compact=False)
        charged = {sid for sid, job in jobs.items() if job is not None and job.attempts}
        assert in_flight <= charged <= set(ids)
        assert len(charged) <= WRITERS + AHEAD, sorted(charged)  # started: in flight, or next in line
        assert all(jobs[sid] is not None and jobs[sid].last_error_class is None for sid in set(ids) - charged)

        summary = summary_of(st.task("process_queue"))
        # An edit held at the kill landed once Plex answered it; its job, done again, finds it.
        assert (summary["synced"], summary["unchanged"]) == (n - len(in_flight), len(in_flight))
        assert [sid for sid in ids if mismatches(st, sid)] == []
        c = counts(st)
        assert (c.due, c.deferred, c.in_flight, c.dlq, c.ledger) == (0, 0, 0, 0, n)


def test_sync_all_reads_no_scene_twice_yet_a_save_after_its_listing_wins(tmp_path: Path) -> None:
    n = 30
    with stage(n, seed=182, work_dir=tmp_path, settings=QUIET, on_result=audited("save after listing")) as st:
        ids = st.library.sorted_ids()
        saved = ids[n // 2]

        def save_before_the_drain(record, phase: str) -> bool:
            if (phase == "before" and record.operation_name == "S2PSceneStamps"
                    and st.library.scenes[saved].title != "Saved after the listing"):
                # A save between the listing and the drain, without a hook: only Stash knows.
                st.library.update_scene(saved, title="Saved after the listing")
            return False

        st.stash.faults.intercept = save_before_the_drain
        summary = summary_of(st.task("all"))
        st.stash.faults.intercept = None
        assert summary["synced"] == n
        assert st.library.scenes[saved].title == "Saved after the listing"
        assert [sid for sid in ids if mismatches(st, sid)] == []  # the saved title reached Plex
        reads = [r for r in st.stash.requests if r.operation_name in ("S2PFindScene", "S2PScenesById")]
        # Only the saved scene is read again, in full; every other one came from the listing.
        assert [r.variables["ids"] for r in reads if r.operation_name == "S2PScenesById"] == [[str(saved)]]
        assert not [r for r in reads if r.operation_name == "S2PFindScene"]


def test_a_save_landing_while_its_scene_is_in_a_batch_reruns_that_scene(tmp_path: Path) -> None:
    n = 12
    with stage(n, seed=183, work_dir=tmp_path, settings=QUIET, on_result=audited("save mid-batch")) as st:
        ids = st.library.sorted_ids()
        target = ids[-1]
        st.plex.faults.latency = 0.3  # the batch lasts long enough for the hook to land inside it
        state = {"saved": False}

        def save_mid_batch(record, phase: str) -> bool:
            if phase == "after" and record.operation_name in BATCH_READS and not state["saved"]:
                state["saved"] = True  # the batch has read the target as it was
                st.library.update_scene(target, title="Saved mid-batch")
            return False

        st.stash.faults.intercept = save_mid_batch
        with queue_of(st) as queue:
            for sid in ids:
                queue.enqueue(sid, "test", time.time())
        hook = threading.Thread(target=lambda: (st.wait_until(lambda: state["saved"], timeout=30),
                                                st.hook(target)))
        hook.start()
        st.task("process_queue")
        hook.join()
        st.stash.faults.intercept = None
        st.plex.faults.latency = 0.0
        # The rerun happens in that drain or in the worker the task leaves behind.
        st.wait_until(lambda: synced(st, target) and counts(st).due + counts(st).in_flight == 0, timeout=60)
        st.wait_for_worker()
        assert st.library.scenes[target].title == "Saved mid-batch"
        assert [sid for sid in ids if mismatches(st, sid)] == []  # Plex shows the saved title


def test_a_429_partway_through_a_batch_holds_every_request_and_loses_nothing(tmp_path: Path) -> None:
    n = 16
    with stage(n, seed=184, work_dir=tmp_path, settings=QUIET, on_result=audited("429 mid-batch")) as st:
        ids = st.library.sorted_ids()
        edit = st.plex.library.edit
        state = {"edits": 0}

        def limit_after_four(section, keys, query, now):
            edit(section, keys, query, now=now)
            state["edits"] += 1
            if state["edits"] == 4:
                st.plex.faults.rate_limit(1, retry_after=7)  # a long Retry-After for the next request

        st.plex.library.edit = limit_after_four
        st.task("all")
        limited = [r for r in st.plex.requests if r.status == 429]
        assert len(limited) == 1
        at = limited[0].t
        # Requests already on their way may still arrive; after that none for the whole pause.
        during = [r for r in st.plex.requests if at + 0.5 < r.t < at + 6.5]
        assert during == [], during
        st.wait_until(lambda: all(synced(st, sid) for sid in ids), timeout=90)
        st.wait_for_worker()
        c = counts(st)
        assert (c.due, c.deferred, c.in_flight, c.dlq, c.ledger) == (0, 0, 0, 0, n)


def test_one_job_plex_rejects_is_dead_lettered_while_the_rest_of_its_batch_completes(tmp_path: Path) -> None:
    n = 10
    with stage(n, seed=185, work_dir=tmp_path, settings=QUIET, on_result=audited("400 mid-batch")) as st:
        ids = st.library.sorted_ids()
        rejected = ids[3]
        key = st.plex_item(rejected).rating_key
        edit = st.plex.library.edit

        def reject_one(section, keys, query, now):
            if key in keys:
                raise EditError("a value Plex will not take")
            return edit(section, keys, query, now=now)

        st.plex.library.edit = reject_one
        summary = summary_of(st.task("all"))
        assert summary["synced"] == n - 1
        assert [sid for sid in ids if mismatches(st, sid)] == [rejected]
        with queue_of(st) as queue:
            letters = queue.dlq.list_all()
        assert [(letter.scene_id, letter.error_class, letter.attempts) for letter in letters] == [(rejected, "invalid", 1)]
        c = counts(st)
        assert (c.due, c.deferred, c.in_flight, c.dlq, c.ledger) == (0, 0, 0, 1, n - 1)


@pytest.mark.slow
def test_two_hundred_hooks_during_a_sync_all_lose_nothing_and_their_saves_win(tmp_path: Path) -> None:
    n = 300
    with stage(n, seed=186, work_dir=tmp_path, settings=QUIET, on_result=audited("hooks during sync all")) as st:
        ids = st.library.sorted_ids()
        st.plex.faults.latency = 0.05  # the drain lasts while the hooks arrive
        saved = ids[:200]

        def saves_and_hooks() -> list:
            st.wait_until(lambda: counts(st).ledger >= 20, timeout=60, poll=0.01)  # Sync All is draining
            for sid in saved:  # saved in Stash: some done, some in a batch, some still queued
                st.library.update_scene(sid, title=f"Saved during Sync All {sid}")
            with ThreadPoolExecutor(max_workers=len(saved)) as pool:
                return list(pool.map(st.hook, saved))

        with ThreadPoolExecutor(max_workers=1) as background:
            hooks = background.submit(saves_and_hooks)
            task = st.task("all")
            results = hooks.result()
        assert task.error is None, task.stderr
        assert all(r.returncode == 0 and r.error is None for r in results)
        st.plex.faults.latency = 0.0
        # Their scenes sync in that drain or the next (the worker the task or a hook left).
        st.wait_until(lambda: counts(st).inbox == 0 and counts(st).due + counts(st).in_flight == 0
                      and not st.worker_running(), timeout=180)
        assert [sid for sid in ids if mismatches(st, sid)] == []
        c = counts(st)
        assert (c.due, c.deferred, c.in_flight, c.dlq, c.ledger) == (0, 0, 0, 0, n)


def test_sync_all_writes_its_first_pages_scenes_while_later_pages_are_listed(tmp_path: Path) -> None:
    """The listing no longer runs whole before the first write: on a real network, a library
    of 20,000 scenes spent ~9 s listing with Plex idle. Each page's jobs are drained while
    later pages are read, under one progress bar that never moves back."""
    n = 2 * SYNC_PAGE + 25
    with stage(n, seed=183, work_dir=tmp_path, settings=QUIET, on_result=audited("listing overlap")) as st:
        edits_when_listed: list[int] = []

        def note_edits_so_far(record, phase: str) -> bool:
            if phase == "before" and record.operation_name == "S2PFindScenes":
                edits_when_listed.append(st.plex.count("PUT"))
            return False

        st.stash.faults.intercept = note_edits_so_far
        result = st.task("all")
        st.stash.faults.intercept = None
        summary = summary_of(result)
        assert summary["synced"] == n and result.output["queued"] == n == result.output["scenes"]
        assert len(edits_when_listed) == 3, edits_when_listed  # three pages
        assert edits_when_listed[0] == 0 and edits_when_listed[-1] > 0, edits_when_listed
        assert result.progress == sorted(result.progress) and result.progress[-1] == 1.0
        assert [sid for sid in st.library.sorted_ids() if mismatches(st, sid)] == []


def test_sync_all_whose_drain_stops_for_an_outage_still_queues_every_scene(tmp_path: Path) -> None:
    """Plex goes away after the first page's first writes: the drain stops, and the listing
    it had not reached yet is still read and queued, so the worker left behind has it all."""
    n = 2 * SYNC_PAGE + 10
    with stage(n, seed=184, work_dir=tmp_path, settings=QUIET, on_result=audited("listing outage")) as st:
        st.plex.faults.down_after(5)
        result = st.task("all")
        summary = summary_of(result)
        assert result.output["queued"] == n == result.output["scenes"], result.output
        assert "probe" in (summary["stopped"] or ""), summary
        c = counts(st)
        assert c.ledger + c.due + c.deferred + c.in_flight == n, c
        assert c.ledger < n
