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
