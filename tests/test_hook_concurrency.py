"""Two hundred hook processes at once, run as Stash runs them (issue 2 point 5, issue 4 point 6).

Stash runs one plugin process per hook and a bulk edit or a scan fires hundreds together.
Each process must record its event and exit cleanly; the one background worker they start
between them must then sync every scene. No "database is locked", no error line, no lost
event.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from emulators.stage import stage
from sync_queue.jobs import JobQueue
from tests.secret_audit import AUDIT

N = 200


@pytest.mark.slow
def test_two_hundred_hooks_at_once_lose_nothing_and_report_no_error(tmp_path: Path) -> None:
    with stage(N, seed=11, work_dir=tmp_path,
               on_result=lambda r: AUDIT.record("200 concurrent hooks", r.stdout + r.stderr)) as st:
        AUDIT.add_secret(st.plex.token)
        ids = st.library.sorted_ids()
        with ThreadPoolExecutor(max_workers=N) as pool:
            results = list(pool.map(st.hook, ids))

        for sid, result in zip(ids, results, strict=True):
            assert result.returncode == 0 and result.error is None, (sid, result.stderr)
            assert result.output["recorded"] == {"trigger": "Scene.Update.Post", "id": sid}
            bad = [line for level, line in result.logs if level in ("error", "warning")]
            assert not bad, (sid, bad)
            assert "locked" not in result.stderr.lower()
        assert sum(bool(r.output["worker_started"]) for r in results) >= 1

        queue = JobQueue(st.data_dir)
        try:
            st.wait_until(lambda: queue.report.counts(time.time()).ledger == N and not st.worker_running(), timeout=300)
            counts = queue.report.counts(time.time())
        finally:
            queue.close(compact=False)
        assert (counts.due, counts.deferred, counts.in_flight, counts.dlq, counts.inbox) == (0, 0, 0, 0, 0)
        for sid in ids:
            scene = st.library.scenes[sid]
            item = st.plex_item(sid)
            assert item is not None
            if scene.title:
                assert item.title == scene.title, sid
        log = (st.data_dir / "worker.log").read_text(encoding="utf-8")
        assert "locked" not in log.lower() and " ERROR " not in log, log[-2000:]
