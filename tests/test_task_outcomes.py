"""How a foreground task ends when its drain stops early, through the Stash host.

A drain stops for two different kinds of reason. An open circuit breaker is a wait: the task
succeeds, says when the probe goes, and leaves a background worker that sends it and drains
the rest without anyone clicking again. A bad token or an unusable setting needs the user:
the task fails with that one cause, and every job stays queued.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from emulators.stage import stage
from sync_queue.db import connect, write_txn
from sync_queue.jobs import JobQueue
from sync_queue.state import BREAKER, StateStore
from tests.secret_audit import AUDIT
from worker.breaker import Breaker, BreakerState
from worker.launch import WAKE_FILE, stamp


def _audit(result) -> None:
    AUDIT.record("task outcomes", result.stdout + result.stderr)


def test_sync_all_against_a_down_plex_succeeds_and_leaves_a_worker_that_recovers(tmp_path: Path) -> None:
    with stage(6, seed=4, work_dir=tmp_path, on_result=_audit) as st:
        AUDIT.add_secret(st.plex.token)
        st.plex.faults.down = True
        result = st.task("all")
        assert result.error is None, result.logs
        assert not result.lines("error"), result.logs
        summary = result.output["summary"]
        assert summary["synced"] == 0 and "probe" in (summary["stopped"] or ""), summary
        # Nobody clicks again: the task left a worker waiting for the breaker's probe.
        st.wait_until(st.worker_running)
        with StateStore(st.data_dir) as state:
            assert Breaker.load(state.get(BREAKER)).state is BreakerState.OPEN

        st.plex.faults.down = False
        # Skip the 30 s open interval without making the worker hand over (which is what
        # `stage.age` does): move the probe time, and the jobs held for it, to now, and wake
        # the worker the way a hook would.
        with StateStore(st.data_dir) as state:
            state.update(BREAKER, lambda text: replace(Breaker.load(text), open_until=time.time() - 1).to_json())
        conn = connect(st.data_dir)
        try:
            with write_txn(conn) as txn:
                txn.execute("UPDATE schedule SET next_retry_at = MIN(next_retry_at, ?)", (time.time(),))
        finally:
            conn.close()
        stamp(st.data_dir / WAKE_FILE, time.time())

        queue = JobQueue(st.data_dir)
        try:
            st.wait_until(lambda: queue.report.counts(time.time()).ledger == 6, timeout=60)
        finally:
            queue.close(compact=False)
        for sid in st.library.sorted_ids():
            scene = st.library.scenes[sid]
            if scene.title:
                assert st.plex_item(sid).title == scene.title
        log = (st.data_dir / "worker.log").read_text(encoding="utf-8")
        assert " ERROR " not in log, log


def test_process_queue_with_a_revoked_token_fails_once_and_keeps_every_job(tmp_path: Path) -> None:
    with stage(4, seed=4, work_dir=tmp_path, on_result=_audit) as st:
        AUDIT.add_secret(st.plex.token)
        for sid in st.library.sorted_ids():
            st.plex.faults.revoke_token()
            st.hook(sid)
        st.stop_workers()
        result = st.task("process_queue")
        assert result.error and "token" in result.error.lower(), result.logs
        assert len(result.lines("error")) == 1, result.logs
        assert "Traceback" not in result.stderr
        queue = JobQueue(st.data_dir)
        try:
            counts = queue.report.counts(time.time())
        finally:
            queue.close(compact=False)
        assert counts.due + counts.deferred + counts.in_flight == 4 and counts.dlq == 0, counts


def test_process_queue_with_plex_down_takes_in_every_recorded_save(tmp_path: Path) -> None:
    """A save recorded before the task (its hook found a worker about to hand over, say) is
    taken in even though the task's first question to Plex fails: events become jobs before
    Plex is asked, not only when it answers. On a busy machine the worker has not always
    taken the last save in by the time a task takes over."""
    from sync_queue.inbox import record_event

    with stage(4, seed=5, work_dir=tmp_path, on_result=_audit) as st:
        AUDIT.add_secret(st.plex.token)
        ids = st.library.sorted_ids()
        st.plex.faults.down = True
        assert st.task("all").error is None  # every scene queued; the breaker opens on the outage
        st.stop_workers()  # the worker the task left hands over
        with StateStore(st.data_dir) as state:
            assert Breaker.load(state.get(BREAKER)).state is BreakerState.OPEN
        st.library.update_scene(ids[0], title="Saved while Plex was down")
        record_event(st.data_dir, "scene", ids[0], "Scene.Update.Post", time.time())

        result = st.task("process_queue")
        assert result.error is None, result.logs
        # Counted by the task itself as it ended, before the worker it leaves could look.
        assert result.output["queue"]["inbox"] == 0, result.output["queue"]
        assert result.output["queue"]["due"] + result.output["queue"]["deferred"] == len(ids), result.output["queue"]
