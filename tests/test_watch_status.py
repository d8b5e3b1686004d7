"""What Queue Status and Health Check say about the watch-history import, from plain facts."""

from __future__ import annotations

from pathlib import Path

from base.clock import absolute_utc
from sync_queue import watch_log
from sync_queue.watch_log import PlayRecord
from tasks.health_checks import Level, check_watch_history
from watch.status import WatchFacts, read_facts, status_lines

NOW = 1_800_000_000.0
DAY = 86400.0
RUN = {"scope": "the Plex token's account", "added": 12, "in_stash": 1, "no_scene": 0, "resumes_set": 2,
       "resumes_cleared": 1}


def facts(**changes) -> WatchFacts:
    base = dict(enabled=True, last_at=NOW - 3600, scope="the Plex token's account", cursor=1_799_990_000,
                resume_cursor=1_799_995_000, last_run=dict(RUN))
    base.update(changes)
    return WatchFacts(**base)


def test_off_is_ok_and_says_how_to_turn_it_on():
    check = check_watch_history(WatchFacts(enabled=False), DAY, NOW)
    assert check.level is Level.OK and "off" in check.text and "Import Plex watch history" in check.text


def test_the_last_import_and_its_cursor_are_shown():
    check = check_watch_history(facts(), DAY, NOW)
    assert check.level is Level.OK
    assert "12 plays added" in check.text and "3 resume points" in check.text
    assert f"cursor: Plex plays up to {absolute_utc(1_799_990_000)}" in check.text


def test_plays_without_a_scene_and_an_overdue_import_warn():
    unmatched = check_watch_history(facts(last_run={**RUN, "no_scene": 4}), DAY, NOW)
    assert unmatched.level is Level.WARN and "Sync All" in unmatched.fix
    overdue = check_watch_history(facts(last_at=NOW - 3 * DAY), DAY, NOW)
    assert overdue.level is Level.WARN and "overdue" in overdue.text
    assert check_watch_history(facts(last_at=NOW - 3 * DAY), None, NOW).level is Level.OK


def test_never_ran_is_ok():
    check = check_watch_history(WatchFacts(enabled=True), DAY, NOW)
    assert check.level is Level.OK and "no import yet" in check.text


def test_queue_status_line_names_the_account_and_the_cursor():
    (line,) = status_lines(facts(account_setting="bob"), absolute_utc)
    assert line.startswith("Watch history import: on (bob); last import")
    assert absolute_utc(1_799_990_000) in line


def test_read_facts_reads_without_creating_anything(tmp_path: Path):
    assert read_facts(tmp_path, True) == WatchFacts(True)
    assert not list(tmp_path.iterdir())
    conn = watch_log.open_log(tmp_path)
    watch_log.commit_page(conn, "account:1", [PlayRecord("k", 1, "100", 1, 1000, "added")], 1000, NOW)
    watch_log.finish_run(conn, "account:1", 1200, dict(RUN), NOW + 1)
    conn.close()
    got = read_facts(tmp_path, True, "")
    assert (got.cursor, got.resume_cursor, got.last_at, got.scope) == (1000, 1200, NOW + 1, RUN["scope"])
    assert got.last_run["added"] == 12
