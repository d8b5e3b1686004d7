"""Issue 5 end to end: the background worker and Process Queue, run as Stash runs the plugin.

Every run goes through the Stash host (a subprocess with Stash's stdin, stdout and stderr
handling) against the emulated Stash and Plex; the tests look at the plugin only from
outside: its stdout JSON, Stash's log lines, the worker log, the queue file, the request logs
of both servers and /proc. A sleeping worker is never waited out: `Stage.age` moves the
stored schedule instead (see there).
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from emulators.stage import stage
from sync_queue.inbox import record_event
from tests.e2e_worker_support import (
    QUIET,
    audited,
    counts,
    deferred_ids,
    lookups,
    mismatches,
    queue_of,
    summary_of,
    synced,
    worker_log,
)
from tests.secret_audit import AUDIT

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")


def test_a_hook_starts_a_detached_worker_that_syncs_logs_and_exits(tmp_path: Path) -> None:
    with stage(4, seed=51, work_dir=tmp_path, settings=QUIET, on_result=audited("hook worker")) as st:
        AUDIT.add_secret(st.plex.token)
        sid = st.library.sorted_ids()[0]
        st.plex.faults.latency = 0.2  # the worker's few requests take a while: long enough to see it
        result = st.hook(sid)
        assert result.error is None and result.returncode == 0, result.stderr
        assert result.output["worker_started"] is True
        assert result.lines("error") == [] and result.lines("warning") == []
        # The hook has returned (Stash read its stdout to EOF) while its worker still works:
        # the worker holds none of the hook's stdio, so a save never waits for a sync.
        assert st.worker_pids(), "the hook waited for its worker"
        st.wait_for_worker()
        st.plex.faults.latency = 0.0
        assert mismatches(st, sid) == []
        assert not st.worker_running()  # lock free ...
        st.wait_until(lambda: not st.worker_pids(), timeout=10)  # ... and the process gone
        log = worker_log(st)
        assert "Stash2Plex: 1 synced, 0 unchanged" in log, log
        assert (st.data_dir / "worker.log").stat().st_size < 1_000_000  # rotating file, bounded
        c = counts(st)
        assert (c.due, c.deferred, c.in_flight, c.inbox, c.ledger) == (0, 0, 0, 0, 1)


def test_a_hook_soon_after_a_worker_finished_starts_the_next_one(tmp_path: Path) -> None:
    """A save a few seconds after the last worker exited must not sit in the inbox until
    some later hook comes along."""
    with stage(3, seed=52, work_dir=tmp_path, settings=QUIET, on_result=audited("hook after worker")) as st:
        first, second = st.library.sorted_ids()[:2]
        assert st.hook(first).output["worker_started"] is True
        st.wait_for_worker()
        assert synced(st, first)
        result = st.hook(second)
        assert result.error is None
        st.wait_until(lambda: synced(st, second), timeout=20)
        st.wait_for_worker()
        assert counts(st).inbox == 0


@pytest.mark.slow
def test_two_hooks_at_once_give_one_worker(tmp_path: Path) -> None:
    with stage(6, seed=53, work_dir=tmp_path, settings=QUIET, on_result=audited("two hooks")) as st:
        ids = st.library.sorted_ids()
        st.plex.faults.latency = 0.1
        seen: set[int] = set()
        most = 0
        done = threading.Event()

        def watch() -> None:
            nonlocal most
            while not done.is_set():
                pids = st.worker_pids()
                seen.update(pids)
                most = max(most, len(pids))
                time.sleep(0.01)

        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            for pair in (ids[:2], ids[2:4]):  # from cold: no worker, then two saves together
                st.wait_until(lambda: not st.worker_pids(), timeout=20)
                st.plex.faults.latency = 1.0  # the worker outlives both hook processes, however slow they start
                with ThreadPoolExecutor(max_workers=2) as pool:
                    results = list(pool.map(st.hook, pair))
                st.plex.faults.latency = 0.1
                assert [r.error for r in results] == [None, None]
                assert sorted(bool(r.output["worker_started"]) for r in results) == [False, True]
                st.wait_until(lambda pair=pair: all(synced(st, s) for s in pair), timeout=30)
            # while a worker drains: two saves together start nobody, the worker takes both
            st.wait_until(lambda: not st.worker_pids(), timeout=20)
            st.plex.faults.latency = 0.4  # this worker's drain lasts a few seconds
            assert st.hook(ids[4]).output["worker_started"] is True
            st.wait_until(st.worker_running, timeout=20, poll=0.01)
            with ThreadPoolExecutor(max_workers=2) as pool:
                results = list(pool.map(st.hook, [ids[5], ids[0]]))
            assert [r.output["worker_started"] for r in results] == [False, False]
            st.wait_until(lambda: synced(st, ids[4]) and synced(st, ids[5]), timeout=30)
            st.wait_for_worker()
        finally:
            done.set()
            watcher.join()
        assert most == 1, f"{most} workers ran at once"
        assert 2 <= len(seen) <= 3  # one per cold round, one for the third; never two at once
        assert [s for s in ids if not synced(st, s)] == []


@pytest.mark.slow
def test_process_queue_takes_over_from_a_draining_worker(tmp_path: Path) -> None:
    n = 20
    with stage(n, seed=54, work_dir=tmp_path, settings=QUIET, on_result=audited("takeover draining")) as st:
        ids = st.library.sorted_ids()
        # The worker alone would need seconds (it writes several scenes at once): time for the task to start.
        st.plex.faults.latency = 0.8
        for sid in ids[1:]:  # saves recorded a moment ago; the last one's hook starts the worker
            record_event(st.data_dir, "scene", sid, "Scene.Update.Post", time.time())
        st.hook(ids[0])
        st.wait_until(lambda: counts(st).ledger >= 2, timeout=30)  # the worker is draining
        assert st.worker_running()
        handed = threading.Event()

        def speed_up_after_the_request() -> None:
            st.wait_until(lambda: (st.data_dir / "handover.request").exists() or handed.is_set(), poll=0.01)
            st.plex.faults.latency = 0.0

        helper = threading.Thread(target=speed_up_after_the_request)
        helper.start()
        result = st.task("process_queue")
        handed.set()
        helper.join()
        summary = summary_of(result)
        assert result.progress and result.progress[0] == 0.0 and result.progress[-1] == 1.0
        assert result.progress == sorted(result.progress)
        assert all(0.0 <= p <= 1.0 for p in result.progress)
        worker_synced = sum(int(line.split("Stash2Plex: ")[1].split(" synced")[0])
                            for line in worker_log(st).splitlines() if " synced, " in line)
        # Taken over, not run beside: the two processors split the jobs, none done twice.
        assert summary["synced"] >= 1 and worker_synced >= 2
        assert summary["synced"] + worker_synced == n
        assert st.plex.count("PUT", "/library/sections/1/all") == n
        assert [sid for sid in ids if mismatches(st, sid)] == []
        assert any("synced" in line for line in result.lines("info"))


@pytest.mark.slow
def test_process_queue_takes_over_from_a_sleeping_worker_and_reports_what_waits(tmp_path: Path) -> None:
    with stage(3, seed=55, work_dir=tmp_path, scanned=False, settings=QUIET,
               on_result=audited("takeover sleeping")) as st:
        waiting, fresh, _ = st.library.sorted_ids()
        st.pend_in_plex([waiting])
        st.scan_into_plex([fresh])
        st.hook(waiting)
        with queue_of(st) as queue:
            st.wait_until(lambda: (j := queue.report.job_for_scene(waiting)) is not None and j.attempts == 1)
            due_at = queue.report.job_for_scene(waiting).next_retry_at
        assert st.worker_running()  # asleep until the job's due time
        (pid,) = st.worker_pids()

        # New work arrives as a hook records it, without the hook's wake-up of the sleeper:
        # only the task's handover request can end its sleep here.
        record_event(st.data_dir, "scene", fresh, "Scene.Update.Post", time.time())
        result = st.task("process_queue")
        summary = summary_of(result)
        assert summary["synced"] == 1 and synced(st, fresh)
        assert deferred_ids(summary) == {waiting}
        (entry,) = summary["deferred"]
        assert entry["error_class"] == "not_found" and entry["next_retry_at"] == pytest.approx(due_at)
        # It stopped when nothing was due instead of waiting out the backoff ...
        assert time.time() < due_at
        # ... and said when the deferred scene is next tried.
        text = "\n".join(result.lines("info"))
        assert f"Deferred scene {waiting}" in text and "next try in" in text
        assert lookups(st, waiting) == 1
        assert pid not in st.worker_pids()  # the sleeper handed over and exited
        assert result.progress[0] == 0.0 and result.progress[-1] == 1.0


def test_a_save_during_the_tail_of_process_queue_is_synced_after_it(tmp_path: Path) -> None:
    """The hook finds the task holding the lock, so it starts nobody; its event lands after
    the drain's last inbox read. The task must leave a worker for it when it finishes."""
    with stage(4, seed=56, work_dir=tmp_path, settings=QUIET, on_result=audited("save during task")) as st:
        queued, saved = st.library.sorted_ids()[:3], st.library.sorted_ids()[3]
        for sid in queued:
            record_event(st.data_dir, "scene", sid, "Scene.Update.Post", time.time())
        last_key = st.plex_item(queued[-1]).rating_key
        edit = st.plex.library.edit
        hooked = []

        def edit_then_save(section, keys, query, now):
            edit(section, keys, query, now=now)
            if last_key in keys and not hooked:  # the task's last write: the user saves meanwhile
                hooked.append(st.hook(saved))

        st.plex.library.edit = edit_then_save
        result = st.task("process_queue")
        assert summary_of(result)["synced"] == len(queued)
        assert hooked and hooked[0].output["worker_started"] is False  # the task held the lock
        st.wait_until(lambda: synced(st, saved), timeout=20)
        st.wait_for_worker()
        assert counts(st).inbox == 0


def test_a_worker_that_finds_the_lock_taken_withdraws_its_spawn_stamp(tmp_path: Path) -> None:
    """A task took the lock between a hook's spawn and the worker's start: the worker gives
    up, and must not leave the stamp that would stop the task's own worker start at its end."""
    from sync_queue.lock import ProcessorLock
    from worker.launch import SPAWN_STAMP, stamp

    with stage(2, seed=53, work_dir=tmp_path, settings=QUIET, on_result=audited("gives up")) as st:
        AUDIT.add_secret(st.plex.token)
        stamp(st.data_dir / SPAWN_STAMP, time.time())
        with ProcessorLock(st.data_dir):  # the task
            result = st.host.run_raw(st.host.build_input({"mode": "_worker"}))
        assert result.output == {"worker": "another processor is running"}, result.stdout
        assert not (st.data_dir / SPAWN_STAMP).exists()
