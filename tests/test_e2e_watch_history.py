"""Plex watch history into Stash, end to end: the plugin run as Stash runs it.

Plays are made in the emulated Plex (history rows, view counts, resume offsets); the
plugin's "Import Plex Watch History" task runs through the Stash host and writes through
stashapi to the emulated Stash; the tests read Stash's play history and resume points and
the servers' request logs. The kill-point tests SIGKILL the plugin at exact steps (from
inside the emulated Stash, as a request arrives or after it was applied) and then check
that every Plex play is in Stash exactly once after the next run.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from emulators.stage import Stage, stage
from emulators.stash_server import RequestRecord
from tests.e2e_worker_support import QUIET, audited, worker_log
from tests.secret_audit import AUDIT

T = 1_700_000_040  # on a minute boundary
# stashapi's own at construction (version, API key, introspection), then ours.
IMPORT_OPERATIONS = {"S2PSceneActivity", "S2PScenesByPath", "S2PAddPlays", "S2PSaveResumes"}
ALLOWED_STASH_OPERATIONS = {"StashVersion", "getApiKey", None, "S2PPluginConfig", *IMPORT_OPERATIONS}


def ok(result: Any) -> dict[str, Any]:
    assert result.error is None and result.returncode == 0, (result.error, result.stderr[-3000:])
    return result.output


def watch_stage(tmp_path: Path, n: int = 6, **settings: Any):
    return stage(n, seed=5, work_dir=tmp_path, on_result=audited("watch history e2e"),
                 settings={**QUIET, "import_watch_history": True, **settings})


def synced(st: Stage) -> None:
    AUDIT.add_secret(st.plex.token)
    assert ok(st.task("all"))["summary"]["synced"] == len(st.library.scenes)


def key_of(st: Stage, scene_id: int) -> int:
    return st.plex_item(scene_id).rating_key


def stash_plays(st: Stage) -> Counter[tuple[int, int]]:
    return Counter((sid, int(t)) for sid, s in st.library.scenes.items() for t in s.play_history)


def import_history(st: Stage, **args: Any) -> dict[str, Any]:
    return ok(st.task("import_watch_history", args or None))["watch_history"]


def operations(st: Stage) -> Counter[str | None]:
    return Counter(r.operation_name for r in st.stash.requests if r.path == "/graphql")


def test_each_plex_play_arrives_once_at_its_time_and_a_second_run_adds_nothing(tmp_path: Path) -> None:
    with watch_stage(tmp_path, plex_library="Stash",
                     ) as st:
        synced(st)
        one, two, three = st.library.sorted_ids()[:3]
        other = st.plex.library.add_section("Other", "/media/other", now=T)
        stray = st.plex.add_item("/media/other/x.mp4", section=other, title="Elsewhere")
        orphan = st.plex.add_item("/media/stash/orphan.mp4", title="Orphan")
        # Same file name as scene three's, another folder: matched by exact path only, so no scene.
        namesake = st.plex.add_item("/media/stash/elsewhere/" + st.library.scenes[three].files[0].basename,
                                    title="Namesake")
        st.plex.play(key_of(st, one), T)
        st.plex.play(key_of(st, one), T + 3600)
        st.plex.play(key_of(st, one), T + 3630)  # a second play in the same minute: both count
        st.plex.play(key_of(st, two), T + 7200)
        st.library.scenes[two].play_history.append(float(T + 7220))  # Stash's own player, same minute
        st.plex.play(stray, T + 10)
        st.plex.play(orphan, T + 20)
        st.plex.play(namesake, T + 30)
        before = stash_plays(st)
        st.plex.reset_log()
        st.stash.reset_log()

        out = import_history(st)

        assert (out["read"], out["added"], out["in_stash"], out["no_scene"], out["other_library"]) == (7, 3, 1, 2, 1)
        assert out["scope"] == "the Plex token's account"
        assert any("Orphan" in u for u in out["unmatched"]) and any("Namesake" in u for u in out["unmatched"])
        assert stash_plays(st) - before == Counter({(one, T): 1, (one, T + 3600): 1, (one, T + 3630): 1})
        assert st.library.scenes[two].play_history == [T + 7220]  # not doubled
        assert st.library.scenes[three].play_history == []
        assert st.library.scenes[one].play_count == 3
        # Reads Plex only; writes to Stash only plays and resume points, batched.
        assert st.plex.count("PUT") == st.plex.count("POST") == 0
        assert set(operations(st)) <= ALLOWED_STASH_OPERATIONS, operations(st)
        assert operations(st)["S2PAddPlays"] == 1

        st.stash.reset_log()
        again = import_history(st)
        assert again["added"] == 0 and again["already_imported"] >= 1
        assert operations(st)["S2PAddPlays"] == 0
        assert stash_plays(st) - before == Counter({(one, T): 1, (one, T + 3600): 1, (one, T + 3630): 1})
        status = ok(st.task("queue_status"))
        assert status["watch_history"]["cursor"] == T + 7200
        assert any("Watch history import: on" in line for line in st.task("queue_status").lines("info"))


def test_history_is_read_in_pages_from_the_cursor(tmp_path: Path) -> None:
    with watch_stage(tmp_path, n=4) as st:
        synced(st)
        ids = st.library.sorted_ids()
        for i in range(1050):
            st.plex.play(key_of(st, ids[i % 4]), T + 61 * i)
        st.plex.reset_log()
        result = st.task("import_watch_history")
        out = ok(result)["watch_history"]
        assert out["added"] == 1050
        assert st.plex.count("GET", "/status/sessions/history/all") == 2  # 1000 + 50
        assert result.progress[0] == 0.0 and result.progress[-1] == 1.0
        assert any(0.8 < p < 0.9 for p in result.progress)  # after the first page: 1000 of 1050 rows
        assert sum(len(s.play_history) for s in st.library.scenes.values()) == 1050
        # The next run asks only for what came after the cursor.
        st.plex.play(key_of(st, ids[0]), T + 61 * 1050)
        st.plex.reset_log()
        out = import_history(st)
        assert (out["added"], out["read"]) == (1, 2)  # the new play, and the cursor's own second
        history = [r for r in st.plex.requests if r.path == "/status/sessions/history/all"]
        assert len(history) == 1 and int(history[0].query["viewedAt>"]) == T + 61 * 1049 - 1


def test_plays_without_a_scene_arrive_once_the_ledger_knows_their_item(tmp_path: Path) -> None:
    with watch_stage(tmp_path, n=4) as st:
        synced(st)
        key = st.plex.add_item("/media/stash/later/new.mp4", title="Later")
        st.plex.play(key, T)
        first = import_history(st)
        assert (first["no_scene"], first["added"]) == (1, 0)
        # The file gets its scene in Stash; Sync All matches it to the Plex item (ledger row).
        scene = st.library.add_scene(files=["/data/stash/later/new.mp4"], title="Later")
        assert ok(st.task("all"))["summary"]["synced"] == 1
        # Killed after Stash took the play, before the log said so: the next run finds it there.
        kill_at(st, "S2PAddPlays", "after", 1)
        assert st.task("import_watch_history").returncode == -signal.SIGKILL
        assert st.library.scenes[scene].play_history == [T]
        st.stash.faults.intercept = None
        second = import_history(st)
        assert (second["retried"], second["added"], second["in_stash"]) == (1, 0, 1)
        assert st.library.scenes[scene].play_history == [T]
        assert import_history(st)["added"] == 0 and st.library.scenes[scene].play_history == [T]


def test_resume_points_follow_the_newer_side(tmp_path: Path) -> None:
    with watch_stage(tmp_path, n=4) as st:
        synced(st)
        partial, finished, stash_newer = st.library.sorted_ids()[:3]
        st.plex.progress(key_of(st, partial), 95_000, T + 100)
        st.library.scenes[finished].resume_time = 300.0
        st.plex.play(key_of(st, finished), T + 200)
        st.library.scenes[stash_newer].resume_time = 40.0
        st.library.scenes[stash_newer].play_history.append(float(T + 500))
        st.plex.progress(key_of(st, stash_newer), 600_000, T + 100)
        out = import_history(st)
        assert (out["resumes_set"], out["resumes_cleared"]) == (1, 1)
        assert st.library.scenes[partial].resume_time == 95.0
        assert st.library.scenes[finished].resume_time == 0.0
        assert st.library.scenes[finished].play_history == [T + 200]
        assert st.library.scenes[stash_newer].resume_time == 40.0
        # Later progress in Plex moves the resume point again; nothing else changes.
        st.plex.progress(key_of(st, partial), 200_000, T + 1000)
        out = import_history(st)
        assert (out["resumes_set"], out["added"]) == (1, 0)
        assert st.library.scenes[partial].resume_time == 200.0
        assert import_history(st)["resumes_set"] == 0


def test_accounts_default_managed_user_and_all(tmp_path: Path) -> None:
    with watch_stage(tmp_path, n=4) as st:
        synced(st)
        one, two = st.library.sorted_ids()[:2]
        bob = st.plex.add_account("bob")
        st.plex.play(key_of(st, one), T)
        st.plex.play(key_of(st, two), T + 60, account=bob)
        assert import_history(st)["added"] == 1
        assert (st.library.scenes[one].play_history, st.library.scenes[two].play_history) == ([T], [])
        st.configure(watch_history_account="Bob")
        out = import_history(st)
        assert (out["scope"], out["added"]) == ("Plex user 'bob'", 1)
        assert st.library.scenes[two].play_history == [T + 60]
        st.configure(watch_history_account="all")
        out = import_history(st)
        assert (out["scope"], out["added"], out["already_imported"]) == ("all Plex accounts", 0, 2)
        st.configure(watch_history_account="carol")
        result = st.task("import_watch_history")
        assert result.error and "'carol'" in result.error and "bob" in result.error


def test_off_by_default_and_the_dry_run_writes_nothing(tmp_path: Path) -> None:
    with watch_stage(tmp_path, n=4, import_watch_history=False) as st:
        one = st.library.sorted_ids()[0]
        st.plex.play(key_of(st, one), T)
        st.plex.progress(key_of(st, st.library.sorted_ids()[1]), 30_000, T)
        result = st.task("import_watch_history")
        assert result.error and "off" in result.error
        st.stash.reset_log()
        result = st.task("watch_history_dry_run")
        out = ok(result)
        assert out["watch_history"]["dry_run"] and out["watch_history"]["added"] == 1
        assert any(line.startswith(f"scene {one}: +1 play(s)") for line in out["would"])
        assert any("resume point 30 s" in line for line in out["would"])
        assert any(f"scene {one}: +1 play(s)" in line for line in result.lines("info"))
        assert stash_plays(st) == Counter() and operations(st)["S2PAddPlays"] == 0
        assert not (st.data_dir / "stash2plex.db").exists()
        # The same through the task's own argument.
        out = ok(st.task("import_watch_history", {"dry_run": "true"}))
        assert out["watch_history"]["dry_run"] and stash_plays(st) == Counter()


def test_the_background_worker_imports_on_the_reconcile_interval(tmp_path: Path) -> None:
    with watch_stage(tmp_path, n=4, reconcile_interval="hourly") as st:
        synced(st)
        st.wait_for_worker()
        one = st.library.sorted_ids()[0]
        st.plex.play(key_of(st, one), T)
        st.library.update_scene(one, title="changed")
        st.hook(one)  # the worker this starts syncs the scene, then imports: it is due
        st.wait_until(lambda: st.library.scenes[one].play_history == [T])
        st.wait_for_worker()
        assert any("Watch history" in line for line in worker_log(st).splitlines())
        health = ok(st.task("health_check"))
        line = next(c for c in health["checks"] if c["check"] == "Watch history")
        assert line["level"] == "OK" and "1 plays added" in line["text"] and "cursor" in line["text"]


# --- kill points ------------------------------------------------------------------------


def many_plays(st: Stage, n_plays: int = 1100) -> Counter[tuple[int, int]]:
    """Plays spread over every scene (more than one page, more than one write batch per
    page), two of them in one minute; what Stash must hold afterwards."""
    ids = st.library.sorted_ids()
    want: Counter[tuple[int, int]] = Counter()
    for i in range(n_plays):
        sid = ids[i % len(ids)]
        when = T + 61 * i
        st.plex.play(key_of(st, sid), when)
        want[(sid, when)] += 1
    st.plex.play(key_of(st, ids[0]), T + 5)
    want[(ids[0], T + 5)] += 1
    st.plex.progress(key_of(st, ids[1]), 50_000, T + 61 * n_plays + 100)
    return want


def kill_at(st: Stage, operation: str | None, phase: str, nth: int) -> list[int]:
    """SIGKILL the running task when Stash sees the `nth` request `operation` (None: any of
    the import's own) before it runs (it never reached Stash) or after (Stash applied it,
    the answer never arrives)."""
    seen: list[int] = []

    def intercept(record: RequestRecord, when: str) -> bool:
        name = record.operation_name or ""
        if when != phase or (name != operation if operation else name not in IMPORT_OPERATIONS):
            return False
        seen.append(1)
        if len(seen) != nth:
            return False
        for pid in st.run_pids():
            os.kill(pid, signal.SIGKILL)
        return phase == "before"

    st.stash.faults.intercept = intercept
    return seen


def logged_plays(st: Stage) -> int:
    conn = sqlite3.connect(st.data_dir / "stash2plex.db")
    try:
        return conn.execute("SELECT COUNT(*) FROM watch_plays").fetchone()[0]
    finally:
        conn.close()


@pytest.mark.parametrize("operation,phase,nth", [
    ("S2PAddPlays", "before", 1),  # killed before the first write reached Stash
    ("S2PAddPlays", "after", 1),  # first batch of page 1 in Stash, nothing logged
    ("S2PAddPlays", "after", 2),  # the whole of page 1 in Stash, nothing logged
    ("S2PSceneActivity", "before", 2),  # page 1 logged with its cursor, page 2 not started
    ("S2PAddPlays", "after", 3),  # page 2 in Stash, not logged
    ("S2PSaveResumes", "after", 1),  # every play logged, resume written, the run not finished
])
def test_a_kill_at_any_step_neither_loses_nor_doubles_a_play(tmp_path: Path, operation: str, phase: str,
                                                             nth: int) -> None:
    with watch_stage(tmp_path, n=120) as st:
        want = many_plays(st)
        seen = kill_at(st, operation, phase, nth)
        killed = st.task("import_watch_history")
        assert len(seen) >= nth and killed.returncode == -signal.SIGKILL, (seen, killed.stderr[-2000:])
        assert stash_plays(st) <= want  # nothing doubled even before the recovery
        st.stash.faults.intercept = None
        out = import_history(st)
        assert out["completed"]
        assert stash_plays(st) == want
        assert st.library.scenes[st.library.sorted_ids()[1]].resume_time == 50.0
        assert logged_plays(st) == sum(want.values())
        assert import_history(st)["added"] == 0 and stash_plays(st) == want


def test_kills_at_random_steps_converge_to_exactly_the_plex_plays(tmp_path: Path) -> None:
    """Killed again and again at a random request of ours (before Stash runs it or after),
    the runs still end with every Plex play in Stash exactly once."""
    with watch_stage(tmp_path, n=30) as st:
        want = many_plays(st, 1500)
        rng = random.Random(21)
        kills = 0
        for _ in range(20):
            kill_at(st, None, rng.choice(["before", "after"]), rng.randint(1, 40))
            result = st.task("import_watch_history")
            if result.returncode == 0:
                break
            assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]
            kills += 1
            assert stash_plays(st) <= want
        st.stash.faults.intercept = None
        assert kills >= 2
        assert import_history(st)["completed"]
        assert stash_plays(st) == want
        assert import_history(st)["added"] == 0
