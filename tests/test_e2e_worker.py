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
    item_edits,
    ledger_count,
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
        with st.plex.faults.holding():  # the worker cannot finish before we look
            result = st.hook(sid)
            assert result.error is None and result.returncode == 0, result.stderr
            assert result.output["worker_started"] is True
            assert result.lines("error") == [] and result.lines("warning") == []
            # The hook has returned (Stash read its stdout to EOF) while its worker still works:
            # the worker holds none of the hook's stdio, so a save never waits for a sync.
            assert st.worker_pids(), "the hook waited for its worker"
        st.wait_for_worker()
        assert mismatches(st, sid) == []
        assert not st.worker_running()  # lock free ...
        st.wait_until(lambda: not st.worker_pids())  # ... and the process gone
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
        st.wait_until(lambda: synced(st, second))
        st.wait_for_worker()
        assert counts(st).inbox == 0


def process_line(pid: int) -> str:
    """pid, parent, state and command line of a process, from /proc (for a failure message)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError as exc:
        return f"{pid}: gone ({exc})"
    state, ppid = stat[stat.rindex(")") + 2:].split()[:2]
    return f"{pid} (parent {ppid}, state {state}): {cmdline.strip()}"


@pytest.mark.slow
def test_two_hooks_at_once_give_one_worker(tmp_path: Path) -> None:
    with stage(6, seed=53, work_dir=tmp_path, settings=QUIET, on_result=audited("two hooks")) as st:
        ids = st.library.sorted_ids()
        seen: set[int] = set()
        most = 0
        together: list[str] = []  # what /proc showed the first time two were seen
        done = threading.Event()

        def watch() -> None:
            nonlocal most
            while not done.is_set():
                pids = st.worker_pids()
                seen.update(pids)
                most = max(most, len(pids))
                if len(pids) > 1 and not together:
                    together.extend(process_line(pid) for pid in pids)
                done.wait(0.01)

        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            for pair in (ids[:2], ids[2:4]):  # from cold: no worker, then two saves together
                st.wait_until(lambda: not st.worker_pids())
                # the worker outlives both hook processes, however slow they start
                with st.plex.faults.holding(), ThreadPoolExecutor(max_workers=2) as pool:
                    results = list(pool.map(st.hook, pair))
                assert [r.error for r in results] == [None, None]
                assert sorted(bool(r.output["worker_started"]) for r in results) == [False, True]
                st.wait_until(lambda pair=pair: all(synced(st, s) for s in pair))
            # while a worker drains: two saves together start nobody, the worker takes both
            st.wait_until(lambda: not st.worker_pids())
            with st.plex.faults.holding():  # this worker's drain lasts until both saves are in
                assert st.hook(ids[4]).output["worker_started"] is True
                st.wait_until(st.worker_running, poll=0.01)
                with ThreadPoolExecutor(max_workers=2) as pool:
                    results = list(pool.map(st.hook, [ids[5], ids[0]]))
            assert [r.output["worker_started"] for r in results] == [False, False]
            st.wait_until(lambda: synced(st, ids[4]) and synced(st, ids[5]))
            st.wait_for_worker()
        finally:
            done.set()
            watcher.join()
        assert most == 1, f"{most} workers ran at once: {together}"
        assert 2 <= len(seen) <= 3  # one per cold round, one for the third; never two at once
        assert [s for s in ids if not synced(st, s)] == []


@pytest.mark.slow
def test_process_queue_takes_over_from_a_draining_worker(tmp_path: Path) -> None:
    from worker.core import AHEAD, WRITERS

    # More jobs than a worker can finish once held: those it started before the hold (they
    # may have their answers already), then those in flight when the task releases it.
    n = 2 * (WRITERS + AHEAD) + 6
    with stage(n, seed=54, work_dir=tmp_path, settings=QUIET, on_result=audited("takeover draining")) as st:
        ids = st.library.sorted_ids()
        request = st.data_dir / "handover.request"
        for sid in ids[1:]:  # saves recorded a moment ago; the last one's hook starts the worker
            record_event(st.data_dir, "scene", sid, "Scene.Update.Post", time.time())
        # The worker stalls in its third job until the task asks it to hand over: however slow
        # the task is to start, the worker is still draining when it does.
        with st.plex.faults.holding(when=lambda: ledger_count(st) >= 2 and not request.exists()):
            st.hook(ids[0])
            st.wait_until(lambda: ledger_count(st) >= 2)  # the worker is draining
            assert st.worker_running()
            result = st.task("process_queue")
        summary = summary_of(result)
        assert result.progress and result.progress[0] == 0.0 and result.progress[-1] == 1.0
        assert result.progress == sorted(result.progress)
        assert all(0.0 <= p <= 1.0 for p in result.progress)
        worker_synced = sum(int(line.split("Stash2Plex: ")[1].split(" synced")[0])
                            for line in worker_log(st).splitlines() if " synced, " in line)
        # Taken over, not run beside: the two processors split the jobs, none done twice.
        assert summary["synced"] >= 1 and worker_synced >= 2
        assert summary["synced"] + worker_synced == n
        assert item_edits(st) == n  # a collection's own edit (type 18) is no scene's
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
    the drain's last inbox read. The task must leave a worker for it when it finishes.

    The hook runs inside the task's last Plex write, so the task waits for it. The drain
    reads the inbox again once `INGEST_EVERY` has passed since its last read: on a machine
    busy enough that the hook outlasts that, the drain itself takes the save in, which is
    the other correct outcome; nothing outside the plugin can hold that clock back, so the
    test accepts either and checks each for what it must show."""
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
        assert hooked and hooked[0].output["worker_started"] is False  # the task held the lock
        by_task = summary_of(result)["synced"]
        assert by_task in (len(queued), len(queued) + 1), summary_of(result)
        st.wait_until(lambda: synced(st, saved))
        st.wait_for_worker()
        assert counts(st).inbox == 0
        if by_task == len(queued):  # the tail: the save was synced by the worker the task left
            assert "Stash2Plex: 1 synced" in worker_log(st), worker_log(st)


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


def test_a_plugin_process_s_own_fork_is_not_counted_as_another_run(tmp_path: Path) -> None:
    """What the worker counts above rest on: a fork that has not exec'd yet (plexapi's import
    runs `uname -p`) shows its parent's command line and folder, and is not a second worker."""
    import subprocess
    import sys

    from emulators.stage import _entrypoint_pids

    script = tmp_path / "Stash2Plex.py"
    script.write_text("import os, sys, time\n"
                      "child = os.fork()\n"
                      "if child == 0:\n"
                      "    time.sleep(60); os._exit(0)\n"
                      "print(child, flush=True)\n"
                      "sys.stdin.read()\n"
                      "os.kill(child, 9)\n")
    proc = subprocess.Popen([sys.executable, str(script)], cwd=tmp_path, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        child = int(proc.stdout.readline())
        assert Path(f"/proc/{child}/cmdline").read_bytes().endswith(b"Stash2Plex.py\0")  # looks the same
        assert _entrypoint_pids(tmp_path) == [proc.pid]
    finally:
        proc.communicate("", timeout=60)


def test_the_stray_worker_sweep_takes_only_this_session_s_processes(tmp_path: Path) -> None:
    """At its end a session kills plugin processes left in its own temporary folders; a
    session beside it (base `pytest-404` next to our `pytest-40`) must keep its own."""
    import subprocess
    import sys

    from tests.conftest import _stray_workers

    ours, theirs = tmp_path / "pytest-40" / "t0", tmp_path / "pytest-404" / "t0"
    procs = []
    for cwd in (ours, theirs):
        cwd.mkdir(parents=True)
        (cwd / "Stash2Plex.py").write_text("import sys\nsys.stdin.read()\n")
        procs.append(subprocess.Popen([sys.executable, str(cwd / "Stash2Plex.py")], cwd=cwd, stdin=subprocess.PIPE))
    try:
        assert [pid for pid, _ in _stray_workers(tmp_path / "pytest-40")] == [procs[0].pid]
    finally:
        for proc in procs:
            proc.communicate(b"", timeout=60)
