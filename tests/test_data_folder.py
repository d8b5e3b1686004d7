"""A broken data folder (issue 19 point 2): read-only, full, damaged, locked for minutes.

Each case is made for real (a read-only mount, a full tmpfs, a truncated or overwritten
file, another process holding SQLite's write lock), then the plugin is run as Stash runs it
and the test reads what the user would read and what is left on disk. The pure parts
(which error is which, the spool's exactly-once hand-over) are tested in-process.
"""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from emulators.host import RunResult
from emulators.stage import Stage, stage
from sync_queue import spool
from sync_queue.db import connect, db_path, write_txn
from sync_queue.inbox import read_inbox
from sync_queue.jobs import JobQueue
from sync_queue.recovery import QUARANTINE_MARK, check_database, damage
from sync_queue.schema import SCHEMA_VERSION, current_version
from sync_queue.state import LOCKS_FORGOTTEN, StateStore
from sync_queue.storage import CORRUPT, FULL, LOCKED, READ_ONLY, FolderFacts, classify
from tests.broken_folder import fill, read_only, small_disk
from tests.e2e_worker_support import QUIET, audited, ledger_count, mismatches
from tests.plugin_host import make_host
from tests.secret_audit import AUDIT

T0 = 1_760_000_000.0
SOUND = FolderFacts(writable=True, free_bytes=10**9)


def one_clean_error(result: RunResult, *needles: str) -> str:
    """Exactly one error line, no traceback, valid stdout JSON carrying the same error."""
    assert result.returncode == 0
    assert json.loads(result.stdout)["error"] == result.error
    errors = result.lines("error")
    assert len(errors) == 1, result.logs
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def sqlite_error(code_name: str, text: str = "x") -> sqlite3.Error:
    exc = sqlite3.OperationalError(text)
    exc.sqlite_errorname = code_name  # what sqlite3 sets on a real one
    return exc


# ---- which error is which (pure) -----------------------------------------------------------


@pytest.mark.parametrize(("exc", "facts", "problem"), [
    (OSError(errno.EROFS, "Read-only file system"), SOUND, READ_ONLY),
    (PermissionError(errno.EACCES, "Permission denied"), SOUND, READ_ONLY),
    (OSError(errno.ENOSPC, "No space left on device"), SOUND, FULL),
    (sqlite_error("SQLITE_FULL"), SOUND, FULL),
    (sqlite_error("SQLITE_READONLY"), SOUND, READ_ONLY),
    (sqlite_error("SQLITE_BUSY"), SOUND, LOCKED),
    (sqlite_error("SQLITE_NOTADB"), SOUND, CORRUPT),
    (sqlite_error("SQLITE_CORRUPT"), SOUND, CORRUPT),
    (sqlite_error("SQLITE_CANTOPEN"), FolderFacts(False, 10**9), READ_ONLY),
    (sqlite_error("SQLITE_IOERR_WRITE"), FolderFacts(True, 0), FULL),
    (sqlite_error("SQLITE_IOERR_WRITE"), SOUND, None),  # an I/O error we cannot explain stays a bug
    (OSError(errno.ECONNREFUSED, "refused"), SOUND, None),
    # Python 3.10's sqlite3 errors carry only the message:
    (sqlite3.OperationalError("database is locked"), SOUND, LOCKED),
    (sqlite3.DatabaseError("file is not a database"), SOUND, CORRUPT),
    (sqlite3.OperationalError("attempt to write a readonly database"), SOUND, READ_ONLY),
    (sqlite3.OperationalError("unable to open database file"), FolderFacts(False, 10**9), READ_ONLY),
    (sqlite3.OperationalError("no such table: inbox"), FolderFacts(False, 0), None),
    (ValueError("no"), SOUND, None),
])
def test_classify_names_the_folders_problem(exc: BaseException, facts: FolderFacts, problem: str | None) -> None:
    assert classify(exc, facts) == problem


def test_an_os_error_about_a_file_elsewhere_is_not_the_folders(tmp_path: Path) -> None:
    from sync_queue.storage import explain

    inside = PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "processor.lock"))
    elsewhere = PermissionError(errno.EACCES, "Permission denied", "/etc/shadow")
    known = explain(inside, tmp_path)
    assert known is not None and known.problem == READ_ONLY and str(tmp_path) in str(known)
    assert explain(elsewhere, tmp_path) is None
    assert explain(OSError(errno.ENOSPC, "No space left on device"), tmp_path).problem == FULL


# ---- the spool: a hook never waits long, an event is never lost or doubled -------------------


@contextmanager
def db_held(folder: Path, exclusive: bool = False) -> Iterator[None]:
    """Another process holds SQLite's write lock (or, `exclusive`, every lock) until exit."""
    mode = "PRAGMA locking_mode = EXCLUSIVE; " if exclusive else ""
    code = (
        "import sqlite3, sys\n"
        f"c = sqlite3.connect({str(db_path(folder))!r}, isolation_level=None)\n"
        f"c.executescript({mode!r} + 'BEGIN IMMEDIATE; INSERT INTO meta VALUES (\"held\", \"1\");')\n"
        "print('held', flush=True)\n"
        "sys.stdin.read()\n"
        "c.execute('ROLLBACK')\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        yield
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=30)


def inbox(folder: Path) -> list[tuple[str, int, str]]:
    conn = connect(folder)
    try:
        return [(e.kind, e.entity_id, e.reason) for e in read_inbox(conn, 10_000)]
    finally:
        conn.close()


@pytest.mark.parametrize("exclusive", [False, True], ids=["write-lock", "exclusive-lock"])
def test_a_hook_gives_up_on_a_held_database_within_its_budget_and_spools(tmp_path: Path, exclusive: bool) -> None:
    spool.record_or_spool(tmp_path, "scene", 1, "Scene.Update.Post", T0)  # the database exists
    with db_held(tmp_path, exclusive):
        started = time.monotonic()
        held_up = spool.record_or_spool(tmp_path, "scene", 2, "Scene.Update.Post", T0 + 1)
        waited = time.monotonic() - started
        assert isinstance(held_up, sqlite3.OperationalError) and "locked" in str(held_up)
        # Not a speed target: the unbounded path retries a 30 s busy timeout ten times.
        assert waited < 10, waited
        assert [p.suffix for p in spool.spooled(tmp_path)] == [".json"]
    with JobQueue(tmp_path) as queue:
        assert queue.report.counts(T0 + 2).inbox == 2  # Queue Status counts a spooled event as new
        result = queue.ingest(T0 + 2)
        assert result.events == 2 and queue.report.job_for_scene(2) is not None
    assert spool.spooled(tmp_path) == [] and inbox(tmp_path) == []


def test_absorbing_the_spool_is_exactly_once_even_when_killed_between_commit_and_delete(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conn = connect(tmp_path)
    from sync_queue.schema import ensure_schema

    ensure_schema(conn)
    for n in range(1, 4):
        spool.spool_event(tmp_path, "scene", n, "Scene.Update.Post", T0 + n)
    stale = spool.spool_dir(tmp_path) / "00000000000000000000-1-dead.tmp"
    stale.write_text('{"kind": "sc')  # a killed hook's
    os.utime(stale, (T0 - 7200, T0 - 7200))
    real = spool._forget_absorbed
    calls = []

    def killed_after_commit(c: sqlite3.Connection, folder: Path) -> None:
        calls.append(1)
        if len(calls) == 2:  # the first call is the start-up clean-up; the second follows the commit
            raise KeyboardInterrupt("killed")
        real(c, folder)

    monkeypatch.setattr(spool, "_forget_absorbed", killed_after_commit)
    with pytest.raises(KeyboardInterrupt):
        spool.absorb(conn, tmp_path, T0)
    monkeypatch.setattr(spool, "_forget_absorbed", real)
    assert len(spool.spooled(tmp_path)) == 3  # committed to the inbox, files still there
    assert spool.absorb(conn, tmp_path, T0) == 0  # the start-up clean-up recognised them
    assert [e[1] for e in inbox(tmp_path)] == [1, 2, 3]  # in event order, once each
    assert list(spool.spool_dir(tmp_path).iterdir()) == []  # the stale .tmp went too
    conn.close()


# ---- a damaged database ----------------------------------------------------------------------


def damage_db(folder: Path, how: str) -> None:
    path = db_path(folder)
    if how == "future":
        conn = connect(folder)
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 5),))
        conn.close()
        return
    conn = connect(folder)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: (len(data) // 2) // 4096 * 4096])
    else:
        path.write_bytes(os.urandom(len(data)))


def populated(folder: Path) -> None:
    with JobQueue(folder) as queue:
        for sid in range(1, 300):
            queue.enqueue(sid, "test", T0)
        with write_txn(queue._conn) as txn:
            txn.executemany("INSERT INTO ledger (scene_id, fields_hash, written, synced_at) VALUES (?, ?, ?, ?)",
                            [(s, "h" * 40, json.dumps({"title": "t" * 200}), T0) for s in range(1, 300)])


@pytest.mark.parametrize("how", ["truncated", "garbage", "future"])
def test_a_damaged_database_is_moved_aside_and_replaced_and_spooled_events_survive(tmp_path: Path, how: str) -> None:
    populated(tmp_path)
    damage_db(tmp_path, how)
    assert damage(tmp_path) is not None
    # A hook meanwhile: the damaged file takes the event (a newer schema's inbox) or the spool does.
    spool.record_or_spool(tmp_path, "scene", 7, "Scene.Update.Post", T0 + 1)
    now = time.mktime((2026, 12, 2, 23, 5, 9, 0, 0, 0)) - time.timezone
    message = check_database(tmp_path, now)
    assert message is not None
    moved = tmp_path / f"stash2plex.db{QUARANTINE_MARK}20261202T230509Z"
    assert moved.is_file() and str(moved) in message
    assert "a fresh database took its place. Run Reconcile All to rebuild what was queued and synced." in message
    with StateStore(tmp_path) as state:
        assert state.get(LOCKS_FORGOTTEN) == repr(now)
    assert damage(tmp_path) is None and check_database(tmp_path, now) is None
    conn = connect(tmp_path)
    assert current_version(conn) == SCHEMA_VERSION
    conn.close()
    with JobQueue(tmp_path) as queue:
        assert queue.ingest(T0 + 2).created == 1 and queue.report.job_for_scene(7) is not None


def test_a_sound_database_is_left_alone(tmp_path: Path) -> None:
    populated(tmp_path)
    assert check_database(tmp_path, T0) is None
    assert [p.name for p in tmp_path.iterdir() if QUARANTINE_MARK in p.name] == []


# ---- through the host, as Stash runs the plugin ------------------------------------------------


def test_read_only_folder_hook_says_why_and_task_names_path_and_fix(tmp_path: Path) -> None:
    host = make_host(tmp_path / "stash", port=9)
    folder = tmp_path / "stash" / "plugin_data" / "Stash2Plex"
    (ok,) = host.run_hook("Scene.Update.Post", 5)  # the first save: the database exists
    assert ok.error is None, ok.stderr
    assert "spooled" not in ok.output
    with read_only(folder):
        (hook,) = host.run_hook("Scene.Update.Post", 6)
        line = one_clean_error(hook, f"could not record Scene.Update.Post for id 6: the data folder {folder} is "
                                     "read-only: make it writable for the user Stash runs as",
                               "then run Reconcile Last 24 Hours so Plex catches up on this change.")
        assert "STASH2PLEX_DATA_DIR" in line
        task = host.run_task("queue_status")
        one_clean_error(task, f"the data folder {folder} is read-only", "then run the task again.")
    (again,) = host.run_hook("Scene.Update.Post", 7)
    assert again.error is None
    assert [e[1] for e in inbox(folder)] == [5, 7]


@contextmanager
def synced_stage(tmp_path: Path, n: int = 6) -> Iterator[Stage]:
    with stage(n, seed=19, work_dir=tmp_path, settings=QUIET, on_result=audited("data folder")) as st:
        AUDIT.add_secret(st.plex.token)
        out = st.task("all")
        assert out.error is None and out.output["summary"]["synced"] == n, out.stderr[-2000:]
        st.stop_workers()  # the breakage starts from a quiet folder, with no worker holding the file open
        yield st


def test_health_check_in_a_read_only_folder_reports_it_among_its_checks(tmp_path: Path) -> None:
    with synced_stage(tmp_path, n=2) as st, read_only(st.data_dir):
        out = st.task("health_check")
        assert out.returncode == 0 and "Traceback" not in out.stderr
        (line,) = [x for x in out.lines("info") if x.startswith("[FAIL]")]
        assert line.startswith(f"[FAIL] Data folder: {st.data_dir}") and "permissions" in line, line
        assert "[OK] Plex token: accepted" in out.lines("info")  # the other checks still ran
        assert out.error is not None and "Data folder" in out.error


def test_full_disk_fails_cleanly_leaves_nothing_half_written_and_recovers(tmp_path: Path) -> None:
    with synced_stage(tmp_path) as st, small_disk(st.data_dir, 4096):
        scene = st.library.sorted_ids()[0]
        filler = fill(st.data_dir)
        st.library.update_scene(scene, title="Edited while the disk was full")
        hook = st.hook(scene)
        one_clean_error(hook, f"could not record Scene.Update.Post for id {scene}: the disk holding the data "
                              f"folder {st.data_dir} is full: free some space on it",
                        "then run Reconcile Last 24 Hours")
        assert list(spool.spool_dir(st.data_dir).glob("*")) == []  # not even a .tmp left behind
        task = st.task("reconcile_recent")  # it would queue the edit: a write
        one_clean_error(task, f"the disk holding the data folder {st.data_dir} is full: free some space on it, "
                              "then run the task again. Nothing was half-written.")
        filler.unlink()  # space returns
        conn = sqlite3.connect(db_path(st.data_dir))
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        conn.close()
        out = st.task("reconcile_recent")
        assert out.error is None, out.stderr[-2000:]
        assert mismatches(st, scene) == []
        assert st.plex_item(scene).title == "Edited while the disk was full"


def test_damaged_database_is_replaced_and_reconcile_rebuilds_what_was_lost(tmp_path: Path) -> None:
    with synced_stage(tmp_path, n=8) as st:
        ids = st.library.sorted_ids()
        st.library.update_scene(ids[0], title="Changed before the damage")  # its hook was lost with the file
        damage_db(st.data_dir, "garbage")
        st.library.update_scene(ids[1], title="Changed after the damage")
        hook = st.hook(ids[1])
        assert hook.error is None and hook.output["spooled"] is True, hook.stderr
        (warning,) = hook.lines("warning")
        assert "stash2plex.db did not take the event in time (file is not a database); it waits in" in warning
        st.wait_for_worker()  # the worker replaces the file, then handles the spooled event
        log = (st.data_dir / "worker.log").read_text()
        assert "stash2plex.db was damaged (file is not a database) and was moved aside" in log
        # The file also held which Plex locks were ours: they still count as ours, not a person's.
        assert "someone else locked" not in log
        assert mismatches(st, ids[1]) == []
        assert ledger_count(st) == 1  # everything else was lost with the file
        out = st.task("reconcile_all")
        assert out.error is None, out.stderr[-2000:]
        with StateStore(st.data_dir) as state:
            assert state.get(LOCKS_FORGOTTEN) is None  # the rebuild is done: locks are recorded again
        assert ledger_count(st) == len(ids)
        assert {sid: mismatches(st, sid) for sid in ids} == {sid: [] for sid in ids}, out.output
        assert st.plex_item(ids[0]).title == "Changed before the damage"
        assert st.plex_item(ids[1]).title == "Changed after the damage"
        assert len([p for p in st.data_dir.iterdir() if QUARANTINE_MARK in p.name]) == 1
        # The locks are the plugin's again: the next Stash edit goes through without the setting.
        st.library.update_scene(ids[2], title="Edited after the rebuild")
        assert st.hook(ids[2]).error is None
        st.wait_until(lambda: st.plex_item(ids[2]).title == "Edited after the rebuild", timeout=60)


def test_damaged_database_found_by_a_task_is_reported_in_stash_log(tmp_path: Path) -> None:
    with synced_stage(tmp_path, n=3) as st:
        damage_db(st.data_dir, "future")
        out = st.task("queue_status")
        assert out.error is None, out.stderr[-2000:]
        (warning,) = [w for w in out.lines("warning") if "damaged" in w]
        assert warning.startswith(f"Stash2Plex: stash2plex.db was damaged (it was written by a newer Stash2Plex "
                                  f"(schema {SCHEMA_VERSION + 5}; this one knows up to {SCHEMA_VERSION})) and was "
                                  f"moved aside to {st.data_dir}/stash2plex.db{QUARANTINE_MARK}")
        assert warning.endswith("Run Reconcile All to rebuild what was queued and synced.")


def test_locked_database_the_hook_returns_and_the_event_arrives_once(tmp_path: Path) -> None:
    with synced_stage(tmp_path, n=4) as st:
        scene = st.library.sorted_ids()[2]
        st.library.update_scene(scene, title="Saved while the database was held")
        with db_held(st.data_dir):
            hook = st.hook(scene)
            assert hook.error is None and hook.output["spooled"] is True, hook.stderr
            assert hook.wall_time < 10, hook.wall_time  # not a speed target: unbounded it waits minutes
            assert hook.lines("warning") == [] and hook.lines("error") == []  # contention: nothing to fix
            assert len(spool.spooled(st.data_dir)) == 1
        st.wait_until(lambda: mismatches(st, scene) == [] and not spool.spooled(st.data_dir), timeout=120)
        st.wait_for_worker(timeout=60)
        rating_key = st.plex_item(scene).rating_key
        assert st.plex.count("PUT", rating_key=rating_key) >= 1
        with JobQueue(st.data_dir) as queue:
            assert queue.report.counts(time.time()).inbox == 0 and queue.report.job_for_scene(scene) is None
