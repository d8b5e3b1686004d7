"""The reconcile driver in-process against both emulators (no drain): what it queues, with
which reason, what it marks in the ledger, how it resumes, and what it asks of each server.

The end-to-end tests (tests/test_e2e_reconcile.py) run the same pass through the Stash host
and drain afterwards; here the jobs are left in the queue so each one can be read.
"""

from __future__ import annotations

import io
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from base.protocol import PluginInput, StashLog
from emulators.stage import Stage, stage
from reconciliation import reconcile
from reconciliation.bulk import cursor_key
from reconciliation.gaps import Gap
from reconciliation.reconcile import read_listing, reconcile_pass
from sync_queue.jobs import JobQueue
from tests.e2e_worker_support import QUIET
from worker.runtime import RunContext
from worker.services import services

ROOT = Path(__file__).resolve().parent.parent


def context(st: Stage) -> RunContext:
    """What the entrypoint would build for a task, built here so the pass runs in this process."""
    return RunContext(PluginInput(st.stash.connection(), {"mode": "reconcile_all"}), StashLog(io.StringIO()),
                      st.data_dir, ROOT / "Stash2Plex.py")


def run_pass(st: Stage, scope: str = "reconcile_all", **kwargs: Any):
    ctx = context(st)
    with services(ctx) as svc:
        return reconcile_pass(svc.queue, svc.state, svc.plex, ctx.stash, ctx.settings, ctx.log, scope, time.time(), **kwargs)


def titled(st: Stage) -> list[int]:
    lib = st.library
    return [s for s in lib.sorted_ids() if lib.scenes[s].title and lib.scenes[s].details and lib.scenes[s].studio_id]


def test_each_gap_is_queued_once_with_its_reason(tmp_path: Path) -> None:
    with stage(16, seed=5, work_dir=tmp_path, settings={**QUIET, "lock_synced_fields": False}) as st:
        assert st.task("all").error is None
        stale, missing, empty, drifted = titled(st)[:4]
        st.library.update_scene(stale, title="Renamed")
        st.plex.remove_item(st.plex_item(missing).rating_key)
        with st.plex.lock:
            st.plex.library.refresh(st.plex_item(empty).rating_key, int(time.time()))
            item = st.plex_item(drifted)
            item.fields["summary"] = "Typed in Plex"
        new = st.library.add_scene(files=["/data/stash/new/n.mp4"], title="New")
        st.scan_into_plex([new])
        st.plex.reset_log()
        st.stash.reset_log()

        report = run_pass(st)
        assert report.queued == 5 and report.completed
        # One listing pass over Plex and bounded pages over Stash; nothing per scene.
        assert st.plex.count("GET", "/library/metadata") == 0 and st.plex.count("PUT") == 0
        variables = [r.variables or {} for r in st.stash.requests]
        assert not [v for v in variables if "id" in v]  # no findScene(id) at all
        assert len([v for v in variables if v.get("filter", {}).get("per_page")]) == 1  # one page of 17
        with JobQueue(st.data_dir) as queue:
            reasons = {s: queue.report.job_for_scene(s).reasons for s in (stale, missing, empty, drifted, new)}
            assert queue.ledger.get(missing).lost and not queue.ledger.get(empty).lost
        assert reasons == {stale: ("reconcile_stale",), missing: ("reconcile_missing",),
                           empty: ("reconcile_empty",), drifted: ("reconcile_drifted",),
                           new: ("reconcile_never_synced",)}

        again = run_pass(st)  # the gaps are still there, and already queued: merged, not doubled
        assert sum(again.counts.values()) == 5
        with JobQueue(st.data_dir) as queue:
            c = queue.report.counts(time.time())
            assert c.due == 5
            assert queue.report.job_for_scene(drifted).reasons == ("reconcile_drifted",)


def test_a_stopped_whole_library_pass_resumes_after_its_last_page(tmp_path: Path) -> None:
    with stage(9, seed=6, work_dir=tmp_path, settings=QUIET) as st:
        ids = st.library.sorted_ids()
        first = run_pass(st, page_size=4, should_stop=lambda: True)
        assert not first.completed and first.scenes == 4
        assert first.counts[Gap.NEVER_SYNCED] == 4 and first.queued == 4
        with JobQueue(st.data_dir) as queue:
            assert queue.report.counts(time.time()).due == 4
        rest = run_pass(st, page_size=4)
        assert rest.completed and rest.scenes == len(ids) - 4
        with JobQueue(st.data_dir) as queue:
            assert queue.report.counts(time.time()).due == len(ids)
        from sync_queue.state import StateStore

        with StateStore(st.data_dir) as state:
            assert state.get(cursor_key("reconcile_all")) is None


def test_a_window_pass_never_moves_the_whole_library_cursor(tmp_path: Path) -> None:
    with stage(5, seed=7, work_dir=tmp_path, settings=QUIET) as st:
        from sync_queue.state import StateStore

        with StateStore(st.data_dir) as state:
            state.put(cursor_key("reconcile_all"), "3")
        sid = st.library.sorted_ids()[0]
        st.library.update_scene(sid, title="Just now")
        report = run_pass(st, "reconcile_recent")
        assert report.scenes == 1 and report.counts[Gap.NEVER_SYNCED] == 1
        with StateStore(st.data_dir) as state:
            assert state.get(cursor_key("reconcile_all")) == "3"


class Listing:
    """Plex's listing pages as `PlexSync.build_index` hands them to `on_page`."""

    def __init__(self, pages: int, per_page: int) -> None:
        self.roots = [ET.fromstring(
            f'<MediaContainer size="{per_page}" totalSize="{pages * per_page}">'
            + "".join(f'<Video ratingKey="{p * per_page + i}" title="T{p * per_page + i}"/>' for i in range(per_page))
            + "</MediaContainer>") for p in range(pages)]

    def build_index(self, now: float, on_page: Any = None) -> Any:
        for root in self.roots:
            on_page(root)
        return "index"


def test_the_listing_keeps_a_snapshot_of_every_item_of_every_page() -> None:
    done: list[float] = []
    index, snaps = read_listing(Listing(4, 25), time.time(), done.append)
    assert index == "index" and sorted(snaps, key=int) == [str(i) for i in range(100)]
    assert all(snaps[k].rating_key == k for k in snaps)
    assert done == [0.25, 0.5, 0.75, 1.0]


def test_an_item_the_listing_cannot_reduce_fails_the_listing(monkeypatch: pytest.MonkeyPatch) -> None:
    real = reconcile.snapshot

    def snapshot(item: Any) -> Any:
        if item.rating_key == "60":
            raise ValueError("unreadable item 60")
        return real(item)

    monkeypatch.setattr(reconcile, "snapshot", snapshot)
    with pytest.raises(ValueError, match="unreadable item 60"):
        read_listing(Listing(4, 25), time.time(), lambda f: None)
