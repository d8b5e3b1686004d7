"""Issue 7 points 2 and 4 end to end: Reconcile and auto-reconcile, run as Stash runs them.

Every run goes through the Stash host against the emulated Stash and Plex. A gap is made
the way it happens for real (a Stash edit, an item Plex lost, an agent refresh, a hand
edit in Plex), then the test reads the plugin's JSON and log lines, the queue beside it and
the servers' request logs, and checks the Plex item itself with the independent
`mismatches` of the worker tests.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from emulators.stage import Stage, plex_path, stage
from sync_queue.state import LAST_RECONCILE, StateStore
from tests.e2e_worker_support import QUIET, audited, counts, mismatches, queue_of, worker_log, writes
from tests.secret_audit import AUDIT

NO_GAPS = {"missing": 0, "never_synced": 0, "stale": 0, "empty": 0, "drifted": 0}
DAY = 86400.0


def ok(result: Any) -> dict[str, Any]:
    assert result.error is None and result.returncode == 0, (result.error, result.stderr[-3000:])
    assert isinstance(result.output, dict), result.stdout
    return result.output


def gaps(**found: int) -> dict[str, int]:
    return {**NO_GAPS, **found}


def synced_stage(tmp_path: Path, n: int = 8, seed: int = 71, **settings: Any):
    """A stage whose library went through one Sync All."""
    return stage(n, seed=seed, work_dir=tmp_path, settings={**QUIET, **settings},
                 on_result=audited("reconcile e2e"))


def sync_all(st: Stage) -> None:
    AUDIT.add_secret(st.plex.token)
    out = ok(st.task("all"))
    assert out["summary"]["synced"] == len(st.library.scenes), out
    st.plex.reset_log()
    st.stash.reset_log()


def edit_item(st: Stage, scene_id: int, **fields: Any) -> int:
    """Change fields of the scene's Plex item by hand (None deletes); its rating key."""
    with st.plex.lock:
        item = st.plex_item(scene_id)
        for name, value in fields.items():
            if value is None:
                item.fields.pop(name, None)
            else:
                item.fields[name] = value
        item.reindex()
        st.plex.library.sections[item.section].order = None
        return item.rating_key


def with_metadata(st: Stage) -> list[int]:
    """Scenes with a title, a summary and a studio: every kind of gap can show on them."""
    lib = st.library
    return [s for s in lib.sorted_ids() if lib.scenes[s].title and lib.scenes[s].details and lib.scenes[s].studio_id]


def test_sync_all_then_reconcile_on_an_unchanged_library_queues_and_writes_nothing(tmp_path: Path) -> None:
    with synced_stage(tmp_path, n=12) as st:
        sync_all(st)
        out = ok(st.task("reconcile_all"))
        assert out["gaps"] == NO_GAPS and out["queued"] == 0, out
        assert (out["scenes"], out["plex_items"], out["in_sync"]) == (12, 12, 12)
        assert out["completed"] is True
        assert writes(st) == 0
        # Plex was read through listings only: no per-scene read, no narrow look-up.
        assert st.plex.count("GET", "/library/metadata") == 0
        assert st.plex.count("GET", "/library/sections/1/all") >= 1
        c = counts(st)
        assert (c.due, c.deferred, c.in_flight, c.ledger) == (0, 0, 0, 12)
        info = st.task("reconcile_all").lines("info")
        assert "Stash2Plex reconcile: 0 missing in Plex." in info
        assert "Stash2Plex reconcile: 12 scenes checked against 12 Plex items, 12 in sync, 0 queued." in info


def test_each_gap_type_is_found_queued_with_its_reason_and_fixed(tmp_path: Path) -> None:
    with synced_stage(tmp_path, n=10, trigger_plex_scan=True, lock_synced_fields=False) as st:
        sync_all(st)
        stale, missing, empty, drifted = with_metadata(st)[:4]
        lib = st.library
        lib.update_scene(stale, title="Renamed in Stash")
        (missing_path,) = st.scene_files([missing])
        st.plex.remove_item(st.plex_item(missing).rating_key)
        st.plex.add_pending(missing_path)  # on Plex's disk, not scanned: a sync asks for the scan
        with st.plex.lock:  # an agent refresh: unlocked fields go back to the file name / nothing
            st.plex.library.refresh(st.plex_item(empty).rating_key, int(time.time()))
        edit_item(st, drifted, title="Typed in Plex")
        new = lib.add_scene(files=["/data/stash/new/brand-new.mp4"], title="Brand New", details="Fresh.")
        st.scan_into_plex([new])

        out = ok(st.task("reconcile_all"))
        assert out["gaps"] == gaps(missing=1, never_synced=1, stale=1, empty=1, drifted=1), out
        assert out["queued"] == 5
        ex = out["examples"]
        tried = [plex_path(f.path) for f in lib.scenes[missing].files]  # every file, primary first
        assert tried[0] == missing_path
        assert ex["missing"] == [{"scene_id": missing, "paths_tried": tried}]
        assert ex["stale"] == [{"scene_id": stale}] and ex["never_synced"] == [{"scene_id": new}]
        assert ex["empty"][0]["scene_id"] == empty and {"title", "summary"} <= set(ex["empty"][0]["fields"])
        assert ex["drifted"] == [{"scene_id": drifted, "fields": ["title"]}]
        # The drain fixed four at once; the missing one asked Plex to scan its folder.
        assert out["summary"]["synced"] == 4, out["summary"]
        for sid in (stale, empty, drifted, new):
            assert mismatches(st, sid) == [], sid
        assert st.plex.count("GET", "/library/sections/1/refresh") == 1
        with queue_of(st) as queue:
            job = queue.report.job_for_scene(missing)
            assert job is not None and job.reasons == ("reconcile_missing",)
        st.age(3600)
        ok(st.task("process_queue"))
        assert mismatches(st, missing) == []

        st.plex.reset_log()
        again = ok(st.task("reconcile_all"))
        assert again["gaps"] == NO_GAPS and again["queued"] == 0, again
        assert writes(st) == 0


def test_preserve_plex_edits_reports_drift_but_keeps_it(tmp_path: Path) -> None:
    with synced_stage(tmp_path, n=6, preserve_plex_edits=True) as st:
        sync_all(st)
        drifted = with_metadata(st)[0]
        edit_item(st, drifted, title="Typed in Plex")
        result = st.task("reconcile_all")
        out = ok(result)
        assert out["gaps"] == gaps(drifted=1) and out["kept"] == {"drifted": 1} and out["queued"] == 0, out
        assert any("1 drifted" in line and "kept (preserve_plex_edits is on)" in line
                   for line in result.lines("info"))
        assert writes(st) == 0
        assert st.plex_item(drifted).title == "Typed in Plex"
        assert counts(st).due == 0


def test_recent_windows_follow_stashs_timestamps(tmp_path: Path) -> None:
    with synced_stage(tmp_path, n=10) as st:
        sync_all(st)
        hours, days, weeks = with_metadata(st)[:3]
        now = time.time()
        st.library.update_scene(hours, now=now - 2 * 3600, title="Two hours ago")
        st.library.update_scene(days, now=now - 3 * DAY, title="Three days ago")
        st.library.update_scene(weeks, now=now - 10 * DAY, title="Ten days ago")

        recent = ok(st.task("reconcile_recent"))
        assert (recent["scenes"], recent["gaps"], recent["queued"]) == (1, gaps(stale=1), 1), recent
        assert mismatches(st, hours) == [] and mismatches(st, days) != []
        week = ok(st.task("reconcile_7days"))
        assert (week["scenes"], week["gaps"], week["queued"]) == (2, gaps(stale=1), 1), week
        assert mismatches(st, days) == [] and mismatches(st, weeks) != []
        full = ok(st.task("reconcile_all"))
        assert (full["scenes"], full["gaps"], full["queued"]) == (10, gaps(stale=1), 1), full
        assert mismatches(st, weeks) == []


def last_reconcile(st: Stage) -> float | None:
    with StateStore(st.data_dir) as state:
        value = state.get(LAST_RECONCILE)
    return float(value) if value else None


def set_last_reconcile(st: Stage, when: float | None) -> None:
    with StateStore(st.data_dir) as state:
        state.put(LAST_RECONCILE, None if when is None else repr(when))


@pytest.mark.parametrize(("interval", "last_age", "runs"), [
    ("hourly", 2 * 3600.0, True),
    ("hourly", 600.0, False),
    ("never", None, False),
])
def test_auto_reconcile_runs_in_a_hook_started_worker_only_when_due(
        tmp_path: Path, interval: str, last_age: float | None, runs: bool) -> None:
    with synced_stage(tmp_path, n=6, reconcile_interval=interval) as st:
        sync_all(st)
        hooked, drifted = with_metadata(st)[:2]
        set_last_reconcile(st, None if last_age is None else time.time() - last_age)
        edit_item(st, drifted, title="Typed in Plex")
        before = last_reconcile(st)
        hook = st.hook(hooked)
        assert hook.error is None and hook.output["worker_started"] is True, hook.stderr
        assert not [line for line in hook.lines() if "reconcile" in line.lower()]  # not on the hook's path
        st.wait_for_worker()
        log = worker_log(st)
        if runs:
            assert "Stash2Plex reconcile: 1 drifted" in log, log
            assert mismatches(st, drifted) == []
            assert last_reconcile(st) is not None and last_reconcile(st) > (before or 0)
        else:
            assert "reconcile" not in log.lower(), log
            assert st.plex_item(drifted).title == "Typed in Plex"
            assert last_reconcile(st) == before
