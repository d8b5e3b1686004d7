"""Health Check: facts to lines as tables (no I/O), then the task end to end through the
Stash host: OK on a good stage, FAIL for a wrong or revoked token and for Plex down, WARN
for a path_map that maps nothing; never a secret in what it prints."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from emulators.stage import stage
from sync_queue.schema import SCHEMA_VERSION
from tests.e2e_worker_support import QUIET, audited, writes
from tests.secret_audit import AUDIT
from worker.health_checks import (
    Check,
    DataFacts,
    Facts,
    Level,
    PlexFacts,
    QueueFacts,
    SampleFacts,
    StashFacts,
    assess,
    check_data,
    check_packages,
    check_plex,
    check_queue,
    check_reconcile,
    check_sample,
    check_settings,
    check_stash,
    first_fix,
    report_lines,
    within,
)

NOW = 1_800_000_000.0
GOOD_PLEX = PlexFacts("http://plex:32400", name="Home", version="1.41", movie_sections=("Movies", "Stash"))
GOOD = Facts(
    stash=StashFacts("http://stash:9999", version="v0.30.1"),
    plex=GOOD_PLEX,
    sample=SampleFacts(sampled=5, prefix_hits=5, found=5, path_map_set=True),
    data=DataFacts("/cfg/plugin_data/Stash2Plex", True, True, 3, 3, 90_000),
    queue=QueueFacts(synced=10),
    packages=(("plexapi", "4.18.3"), ("requests", "2.32")),
    python="3.11.7",
)


def levels(checks: list[Check]) -> dict[str, Level]:
    return {c.name: c.level for c in checks}


# --- pure: one table per part ----------------------------------------------------------------


def test_a_good_set_up_is_all_ok_and_needs_no_fix() -> None:
    checks = assess(GOOD, NOW)
    assert {c.level for c in checks} == {Level.OK}, [c.line() for c in checks]
    assert first_fix(checks) is None
    names = [c.name for c in checks]
    assert names == ["Stash", "Settings", "Plex", "Plex token", "Plex libraries", "Path mapping", "Data folder",
                     "Queue", "Plex circuit", "Worker", "Reconcile", "Dependencies"]
    head, *lines = report_lines(checks)
    assert head == "Stash2Plex health check: 12 OK, 0 WARN, 0 FAIL"
    assert lines[0] == "[OK] Stash: reachable at http://stash:9999, version v0.30.1"
    assert lines[2] == '[OK] Plex: reachable at http://plex:32400: "Home", version 1.41'


PLEX_CASES = [
    ("auth", replace(GOOD_PLEX, error_kind="auth", error="401"),
     {"Plex": Level.OK, "Plex token": Level.FAIL, "Plex libraries": Level.WARN}, "Plex token"),
    ("down", replace(GOOD_PLEX, error_kind="down", error="refused"),
     {"Plex": Level.FAIL, "Plex token": Level.WARN, "Plex libraries": Level.WARN}, "Plex is running"),
    ("library named but absent", replace(GOOD_PLEX, wanted=("Movies", "Nope")),
     {"Plex": Level.OK, "Plex token": Level.OK, "Plex libraries": Level.FAIL}, "Plex libraries"),
    ("library names match ignoring case", replace(GOOD_PLEX, wanted=("stash",)),
     {"Plex": Level.OK, "Plex token": Level.OK, "Plex libraries": Level.OK}, None),
    ("no movie library", replace(GOOD_PLEX, movie_sections=()),
     {"Plex": Level.OK, "Plex token": Level.OK, "Plex libraries": Level.FAIL}, "Movies library"),
    ("not configured", PlexFacts("", error_kind="not_configured", error="not checked (setting missing)"),
     {"Plex": Level.WARN, "Plex token": Level.WARN, "Plex libraries": Level.WARN}, None),
]


@pytest.mark.parametrize("name,facts,expected,fix", PLEX_CASES, ids=[c[0] for c in PLEX_CASES])
def test_plex_lines(name: str, facts: PlexFacts, expected: dict[str, Level], fix: str | None) -> None:
    checks = check_plex(facts)
    assert levels(checks) == expected
    failed = first_fix(checks)
    if fix is None:
        assert failed is None
    else:
        assert failed is not None and fix in failed


def test_used_libraries_are_named_in_plexs_spelling() -> None:
    (_, _, libraries) = check_plex(replace(GOOD_PLEX, wanted=("stash",)))
    assert libraries.text == "using Stash (as set in 'Plex libraries')"
    (_, _, libraries) = check_plex(GOOD_PLEX)
    assert libraries.text.startswith("using Movies, Stash (every movie library")


SAMPLES = [
    ("all by path", SampleFacts(5, 5, 5, path_map_set=True), Level.OK, "5 of 5 sampled Stash files map to a Plex item by path"),
    ("prefix matches nothing", SampleFacts(5, 0, 0, by_name=5, path_map_set=True,
                                           missing=(("/data/a.mp4", "/data/a.mp4"),)),
     Level.WARN, "path_map maps nothing"),
    ("found by name only", SampleFacts(4, 4, 1, by_name=3, path_map_set=True), Level.WARN, "3 found by file name only"),
    ("some not in Plex", SampleFacts(4, 4, 3, path_map_set=True, missing=(("/d/x.mp4", "/m/x.mp4"),)),
     Level.WARN, "3 of 4 sampled Stash files map to a Plex item by path (1 not in Plex); e.g. /d/x.mp4 was "
                 "looked for as /m/x.mp4"),
    ("ambiguous", SampleFacts(2, 2, 1, ambiguous=1, path_map_set=True), Level.WARN, "1 ambiguous by file name"),
    ("no path_map and nothing found", SampleFacts(3, 0, 0), Level.WARN, "no path_map is set"),
    ("no path_map needed", SampleFacts(3, 0, 3), Level.OK, "3 of 3"),
    ("nothing to sample", SampleFacts(0), Level.OK, "no Stash scene with a file"),
    ("Stash failed mid-sample", SampleFacts(1, 1, 1, error="Stash answered 500"), Level.WARN, "not checked (Stash answered 500)"),
]


@pytest.mark.parametrize("name,facts,level,words", SAMPLES, ids=[s[0] for s in SAMPLES])
def test_path_mapping_line(name: str, facts: SampleFacts, level: Level, words: str) -> None:
    check = check_sample(facts, plex_ok=True)
    assert check.level is level and words in check.text, check.line()
    assert (check.fix != "") == (level is not Level.OK and facts.error is None)  # "not checked" has none


def test_path_mapping_is_not_judged_when_plex_is_not_usable() -> None:
    assert check_sample(SampleFacts(5, 5, 5), plex_ok=False).level is Level.WARN


QUEUES = [
    ("dead letters warn, by reason", QueueFacts(dead_letters=(("PlexNotFound", 3), ("InvalidData", 1))),
     {"Queue": Level.WARN}, "4 dead letters (PlexNotFound 3, InvalidData 1)"),
    ("deferred shows the next due", QueueFacts(deferred=2, next_due=NOW + 90), {"Queue": Level.OK},
     "2 deferred (next in 1m 30s, 2027-01-15 08:01:30 UTC)"),
    ("halt warns", QueueFacts(halted=True), {"Halt": Level.WARN}, "halted"),
    ("open circuit warns", QueueFacts(breaker="open", breaker_until=NOW + 60), {"Plex circuit": Level.WARN},
     "open until 2027-01-15 08:01:00 UTC"),
    ("due work and no worker", QueueFacts(due=3), {"Worker": Level.WARN}, "3 jobs or events waiting"),
]


@pytest.mark.parametrize("name,facts,expected,words", QUEUES, ids=[q[0] for q in QUEUES])
def test_queue_lines(name: str, facts: QueueFacts, expected: dict[str, Level], words: str) -> None:
    checks = check_queue(facts, worker_running=False, now=NOW)
    got = levels(checks)
    assert {k: got[k] for k in expected} == expected
    assert any(words in c.text for c in checks), [c.line() for c in checks]
    assert first_fix(checks) is None  # the queue's state never fails the check


def test_a_running_worker_with_due_work_is_fine() -> None:
    checks = check_queue(QueueFacts(due=3), worker_running=True, now=NOW)
    assert levels(checks)["Worker"] is Level.OK


@pytest.mark.parametrize("facts,level,words", [
    (DataFacts("/d", exists=False, expected=3), Level.OK, "no database yet"),
    (DataFacts("/d", True, True, 3, 3, 2 * 1024 * 1024), Level.OK, "schema 3 of 3, database 2.0 MB"),
    (DataFacts("/d", True, True, 2, 3, 1000), Level.OK, "migrated on the next sync"),
    (DataFacts("/d", True, True, 4, 3, 1000), Level.FAIL, "newer than this version"),
    (DataFacts("/d", True, False, 3, 3, 1000), Level.FAIL, "not writable"),
    (DataFacts("/d", True, True, None, 3, error="database unreadable (disk I/O error)"), Level.FAIL, "unreadable"),
])
def test_data_folder_line(facts: DataFacts, level: Level, words: str) -> None:
    check = check_data(facts)
    assert check.level is level and words in check.text, check.line()


@pytest.mark.parametrize("last,interval,level,words", [
    (None, None, Level.OK, "no full reconcile yet; auto-reconcile never"),
    (NOW - 7200, 86400.0, Level.OK, "last full reconcile 2h ago"),
    (NOW - 3 * 86400, 86400.0, Level.WARN, "overdue"),
    (NOW - 30 * 86400, None, Level.OK, "auto-reconcile never"),
])
def test_reconcile_line(last: float | None, interval: float | None, level: Level, words: str) -> None:
    check = check_reconcile(last, interval, NOW)
    assert check.level is level and words in check.text, check.line()


@pytest.mark.parametrize("version,requirement,expected", [
    ("4.18.3", "plexapi>=4.18.3,<4.19", True),
    ("4.19.0", "plexapi>=4.18.3,<4.19", False),
    ("4.18.2", "plexapi>=4.18.3,<4.19", False),
    ("4.1.0", "filelock>=3.13,<4.1.1", True),
    ("4.1.1", "filelock>=3.13,<4.1.1", False),
    ("2.32.0.post1", "requests>=2.31,<3", True),
    ("1.1.0", "persist-queue==1.1.0", True),
    ("abc", "x>=1", None),
    ("1.0", "x", None),
])
def test_versions_against_the_tested_range(version: str, requirement: str, expected: bool | None) -> None:
    assert within(version, requirement) is expected


def test_a_package_outside_the_tested_range_warns() -> None:
    check = check_packages((("plexapi", "4.19.1"), ("requests", "2.32")), "", "3.11",
                           {"plexapi": "plexapi>=4.18.3,<4.19", "requests": "requests>=2.31,<3"})
    assert check.level is Level.WARN
    assert check.text.endswith("outside the tested range: plexapi 4.19.1 (tested: plexapi>=4.18.3,<4.19)")


def test_a_missing_package_fails_with_the_install_command() -> None:
    check = check_packages((("plexapi", None), ("requests", "2.32")), "install with: pip ...", "3.11")
    assert check.level is Level.FAIL and "plexapi MISSING" in check.text and check.fix == "install with: pip ..."


@pytest.mark.parametrize("missing,enabled,level", [((), True, Level.OK), (("plex_token",), True, Level.FAIL),
                                                    ((), False, Level.WARN)])
def test_settings_line(missing: tuple[str, ...], enabled: bool, level: Level) -> None:
    check = check_settings(missing, enabled)
    assert check.level is level
    if missing:
        assert check.text == "'Plex token' (plex_token) not set"
        assert "plex_token" in check.fix and "Settings" in check.fix


def test_settings_are_not_judged_when_stash_cannot_be_read() -> None:
    checks = assess(replace(GOOD, stash=StashFacts("http://stash:9999", error="Cannot reach Stash at http://stash:9999"),
                            plex=PlexFacts("", error_kind="not_checked", error="not checked (settings are read from Stash)")),
                    NOW)
    assert levels(checks)["Settings"] is Level.WARN and levels(checks)["Stash"] is Level.FAIL
    assert checks[0].text == "Cannot reach Stash at http://stash:9999"  # the URL is not said twice


def test_stash_answering_but_refusing_our_settings_fails_as_such() -> None:
    check = check_stash(StashFacts("http://stash:9999", version="v0.30.1",
                                   error="our settings could not be read: Stash refused our credentials (401)"))
    assert check.level is Level.FAIL
    assert check.text == ("reachable at http://stash:9999, version v0.30.1, but our settings could not be read: "
                          "Stash refused our credentials (401)")


def test_the_first_fail_in_report_order_is_the_fix_named() -> None:
    facts = replace(GOOD, stash=StashFacts("http://stash:9999", error="refused"),
                    plex=replace(GOOD_PLEX, error_kind="down", error="refused"))
    fix = first_fix(assess(facts, NOW))
    assert fix is not None and fix.startswith("Health check failed: Stash: not reachable")


# --- end to end ---------------------------------------------------------------------------------


def health_stage(tmp_path: Path, **settings: Any):
    return stage(4, seed=41, work_dir=tmp_path, settings={**QUIET, **settings}, on_result=audited("health e2e"))


def line_of(result: Any, name: str) -> str:
    (line,) = [ln for ln in result.lines("info") if ln.split("] ", 1)[-1].startswith(name + ":")]
    return line


def test_a_good_stage_is_ok_and_writes_nothing(tmp_path: Path) -> None:
    with health_stage(tmp_path) as st:
        AUDIT.add_secret(st.plex.token)
        result = st.task("health_check")
        assert result.error is None and result.returncode == 0, (result.error, result.stderr[-2000:])
        assert result.output["ok"] is True
        assert all(c["level"] == "OK" for c in result.output["checks"]), result.lines("info")
        assert result.lines("info")[0] == "Stash2Plex health check: 12 OK, 0 WARN, 0 FAIL"
        assert "v0.30.1" in line_of(result, "Stash")
        assert '"Emulated Plex"' in line_of(result, "Plex")
        assert "4 of 4 sampled Stash files map to a Plex item by path" in line_of(result, "Path mapping")
        assert "no database yet" in line_of(result, "Data folder")
        assert writes(st) == 0 and st.plex.count("GET", "/library/sections/1/refresh") == 0
        assert not (st.data_dir / "stash2plex.db").exists()  # a health check creates no database
        assert st.plex.token not in result.stdout + result.stderr
        assert result.progress[0] == 0.0 and result.progress[-1] == 1.0
        # After a sync: the queue and the database are reported.
        assert st.task("all").error is None
        result = st.task("health_check")
        assert result.error is None
        assert "4 scenes synced, no dead letters" in line_of(result, "Queue")
        assert f"schema {SCHEMA_VERSION} of {SCHEMA_VERSION}" in line_of(result, "Data folder")


@pytest.mark.parametrize("how", ["wrong setting", "revoked"])
def test_a_bad_token_fails_the_task_and_says_what_to_fix(tmp_path: Path, how: str) -> None:
    with health_stage(tmp_path) as st:
        AUDIT.add_secret(st.plex.token)
        if how == "revoked":
            st.plex.faults.revoke_token()
        else:
            AUDIT.add_secret("wrong-token-6f1d2a")
            st.configure(plex_token="wrong-token-6f1d2a")
        result = st.task("health_check")
        assert result.output is None and result.error is not None
        assert result.error.startswith("Health check failed: Plex token: refused by Plex (401)")
        assert "set a valid X-Plex-Token" in result.error
        assert line_of(result, "Plex token").startswith("[FAIL]")
        assert line_of(result, "Stash").startswith("[OK]")
        assert any(lvl == "error" and "Health check failed" in msg for lvl, msg in result.logs)
        assert "wrong-token-6f1d2a" not in result.stdout + result.stderr
        assert st.plex.token not in result.stdout + result.stderr


def test_plex_down_fails_the_task(tmp_path: Path) -> None:
    with health_stage(tmp_path) as st:
        AUDIT.add_secret(st.plex.token)
        st.plex.faults.down = True
        result = st.task("health_check")
        assert result.error is not None and result.error.startswith("Health check failed: Plex: not reachable")
        assert line_of(result, "Plex").startswith("[FAIL]")
        assert line_of(result, "Path mapping").startswith("[WARN]")
        assert line_of(result, "Dependencies").startswith("[OK]")  # the rest is still reported


def test_stash_down_fails_the_task_and_still_reports_the_local_parts(tmp_path: Path) -> None:
    with health_stage(tmp_path) as st:
        AUDIT.add_secret(st.plex.token)
        st.stash.faults.down = True
        result = st.task("health_check")
        assert result.error is not None and result.error.startswith("Health check failed: Stash: Cannot reach Stash")
        assert line_of(result, "Settings").startswith("[WARN] Settings: not checked")
        assert line_of(result, "Data folder").startswith("[OK]")
        assert st.plex.count() == 0  # without settings, Plex is not guessed at


def test_a_path_map_that_maps_nothing_warns_but_passes(tmp_path: Path) -> None:
    with health_stage(tmp_path) as st:
        AUDIT.add_secret(st.plex.token)
        st.configure(path_map="/elsewhere=>/media/stash")
        result = st.task("health_check")
        assert result.error is None, result.error
        line = line_of(result, "Path mapping")
        assert line.startswith("[WARN] Path mapping: path_map maps nothing"), line
        assert "0 of 4 sampled Stash files map to a Plex item by path" in line
        assert result.output["ok"] is True
        assert [c["check"] for c in result.output["checks"] if c["level"] != "OK"] == ["Path mapping"]


def test_a_library_name_plex_lacks_fails(tmp_path: Path) -> None:
    with health_stage(tmp_path, plex_library="Stash, Missing Library") as st:
        AUDIT.add_secret(st.plex.token)
        result = st.task("health_check")
        assert result.error is not None and "no movie library named Missing Library" in result.error
        assert "Plex has: Stash" in result.error
