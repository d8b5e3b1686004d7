"""Every setting does what its description says, shown end to end (issue 2 point 3).

Each case saves settings in the emulated Stash the way the plugin's settings page does, runs
the plugin through the Stash host, and looks at what reached the emulated Plex. The unit
tests of `plex.desired` and `worker.policy` show the decisions; these show that a value the
user saves actually reaches them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from emulators.stage import Stage, stage
from emulators.stash_library import generate_library
from sync_queue.jobs import JobQueue
from tests.secret_audit import AUDIT

LIBRARY_SIZE = 30


def _rich(st: Stage) -> int:
    """A scene with every field the toggles govern, so each toggle has something to skip."""
    for sid in st.library.sorted_ids():
        s = st.library.scenes[sid]
        if (s.title and s.studio_id and s.details and s.code and s.date and len(s.date) == 10
                and len(s.tag_ids) >= 3 and len(s.performer_ids) >= 2):
            return sid
    raise AssertionError("the generated library has no fully tagged scene")


def _library() -> Any:
    lib = generate_library(LIBRARY_SIZE, seed=5)
    # Guarantee one fully tagged scene whatever the generator's dice said.
    first = lib.scenes[1]
    first.title = first.title or "A Title"
    first.studio_id = first.studio_id or 1
    first.details = first.details or "Some details"
    first.code = "ABC-123"
    first.date = "2021-06-15"
    first.tag_ids = list(range(1, 6))
    first.performer_ids = [1, 2]
    return lib


@pytest.fixture()
def st(tmp_path: Path) -> Iterator[Stage]:
    with stage(library=_library(), work_dir=tmp_path,
               on_result=lambda r: AUDIT.record("settings bind", r.stdout + r.stderr)) as s:
        AUDIT.add_secret(s.plex.token)
        yield s


def sync_all(st: Stage) -> Any:
    result = st.task("all")
    assert result.returncode == 0, result.stderr
    return result


def plex_state(item: Any) -> dict[str, Any]:
    return {
        "title": item.fields.get("title"),
        "studio": item.fields.get("studio"),
        "summary": item.fields.get("summary"),
        "tagline": item.fields.get("tagline"),
        "date": item.fields.get("originallyAvailableAt"),
        "genres": [t for t, _ in item.tags.get("Genre", [])],
        "actors": [t for t, _ in item.tags.get("Role", [])],
        "collections": [t for t, _ in item.tags.get("Collection", [])],
        "poster": item.poster.provider if item.poster else None,
    }


TOGGLES = {
    "sync_title": "title",
    "sync_studio": "studio",
    "sync_summary": "summary",
    "sync_tagline": "tagline",
    "sync_date": "date",
    "sync_performers": "actors",
    "sync_tags": "genres",
    "sync_collection": "collections",
    "sync_poster": "poster",
}


def test_with_every_toggle_on_each_governed_field_changes(st: Stage) -> None:
    sid = _rich(st)
    before = plex_state(st.plex_item(sid))
    assert sync_all(st).error is None
    after = plex_state(st.plex_item(sid))
    for field in TOGGLES.values():
        assert after[field] != before[field], field


@pytest.mark.parametrize("toggle", sorted(TOGGLES))
def test_a_field_toggle_switched_off_leaves_that_field_alone(st: Stage, toggle: str) -> None:
    sid = _rich(st)
    before = plex_state(st.plex_item(sid))
    st.configure(**{toggle: False})
    assert sync_all(st).error is None
    after = plex_state(st.plex_item(sid))
    field = TOGGLES[toggle]
    assert after[field] == before[field], (toggle, before[field], after[field])
    others = [f for f in TOGGLES.values() if f != field]
    assert all(after[f] != before[f] for f in others), (toggle, before, after)


def test_sync_background_switched_off_uploads_no_art(st: Stage) -> None:
    sid = _rich(st)
    st.configure(sync_background=False)
    assert sync_all(st).error is None
    item = st.plex_item(sid)
    assert item.art is None and item.poster.provider != "agent"
    st.configure(sync_background=True)
    st.library.update_scene(sid, title="Touched so the scene syncs again")
    assert sync_all(st).error is None
    assert st.plex_item(sid).art is not None


def test_sync_master_off_writes_nothing(st: Stage) -> None:
    st.configure(sync_master=False)
    st.plex.reset_log()
    assert sync_all(st).error is None
    assert st.plex.count("PUT") == 0 and st.plex.count("POST") == 0


def test_max_tags_caps_genres(st: Stage) -> None:
    sid = _rich(st)
    st.configure(max_tags=2)
    assert sync_all(st).error is None
    assert len(plex_state(st.plex_item(sid))["genres"]) == 2


@pytest.mark.parametrize("locking", [True, False])
def test_lock_synced_fields(st: Stage, locking: bool) -> None:
    sid = _rich(st)
    st.configure(lock_synced_fields=locking)
    assert sync_all(st).error is None
    locks = st.plex_item(sid).locks
    assert ({"title", "summary", "studio"} <= locks) if locking else not (locks & {"title", "summary", "studio"})


def test_enabled_off_keeps_events_and_sends_nothing(st: Stage) -> None:
    sid = _rich(st)
    st.configure(enabled=False)
    st.plex.reset_log()
    hooked = st.hook(sid)
    assert hooked.error is None
    result = st.task("process_queue")
    assert result.error and "enabled" in result.error.lower(), result.error
    assert st.plex.count() == 0
    st.stop_workers()
    st.configure(enabled=True)
    assert st.task("process_queue").error is None
    assert st.plex_item(sid).title == st.library.scenes[sid].title


def test_plex_library_names_the_section_used(st: Stage) -> None:
    sid = _rich(st)
    st.configure(plex_library="No Such Library")
    result = sync_all(st)
    assert result.error and "No Such Library" in result.error, result.error
    assert st.plex_item(sid).title != st.library.scenes[sid].title
    st.configure(plex_library="Stash")
    assert sync_all(st).error is None
    assert st.plex_item(sid).title == st.library.scenes[sid].title


def _twins() -> Any:
    """Two scenes whose files share a name in different folders: only the path tells them apart."""
    from emulators.stash_library import StashLibrary

    lib = StashLibrary()
    lib.add_scene(files=["/data/stash/a/clip.mp4"], title="Twin A")
    lib.add_scene(files=["/data/stash/b/clip.mp4"], title="Twin B")
    # The same file copied into two folders: neither name nor size nor duration tells them apart.
    lib.scenes[2].files[0].size = lib.scenes[1].files[0].size
    lib.scenes[2].files[0].duration = lib.scenes[1].files[0].duration
    return lib


@pytest.mark.parametrize(("path_map", "strict"), [("/data/stash=>/media/stash", True), ("", True), ("", False)])
def test_path_map_and_strict_matching(tmp_path: Path, path_map: str, strict: bool) -> None:
    with stage(library=_twins(), work_dir=tmp_path, settings={"strict_matching": strict},
               on_result=lambda r: AUDIT.record("settings bind", r.stdout + r.stderr)) as st:
        st.configure(path_map=path_map)
        result = st.task("all")
        summary = result.output["summary"]
        titles = sorted(st.plex_item(sid).title for sid in (1, 2))
        if path_map:
            assert titles == ["Twin A", "Twin B"] and summary["synced"] == 2, summary
            return
        # Without the map the file name is all there is, and it is ambiguous: never a guess.
        assert titles == ["clip", "clip"], titles
        if strict:
            assert sum(map(len, summary["dead_lettered"].values())) == 2, summary
            status = st.task("queue_status").output
            assert all("/media/stash/a/clip.mp4" in str(d) for d in status["dead_letters"]), status
        else:
            assert not summary["dead_lettered"] and len(summary["deferred"]) == 2, summary


@pytest.mark.parametrize("debug", [True, False])
def test_debug_logging(st: Stage, debug: bool) -> None:
    st.configure(debug_logging=debug)
    result = sync_all(st)
    assert bool(result.lines("debug")) is debug, result.logs


def _unscanned(tmp_path: Path, **settings: Any) -> Iterator[Stage]:
    return stage(library=_library(), work_dir=tmp_path, scanned=False, settings=settings,
                 on_result=lambda r: AUDIT.record("settings bind", r.stdout + r.stderr))


@pytest.mark.parametrize("trigger", [True, False])
def test_trigger_plex_scan(tmp_path: Path, trigger: bool) -> None:
    with _unscanned(tmp_path, trigger_plex_scan=trigger) as st:
        sid = _rich(st)
        st.pend_in_plex([sid])
        st.hook(sid, trigger="Scene.Create.Post")
        queue = JobQueue(st.data_dir)
        try:  # the worker has looked once and found nothing: the job waits out its backoff
            st.wait_until(lambda: queue.report.counts(time.time()).deferred == 1)
        finally:
            queue.close(compact=False)
        scans = [r for r in st.plex.requests if r.path == "/library/sections/1/refresh"]
        if trigger:
            assert len(scans) == 1 and scans[0].query.get("path") == "/media/stash/" + \
                st.library.scenes[sid].files[0].path.split("/data/stash/", 1)[1].rsplit("/", 1)[0], scans
            assert st.plex_item(sid) is not None  # the scan found it; the retry will sync it
        else:
            assert scans == [] and st.plex_item(sid) is None


@pytest.mark.parametrize(("settings", "where"), [
    ({"max_retries": 1}, "dlq"),
    ({"max_retries": 1, "skip_not_found": True}, "skipped"),
    ({}, "deferred"),
])
def test_max_retries_and_skip_not_found(tmp_path: Path, settings: dict[str, Any], where: str) -> None:
    with _unscanned(tmp_path, trigger_plex_scan=False, **settings) as st:
        result = st.task("all")
        summary = result.output["summary"]
        n = len(st.library.scenes)
        if where == "dlq":
            assert sum(map(len, summary["dead_lettered"].values())) == n, summary
        elif where == "skipped":
            assert sum(summary["skipped"].values()) == n and not summary["dead_lettered"], summary
        else:
            assert len(summary["deferred"]) == n and not summary["dead_lettered"], summary


@pytest.mark.parametrize("preserve", [True, False])
def test_preserve_plex_edits(st: Stage, preserve: bool) -> None:
    sid = _rich(st)
    st.configure(preserve_plex_edits=preserve)
    assert sync_all(st).error is None
    item = st.plex_item(sid)
    item.fields["title"] = "Renamed by hand in Plex"
    item.locks.discard("title")
    st.library.update_scene(sid, details="New details from Stash")
    assert sync_all(st).error is None
    item = st.plex_item(sid)
    assert item.fields["summary"] == "New details from Stash"
    expected = "Renamed by hand in Plex" if preserve else st.library.scenes[sid].title
    assert item.title == expected


def test_missing_plex_token_is_one_error_line_naming_it(st: Stage) -> None:
    st.configure(plex_token="")
    result = st.task("process_queue")
    assert result.error and "plex_token" in result.error, result.error
    assert len(result.lines("error")) == 1, result.logs
    assert "Traceback" not in result.stderr


def test_bad_optional_value_falls_back_with_one_warning(st: Stage) -> None:
    sid = _rich(st)
    st.configure(max_tags=-7)
    result = sync_all(st)
    assert result.error is None
    warnings = [w for w in result.lines("warning") if "max_tags" in w]
    assert len(warnings) == 1, result.logs
    assert len(plex_state(st.plex_item(sid))["genres"]) == 5
