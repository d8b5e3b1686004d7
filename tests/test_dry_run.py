"""Issue 7 point 6: Dry Run. The pure parts as tables, then the task end to end through the
Stash host against both emulators: it shows what a sync would change, and writes nothing
(no PUT, POST or scan request to Plex, no job or ledger row, not even a database)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from emulators.stage import Stage, plex_path, stage
from plex.desired import Actor, DesiredState
from plex.diff import plan_edit
from plex.records import CurrentState, LedgerEntry
from reconciliation.dryrun import (
    FieldChange,
    SceneDiff,
    Status,
    change_kinds,
    field_changes,
    pages,
    scene_line,
    summary_line,
    would_upload,
)
from sync_queue.db import db_path
from tasks.args import BadTaskArgument, parse_limit
from tests.e2e_worker_support import audited, counts, queue_of, writes
from tests.secret_audit import AUDIT

# --- pure: a plan read back as field changes ------------------------------------------------

ITEM = CurrentState(rating_key="7", title="file name", genres=("A", "B"), actors=(Actor("P1"),),
                    collections=("Mine",), locked=frozenset({"title", "genre", "actor", "collection"}))

PLANS = [
    # (name, desired, current, written, lock, expected words in the line, expected kinds)
    ("title only", DesiredState(title="Real"), ITEM, None, True,
     "title 'file name' \u2192 'Real'", ["would change", "title changed"]),
    ("genres +1 -1", DesiredState(genres=("A", "C")), ITEM, None, True,
     "genres +1 \u22121", ["would change", "genres added", "genres removed"]),
    ("genre case only is no change", DesiredState(genres=("a", "b")), ITEM, None, True, None, []),
    ("actor removed", DesiredState(actors=()), ITEM, None, True, "actors \u22121", ["would change", "actors removed"]),
    ("lock only", DesiredState(title="file name"), CurrentState(rating_key="7", title="file name"), None, True,
     "lock title", ["would change", "locks only"]),
    ("no lock wanted, same value", DesiredState(title="file name"), CurrentState(rating_key="7", title="file name"),
     None, False, None, []),
    ("collection of ours added, the user's kept", DesiredState(collections=("Studio",)), ITEM, {}, True,
     "collections +1", ["would change", "collections added"]),
    ("summary from empty", DesiredState(summary="S"), ITEM, None, True,
     "summary (empty) \u2192 'S'", ["would change", "summary changed"]),
]


@pytest.mark.parametrize("name,desired,current,written,lock,words,kinds", PLANS, ids=[p[0] for p in PLANS])
def test_a_plan_reads_back_as_field_changes(name: str, desired: DesiredState, current: CurrentState,
                                            written: Any, lock: bool, words: str | None, kinds: list[str]) -> None:
    plan = plan_edit(desired, current, written, lock=lock, preserve=False)
    changes = field_changes(plan, current)
    status = Status.CHANGES if changes else Status.UNCHANGED
    diff = SceneDiff(3, "T", status, "7", changes)
    if words is None:
        assert changes == () and change_kinds(diff) == ["unchanged"]
        return
    assert scene_line(diff) == f'scene 3 "T": {words}'
    assert change_kinds(diff) == kinds


def test_list_changes_carry_before_after_added_removed() -> None:
    plan = plan_edit(DesiredState(genres=("B", "C", "D")), ITEM, None, lock=True, preserve=False)
    (change,) = field_changes(plan, ITEM)
    assert change.to_dict() == {"field": "genre", "added": ["C", "D"], "removed": ["A"],
                                "before": ["A", "B"], "after": ["B", "C", "D"]}


def test_kept_fields_under_preserve_are_shown_and_sent_nowhere() -> None:
    item = CurrentState(rating_key="7", title="Edited in Plex", locked=frozenset({"title"}))
    plan = plan_edit(DesiredState(title="Stash"), item, {"title": "Old Stash"}, lock=True, preserve=True)
    assert plan.kept == ("title",) and plan.empty
    diff = SceneDiff(3, "Stash", Status.UNCHANGED, "7", field_changes(plan, item), plan.kept)
    assert change_kinds(diff) == ["unchanged", "kept as edited in Plex"]


def test_the_example_line_of_the_brief() -> None:
    diff = SceneDiff(12, "Title", Status.CHANGES, "7", (
        FieldChange("title", before="a", after="b"),
        FieldChange("genre", added=("x", "y"), removed=("z",)),
        FieldChange("poster", detail="new"),
    ))
    assert scene_line(diff) == "scene 12 \"Title\": title 'a' \u2192 'b'; genres +2 \u22121; poster"
    assert change_kinds(diff) == ["would change", "title changed", "genres added", "genres removed",
                                  "poster would upload"]


@pytest.mark.parametrize("diff,line,kinds", [
    (SceneDiff(4, "", Status.NOT_IN_PLEX, paths_tried=("/media/a.mp4", "/media/b.mp4")),
     "scene 4: not in Plex (tried /media/a.mp4, /media/b.mp4)", ["not in Plex"]),
    (SceneDiff(5, "X", Status.AMBIGUOUS, candidates=("/m/1/a.mp4", "/m/2/a.mp4")),
     'scene 5 "X": several Plex items share its file name (/m/1/a.mp4; /m/2/a.mp4)', ["ambiguous match"]),
    (SceneDiff(6, "Y", Status.CHANGES, "9", (FieldChange("actor", detail="photos"),)),
     'scene 6 "Y": actors: photos', ["would change", "actor photos"]),
])
def test_lines_and_kinds_of_unmatched_and_special_scenes(diff: SceneDiff, line: str, kinds: list[str]) -> None:
    assert scene_line(diff) == line
    assert change_kinds(diff) == kinds


POSTER = "http://stash/scene/1/screenshot?t=1"
IMAGES = [
    ("never synced", DesiredState(poster_url=POSTER), None, "7", [("poster", "new")]),
    ("same item, same source", DesiredState(poster_url=POSTER),
     LedgerEntry(plex_key="7", poster_source=POSTER, poster_hash="h"), "7", []),
    ("same item, new source", DesiredState(poster_url=POSTER + "2"),
     LedgerEntry(plex_key="7", poster_source=POSTER, poster_hash="h"), "7",
     [("poster", "new source, uploaded unless the bytes are the same")]),
    ("another item now", DesiredState(poster_url=POSTER),
     LedgerEntry(plex_key="8", poster_source=POSTER, poster_hash="h"), "7", [("poster", "new")]),
    ("no image wanted", DesiredState(), None, "7", []),
    ("background too", DesiredState(poster_url=POSTER, art_url=POSTER), None, "7", [("poster", "new"), ("art", "new")]),
]


@pytest.mark.parametrize("name,desired,ledger,key,expected", IMAGES, ids=[i[0] for i in IMAGES])
def test_which_images_would_upload(name: str, desired: DesiredState, ledger: LedgerEntry | None, key: str,
                                   expected: list[tuple[str, str]]) -> None:
    assert list(would_upload(desired, ledger, key)) == expected


@pytest.mark.parametrize("raw,expected", [
    (None, None), ("", None), (" ", None), ("0", None), ("all", None), ("ALL", None),
    ("5", 5), (" 12 ", 12), ("3.0", 3), (7, 7),
])
def test_limit_argument(raw: Any, expected: int | None) -> None:
    assert parse_limit(raw) == expected


@pytest.mark.parametrize("raw", ["-1", "2.5", "ten", "1e400x"])
def test_a_bad_limit_is_a_clear_error(raw: str) -> None:
    with pytest.raises(BadTaskArgument, match="limit"):
        parse_limit(raw)


@pytest.mark.parametrize("n,size,limit,expected", [
    (5, 2, None, [2, 2, 1]), (5, 2, 3, [2, 1]), (5, 10, 2, [2]), (0, 2, None, []), (4, 2, 4, [2, 2]),
])
def test_pages_are_bounded_and_stop_at_the_limit(n: int, size: int, limit: int | None, expected: list[int]) -> None:
    consumed: list[int] = []

    def scenes():
        for i in range(n):
            consumed.append(i)
            yield i

    assert [len(p) for p in pages(scenes(), size, limit)] == expected
    assert len(consumed) == sum(expected)  # no scene read beyond the limit


def test_summary_orders_counts_and_says_nothing_was_written() -> None:
    line = summary_line(3, {"genres added": 2, "unchanged": 1, "would change": 2, "title changed": 1})
    assert line == ("Stash2Plex dry run: 3 scenes checked: would change 2, unchanged 1, title changed 1, "
                    "genres added 2. Nothing was written.")


# --- end to end -------------------------------------------------------------------------------


def ok(result: Any) -> dict[str, Any]:
    assert result.error is None and result.returncode == 0, (result.error, result.stderr[-3000:])
    assert isinstance(result.output, dict), result.stdout
    return result.output


def dry_stage(tmp_path: Path, n: int, **kwargs: Any):
    return stage(n, seed=23, work_dir=tmp_path, on_result=audited("dry run e2e"), **kwargs)


def scene_lines(result: Any) -> list[str]:
    return [line for line in result.lines("info") if line.startswith("scene ")]


def assert_nothing_written(st: Stage) -> None:
    assert writes(st) == 0
    assert st.plex.count("GET", "/library/sections/1/refresh") == 0  # a scan request changes Plex too


def test_fresh_library_shows_every_change_and_writes_nothing(tmp_path: Path) -> None:
    with dry_stage(tmp_path, 6, scanned=False) as st:
        AUDIT.add_secret(st.plex.token)
        ids = st.library.sorted_ids()
        st.scan_into_plex(ids[:-1])  # the last scene's file is not in Plex yet
        before = {sid: st.plex_item(sid).fields.get("title") for sid in ids[:-1]}
        result = st.task("dry_run")
        out = ok(result)
        assert_nothing_written(st)
        assert not db_path(st.data_dir).exists()  # no queue, no ledger: not even a database
        assert out["scenes"] == 6 and out["written"] == 0
        assert out["counts"]["would change"] == 5 and out["counts"]["not in Plex"] == 1
        assert out["counts"]["poster would upload"] == 5
        assert "unchanged" not in out["counts"]
        json.dumps(out)  # the structured diff is plain JSON
        by_id = {d["scene_id"]: d for d in out["scenes_changed"]}
        assert set(by_id[ids[0]]) >= {"scene_id", "title", "status", "plex_key", "changes"}
        assert sorted(by_id) == ids
        missing = by_id[ids[-1]]
        assert missing["status"] == "not_in_plex"
        assert missing["paths_tried"] == [plex_path(st.library.scenes[ids[-1]].files[0].path)]
        for sid in ids[:-1]:
            want = st.library.scenes[sid].title
            title = [c for c in by_id[sid]["changes"] if c["field"] == "title"]
            if want and want != before[sid]:
                assert title == [{"field": "title", "before": before[sid], "after": want}], by_id[sid]
        lines = scene_lines(result)
        assert len(lines) == 6
        assert f"scene {ids[-1]}" in lines[-1] and "not in Plex (tried /media/stash/" in lines[-1]
        assert result.lines("info")[-1].endswith("Nothing was written.")
        assert result.progress[0] == 0.0 and result.progress[-1] == 1.0
        assert result.progress == sorted(result.progress)
        # Plex read through one listing page and one batched read of the five items.
        assert st.plex.count("GET", "/library/metadata") == 1
        assert out["full_reads"] == 5


def test_the_dry_run_predicts_what_sync_all_then_writes(tmp_path: Path) -> None:
    with dry_stage(tmp_path, 5) as st:
        AUDIT.add_secret(st.plex.token)
        predicted = {d["scene_id"]: d for d in ok(st.task("dry_run"))["scenes_changed"]}
        assert sorted(predicted) == st.library.sorted_ids()
        ok(st.task("all"))
        checked = 0
        for sid, diff in predicted.items():
            item = st.plex_item(sid)
            for change in diff["changes"]:
                checked += 1
                if change.get("lock_only"):
                    assert change["field"] in item.locks, (sid, change, item.locks)
                elif change["field"] in ("title", "summary", "studio", "originallyAvailableAt"):
                    assert item.fields.get(change["field"]) == change["after"], (sid, change)
                elif change["field"] == "genre":
                    assert sorted(n.casefold() for n, _ in item.tags.get("Genre", [])) == sorted(
                        n.casefold() for n in change["after"])
                else:
                    checked -= 1
        assert checked >= 10  # titles, dates, genres and locks of five scenes were compared


def test_after_sync_all_everything_is_unchanged_from_the_listing_alone(tmp_path: Path) -> None:
    with dry_stage(tmp_path, 8) as st:
        AUDIT.add_secret(st.plex.token)
        ok(st.task("all"))
        with queue_of(st) as queue:
            ledger_before = {e.scene_id: (e.fields_hash, e.synced_at) for e in queue.ledger.iterate()}
        c0 = counts(st)
        st.plex.reset_log()
        result = st.task("dry_run")
        out = ok(result)
        assert out["counts"] == {"unchanged": 8}, out["counts"]
        assert out["scenes_changed"] == [] and scene_lines(result) == []
        assert_nothing_written(st)
        assert st.plex.count("GET", "/library/metadata") == 0  # the listing answered every scene
        with queue_of(st) as queue:
            assert {e.scene_id: (e.fields_hash, e.synced_at) for e in queue.ledger.iterate()} == ledger_before
        assert counts(st) == c0


def test_a_change_on_either_side_after_a_sync_is_shown_field_by_field(tmp_path: Path) -> None:
    with dry_stage(tmp_path, 6) as st:
        AUDIT.add_secret(st.plex.token)
        ok(st.task("all"))
        ids = st.library.sorted_ids()
        old = st.plex_item(ids[0]).fields["title"]
        st.library.update_scene(ids[0], title="Renamed in Stash")
        with st.plex.lock:
            item = st.plex_item(ids[1])
            plex_title = item.fields["title"]
            item.fields["title"] = "Edited in Plex"
            item.reindex()
            st.plex.library.sections[item.section].order = None
        st.plex.reset_log()
        result = st.task("dry_run")
        out = ok(result)
        assert out["counts"]["would change"] == 2 and out["counts"]["unchanged"] == 4
        assert out["counts"]["title changed"] == 2
        lines = scene_lines(result)
        assert len(lines) == 2
        assert lines[0].startswith(f'scene {ids[0]} "Renamed in Stash": title {old!r} \u2192 \'Renamed in Stash\'')
        assert f"title 'Edited in Plex' \u2192 {plex_title!r}" in lines[1]
        assert out["full_reads"] == 2  # only the two the listing could not clear were read
        assert_nothing_written(st)


def test_limit_checks_only_that_many_scenes_even_while_disabled(tmp_path: Path) -> None:
    with dry_stage(tmp_path, 9) as st:
        AUDIT.add_secret(st.plex.token)
        st.configure(enabled=False)  # a dry run is how one checks before turning syncing on
        result = st.task("dry_run", {"limit": "3"})
        out = ok(result)
        assert any("disabled" in line for line in result.lines("warning"))
        assert out["scenes"] == 3 and out["limit"] == 3
        assert [d["scene_id"] for d in out["scenes_changed"]] == st.library.sorted_ids()[:3]
        assert len(scene_lines(result)) == 3
        assert "3 scenes checked" in result.lines("info")[-1]
        assert_nothing_written(st)
        bad = st.task("dry_run", {"limit": "lots"})
        assert bad.error and "limit" in bad.error and bad.output is None
