"""Bugs the chaos soak (`bench/bench_chaos.py`) found, each replayed on its own, deterministically.

Same rules as the other end-to-end tests: the plugin runs through the Stash host against
both emulators and is observed from outside.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from emulators.stage import Stage, stage
from sync_queue.state import HALT, StateStore
from tests.e2e_worker_support import QUIET, audited, summary_of
from tests.secret_audit import AUDIT


def kill_after_the_edit_of(st: Stage, key: int) -> None:
    """The next edit of the item is applied by Plex, then the plugin running it is killed
    before it hears back, let alone records it."""
    import os
    import signal

    edit = st.plex.library.edit
    armed = {"on": True}

    def edit_then_kill(section, keys, query, now):
        edit(section, keys, query, now=now)
        if armed["on"] and key in keys:
            armed["on"] = False
            for pid in st.run_pids():
                os.kill(pid, signal.SIGKILL)

    st.plex.library.edit = edit_then_kill


def halted(st: Stage) -> bool:
    with StateStore(st.data_dir) as state:
        return bool(state.get(HALT))


@pytest.mark.parametrize("mode", ["all", "reconcile_all"])
def test_a_sync_task_that_works_with_the_token_lifts_the_halt_for_the_next_saves(tmp_path: Path, mode: str) -> None:
    """Plex refused the token for a while (the worker halted, as it should), then took it
    again. The user runs Sync All (or Reconcile), which syncs with that token: saves made
    after it must sync again too, not wait for a Process Queue nobody knows to run."""
    with stage(4, seed=80, work_dir=tmp_path, settings=QUIET, on_result=audited("halt lifted")) as st:
        AUDIT.add_secret(st.plex.token)
        first, later, *_ = st.library.sorted_ids()
        st.plex.faults.revoke_token()
        assert st.hook(first).error is None
        st.wait_for_worker()
        assert halted(st)

        st.plex.faults.restore_token()
        summary = summary_of(st.task(mode))
        assert summary["stopped"] is None
        assert not halted(st)
        st.library.update_scene(later, title="Saved after the token works again")
        assert st.hook(later).error is None
        st.wait_until(lambda: st.plex_item(later).title == "Saved after the token works again", timeout=60)


def test_a_collection_written_by_a_job_killed_before_it_recorded_goes_when_the_studio_changes(
        tmp_path: Path) -> None:
    """Found by the chaos soak (seed 19): a studio rename reached Plex, the job was killed
    before it recorded the write, then the scene moved to another studio. The old studio's
    collection (under its new name) must go like any former studio's."""
    import signal
    import time

    from tests.e2e_worker_support import queue_of

    with stage(12, seed=81, work_dir=tmp_path, settings=QUIET, on_result=audited("kill before record")) as st:
        lib = st.library
        target = next(sid for sid in lib.sorted_ids() if lib.scenes[sid].studio_id is not None)
        old = lib.scenes[target].studio_id
        new = next(s for s in lib.studios if s != old)
        assert summary_of(st.task("all"))["stopped"] is None
        key = st.plex_item(target).rating_key
        with st.stash.write_lock:
            lib.studios[old].name = "Renamed studio"
            lib.revision += 1
        kill_after_the_edit_of(st, key)
        with queue_of(st) as queue:
            queue.enqueue(target, "test", time.time())
        assert st.task("process_queue").returncode == -signal.SIGKILL
        assert st.plex_item(target).tag_names("collection") == ["Renamed studio"]

        lib.update_scene(target, studio_id=new)
        assert summary_of(st.task("process_queue"))["stopped"] is None
        assert st.plex_item(target).tag_names("collection") == [lib.studios[new].name]


def test_a_rename_waits_for_an_edit_in_flight_that_takes_an_item_out_of_the_collection(tmp_path: Path) -> None:
    """Found by the chaos soak (seed 19): one batch held a scene leaving its studio and, after
    it, a scene of the same studio, renamed in Stash. The first scene's edit (a removal by
    the old name) was still in flight when the second scene's sync renamed the collection in
    place; landing after it, the removal named a collection Plex no longer had, and the item
    stayed in the renamed one. Plex holds that one edit until the rename arrives (or a while):
    the rename must wait for it. A third scene of the studio, read with the batch before the
    rename, is in the collection under its new name: its edit must not tag it with the old."""
    import time

    from tests.e2e_worker_support import queue_of

    with stage(12, seed=82, work_dir=tmp_path, settings=QUIET, on_result=audited("rename in flight")) as st:
        lib = st.library
        by_studio: dict[int, list[int]] = {}
        for sid in lib.sorted_ids():
            if lib.scenes[sid].studio_id is not None and not lib.scenes[sid].groups:
                by_studio.setdefault(lib.scenes[sid].studio_id, []).append(sid)
        studio, (leaving, staying, later, *_) = next((s, ids) for s, ids in by_studio.items() if len(ids) >= 3)
        assert summary_of(st.task("all"))["stopped"] is None
        old_name = lib.studios[studio].name
        assert st.plex_item(leaving).tag_names("collection") == [old_name]
        leaving_key = st.plex_item(leaving).rating_key
        section = st.plex.library.item(int(leaving_key)).section

        with st.stash.write_lock:
            lib.studios[studio].name = "Renamed studio"
            lib.revision += 1
        lib.update_scene(leaving, studio_id=None)
        with queue_of(st) as queue:
            queue.enqueue(leaving, "test", time.time())
            queue.enqueue(staying, "test", time.time() + 0.001)
            queue.enqueue(later, "test", time.time() + 0.002)  # read before the rename, synced after it

        def leaving_edit(method: str, path: str, query: dict[str, str]) -> bool:
            return method == "PUT" and query.get("type") == "1" and query.get("id") == str(leaving_key)

        def not_renamed_yet() -> bool:
            return st.plex.collections.by_title(section, old_name) is not None

        with st.plex.faults.holding(when=not_renamed_yet, ceiling=5.0, which=leaving_edit):
            assert summary_of(st.task("process_queue"))["stopped"] is None
        assert st.plex_item(leaving).tag_names("collection") == []
        assert st.plex_item(staying).tag_names("collection") == ["Renamed studio"]
        assert st.plex_item(later).tag_names("collection") == ["Renamed studio"]
        assert st.plex.collections.by_title(section, old_name) is None  # no second one under the old name


@pytest.mark.parametrize("synced_before", [True, False], ids=["later sync", "first sync"])
def test_a_lock_set_by_an_edit_killed_before_it_recorded_stays_ours(tmp_path: Path, synced_before: bool) -> None:
    """Found by the chaos soak (seed 3): a sync's edit set the title and its lock, Plex took
    it, and the plugin was killed before the ledger row recorded that lock. The next Stash
    save of the title must still reach Plex: the lock is the plugin's own, not a person's.
    Its first sync had left the title alone (the scene had none), or there was no first
    sync at all (no ledger row). A field a person locked before the killed sync stays theirs."""
    import signal
    import time

    from tests.e2e_worker_support import queue_of

    with stage(6, seed=83, work_dir=tmp_path, settings=QUIET, on_result=audited("lock in flight")) as st:
        lib = st.library
        target = lib.sorted_ids()[2]
        key = st.plex_item(target).rating_key
        st.plex.user_edit(key, locks=["summary"], summary="Typed in Plex")
        if synced_before:
            lib.update_scene(target, title="")  # the first sync leaves the title alone
            assert summary_of(st.task("all"))["stopped"] is None
            with queue_of(st) as queue:
                assert "title" not in queue.ledger.get(target).written["locks"]
            assert not st.plex_item(target).is_locked("title")
        kill_after_the_edit_of(st, key)
        lib.update_scene(target, title="Killed before recorded")
        with queue_of(st) as queue:
            queue.enqueue(target, "test", time.time())
        assert st.task("process_queue").returncode == -signal.SIGKILL
        item = st.plex_item(target)
        assert item.title == "Killed before recorded" and item.is_locked("title")
        with queue_of(st) as queue:
            row = queue.ledger.get(target)
            assert row is None or "title" not in row.written["locks"]  # the lock was never recorded

        lib.update_scene(target, title="Saved after the kill")
        assert st.hook(target).error is None
        st.wait_for_worker()
        item = st.plex_item(target)
        assert item.title == "Saved after the kill"
        assert item.fields.get("summary") == "Typed in Plex"  # a person's lock is still theirs
        with queue_of(st) as queue:
            written = queue.ledger.get(target).written
            assert "title" in written["locks"] and "summary" not in written["locks"]
            assert written["user_locked"] == ["summary"]
            assert queue.ledger.in_flight(target) is None  # recorded with the ledger row
