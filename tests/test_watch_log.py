"""The watch-history log: play keys and the cursor move together, and only forward."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from sync_queue import ledger, watch_log
from sync_queue.db import write_txn
from sync_queue.watch_log import PlayRecord

NOW = 1_800_000_000.0


def play(key: str, scene: int | None, at: int, outcome: str = "added") -> PlayRecord:
    return PlayRecord(key, scene, "100", 1, at, outcome)


@pytest.fixture
def db(tmp_path: Path) -> sqlite3.Connection:
    conn = watch_log.open_log(tmp_path)
    yield conn
    conn.close()


def test_a_page_records_its_plays_and_the_cursor_in_one_transaction(db: sqlite3.Connection) -> None:
    watch_log.commit_page(db, "account:1", [play("a", 1, 60), play("b", None, 120, "no_scene")], 120, NOW)
    assert watch_log.known(db, ["a", "b", "c"]) == {"a", "b"}
    assert watch_log.cursor(db, "account:1").viewed_at == 120
    assert watch_log.cursor(db, "all") is None


def test_a_failed_page_leaves_neither_plays_nor_cursor(db: sqlite3.Connection) -> None:
    watch_log.commit_page(db, "account:1", [play("a", 1, 60)], 60, NOW)
    with pytest.raises(sqlite3.IntegrityError):
        # A record the table refuses (no time) fails the whole page, cursor included.
        watch_log.commit_page(db, "account:1", [play("b", 1, 120), PlayRecord("c", 1, "1", 1, None, "added")],
                              180, NOW)
    assert watch_log.known(db, ["b", "c"]) == set()
    assert watch_log.cursor(db, "account:1").viewed_at == 60


def test_the_cursor_never_moves_back_and_a_key_is_kept_once(db: sqlite3.Connection) -> None:
    watch_log.commit_page(db, "account:1", [play("a", 1, 600)], 600, NOW)
    watch_log.commit_page(db, "account:1", [play("a", 2, 30, "in_stash")], 30, NOW + 1)
    assert watch_log.cursor(db, "account:1").viewed_at == 600
    assert db.execute("SELECT scene_id, outcome FROM watch_plays").fetchall() == [(1, "added")]


def test_minutes_count_only_plays_that_are_in_stash(db: sqlite3.Connection) -> None:
    watch_log.commit_page(db, "all", [play("a", 1, 60), play("b", 1, 119, "in_stash"), play("c", 1, 120),
                                      play("d", None, 60, "no_scene"), play("e", 2, 60, "other_library")], 120, NOW)
    assert watch_log.recorded_minutes(db, [1, 2]) == {(1, 1): 2, (1, 2): 1}


def test_the_ledger_read_backwards_skips_items_plex_lost(db: sqlite3.Connection) -> None:
    with write_txn(db):
        ledger.put(db, 7, "h", "100", None, None, {}, NOW)
        ledger.put(db, 8, "h", "101", None, None, {}, NOW)
        ledger.mark_lost(db, 8)
    assert watch_log.scenes_for_items(db, ["100", "101", "102"]) == {"100": 7}


def test_finish_run_keeps_the_summary_and_the_resume_mark(db: sqlite3.Connection) -> None:
    watch_log.finish_run(db, "account:1", 500, {"added": 3}, NOW)
    watch_log.finish_run(db, "account:1", None, {"added": 0}, NOW + 5)
    last = watch_log.latest(db)
    assert (last.scope, last.resume_at, last.updated_at, last.last_run) == ("account:1", 500, NOW + 5, {"added": 0})


def test_unmatched_plays_are_listed_per_account_and_resolved_once(db: sqlite3.Connection) -> None:
    watch_log.commit_page(db, "all", [PlayRecord("a", None, "100", 1, 60, "no_scene"),
                                      PlayRecord("b", None, "101", 7, 30, "no_scene"),
                                      PlayRecord("c", None, None, 1, 10, "no_scene"),  # deleted item
                                      PlayRecord("d", 3, "102", 1, 5, "added")], 60, NOW)
    assert [p.play_key for p in watch_log.unmatched(db, None, 10)] == ["b", "a"]
    assert [p.play_key for p in watch_log.unmatched(db, 1, 10)] == ["a"]
    watch_log.resolve(db, [PlayRecord("a", 4, "100", 1, 60, "added"), PlayRecord("d", 9, "102", 1, 5, "in_stash")],
                      NOW + 1)
    rows = dict(db.execute("SELECT play_key, scene_id || ':' || outcome FROM watch_plays").fetchall())
    assert rows["a"] == "4:added" and rows["d"] == "3:added"  # only a play still without a scene changes
    assert watch_log.recorded_minutes(db, [4]) == {(4, 1): 1}
