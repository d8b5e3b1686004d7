"""Issue 7 end to end: performer/studio/tag hooks fan out, Scene.Destroy.Post forgets, the
quality gate holds, all run as Stash runs the plugin (the host) against both emulators.

Entity edits are made on the emulated library the way Stash's own mutations leave it
(a rename changes the name only; a delete or merge also drops or rewrites the scene
relations), then the hook Stash would fire is run. Plex writes are counted per item, so
"no other scene touched" is a count of zero, not an absence of errors.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from emulators.stage import Stage, stage
from sync_queue.jobs import JobQueue
from tests.secret_audit import AUDIT

#: No artwork and no scan requests: the only PUTs left are the one edit per synced scene.
SETTINGS = {"sync_poster": False, "sync_background": False, "trigger_plex_scan": False, "max_tags": 0}


def audited(what: str):
    return lambda result: AUDIT.record(what, result.stdout + result.stderr)


def open_queue(st: Stage) -> JobQueue:
    return JobQueue(st.data_dir)


def queue_counts(st: Stage):
    queue = open_queue(st)
    try:
        return queue.report.counts(time.time())
    finally:
        queue.close(compact=False)


def ledger_row(st: Stage, scene_id: int) -> Any:
    queue = open_queue(st)
    try:
        return queue.ledger.get(scene_id)
    finally:
        queue.close(compact=False)


@contextmanager
def synced_stage(tmp_path: Path, n: int, seed: int) -> Iterator[Stage]:
    """A stage whose every scene went through Sync All (so the ledger knows each one)."""
    with stage(n, seed=seed, work_dir=tmp_path, settings=SETTINGS, on_result=audited("fanout e2e")) as st:
        AUDIT.add_secret(st.plex.token)
        result = st.task("all")
        assert result.error is None, result.stderr
        assert queue_counts(st).ledger == n
        yield st


def puts(st: Stage, scene_id: int) -> int:
    return st.plex.count("PUT", rating_key=st.plex_item(scene_id).rating_key)


def assert_only_written(st: Stage, affected: set[int]) -> None:
    """Exactly one edit per affected scene and none for any other scene."""
    wrong = {sid: puts(st, sid) for sid in st.library.sorted_ids() if puts(st, sid) != (sid in affected)}
    assert wrong == {}, f"PUTs per scene (affected: {sorted(affected)}): {wrong}"


def busiest(counts: dict[int, int], at_least: int = 2) -> int:
    entity, scenes = max(counts.items(), key=lambda kv: (kv[1], -kv[0]))
    assert scenes >= at_least, counts
    return entity


def fire(st: Stage, trigger: str, entity_id: int, hook_input: Any = None) -> None:
    results = st.host.run_hook(trigger, entity_id, hook_input)
    assert len(results) == 1, f"{trigger} ran {len(results)} hooks"
    assert results[0].error is None and results[0].returncode == 0, results[0].stderr
    assert results[0].output["recorded"] == {"trigger": trigger, "id": entity_id}


def process(st: Stage) -> None:
    """Let the hook's worker finish, then drain in the foreground for anything it left.

    A second hook within the spawn grace starts no new worker, so tests that fire several
    hooks in a row use Process Queue (the same core) rather than wait for one.
    """
    st.wait_for_worker()
    result = st.task("process_queue")
    assert result.error is None, result.stderr
    c = queue_counts(st)
    assert (c.inbox, c.fanout, c.due, c.in_flight) == (0, 0, 0, 0), c


def genres(st: Stage, scene_id: int) -> list[str]:
    return st.plex_item(scene_id).tag_names("genre")


def actors(st: Stage, scene_id: int) -> list[str]:
    return st.plex_item(scene_id).tag_names("actor")


# --- renames ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["performer", "studio", "tag"])
def test_a_rename_resyncs_every_scene_that_shows_it_and_no_other(tmp_path: Path, kind: str) -> None:
    with synced_stage(tmp_path, 40, seed=71) as st:
        lib = st.library
        entity = busiest(lib.scene_counts(kind))
        affected = {sid for sid, s in lib.scenes.items()
                    if entity in (s.performer_ids if kind == "performer" else
                                  [s.studio_id] if kind == "studio" else s.tag_ids)}
        table = {"performer": lib.performers, "studio": lib.studios, "tag": lib.tags}[kind]
        new_name = f"Renamed {kind} {entity}"
        table[entity].name = new_name
        lib.revision += 1
        st.plex.reset_log()

        fire(st, f"{kind.capitalize()}.Update.Post", entity)
        process(st)

        for sid in sorted(affected):
            item = st.plex_item(sid)
            shown = {"performer": actors(st, sid), "tag": genres(st, sid),
                     "studio": [item.fields.get("studio")] + item.tag_names("collection")}[kind]
            assert new_name in shown, (sid, shown)
        assert_only_written(st, affected)


def test_the_drain_after_a_rename_reads_none_of_the_scenes_its_listing_read(tmp_path: Path) -> None:
    """The fan-out lists the renamed performer's scenes from Stash; their jobs carry them as
    listed, so the drain checks they are current (one small request per batch) and reads none
    of them again."""
    with synced_stage(tmp_path, 40, seed=71) as st:
        lib = st.library
        entity = busiest(lib.scene_counts("performer"))
        affected = {sid for sid, s in lib.scenes.items() if entity in s.performer_ids}
        lib.performers[entity].name = "Renamed performer"
        lib.revision += 1
        st.stash.reset_log()

        fire(st, "Performer.Update.Post", entity)
        process(st)

        assert all("Renamed performer" in actors(st, sid) for sid in affected)
        full_reads = [r.variables for r in list(st.stash.requests)
                      if r.operation_name in ("S2PScenesById", "S2PFindScene")]
        assert full_reads == [] and st.stash.count("S2PSceneStamps") >= 1


# --- deletes and merges ----------------------------------------------------------------------


def test_destroying_a_tag_removes_it_from_exactly_the_scenes_that_showed_it(tmp_path: Path) -> None:
    with synced_stage(tmp_path, 40, seed=72) as st:
        lib = st.library
        tag = busiest(lib.scene_counts("tag"))
        name = lib.tags[tag].name
        affected = {sid for sid, s in lib.scenes.items() if tag in s.tag_ids}
        assert all(name in genres(st, sid) for sid in affected)
        # What tagDestroy leaves behind: the tag and its scene relations are gone.
        del lib.tags[tag]
        for sid in affected:
            lib.scenes[sid].tag_ids.remove(tag)
        lib.revision += 1
        st.plex.reset_log()

        fire(st, "Tag.Destroy.Post", tag)
        process(st)

        assert [sid for sid in affected if name in genres(st, sid)] == []
        assert_only_written(st, affected)
        assert all(name not in (ledger_row(st, sid).written.get("written", {}).get("genre") or [])
                   for sid in affected)


def test_destroying_a_performer_removes_it_from_its_scenes(tmp_path: Path) -> None:
    with synced_stage(tmp_path, 30, seed=73) as st:
        lib = st.library
        performer = busiest(lib.scene_counts("performer"))
        name = lib.performers[performer].name
        affected = {sid for sid, s in lib.scenes.items() if performer in s.performer_ids}
        # Two performers may share a name: only scenes where no one else carries it can lose it.
        namesakes = {pid for pid, p in lib.performers.items() if p.name == name and pid != performer}
        del lib.performers[performer]
        for sid in affected:
            lib.scenes[sid].performer_ids.remove(performer)
        lib.revision += 1
        st.plex.reset_log()

        fire(st, "Performer.Destroy.Post", performer)
        process(st)

        for sid in affected:
            still = not namesakes.isdisjoint(lib.scenes[sid].performer_ids)
            assert (name in actors(st, sid)) == still, sid
        assert_only_written(st, affected)


def test_destroying_a_studio_clears_it_and_its_collection_from_its_scenes(tmp_path: Path) -> None:
    with synced_stage(tmp_path, 40, seed=77) as st:
        lib = st.library
        studio = busiest(lib.scene_counts("studio"))
        name = lib.studios[studio].name
        affected = {sid for sid, s in lib.scenes.items() if s.studio_id == studio}
        assert all(st.plex_item(sid).fields.get("studio") == name for sid in affected)
        del lib.studios[studio]
        for sid in affected:
            lib.scenes[sid].studio_id = None
        for child in lib.studios.values():
            if child.parent_id == studio:
                child.parent_id = None
        lib.revision += 1
        st.plex.reset_log()

        fire(st, "Studio.Destroy.Post", studio)
        process(st)

        for sid in affected:
            item = st.plex_item(sid)
            assert not item.fields.get("studio") and name not in item.tag_names("collection"), sid
        assert_only_written(st, affected)


def test_merging_tags_resyncs_the_scenes_of_the_merged_tags_only(tmp_path: Path) -> None:
    with synced_stage(tmp_path, 40, seed=74) as st:
        lib = st.library
        counts = lib.scene_counts("tag")
        dest, *sources = sorted(counts, key=lambda t: (-counts[t], t))[:3]
        source_names = {lib.tags[s].name for s in sources}
        had_source = {sid for sid, s in lib.scenes.items() if not set(sources).isdisjoint(s.tag_ids)}
        only_dest = {sid for sid, s in lib.scenes.items() if dest in s.tag_ids} - had_source
        assert had_source and only_dest
        # What tagsMerge leaves behind: the sources are gone, their scenes carry the destination.
        for sid in had_source:
            scene = lib.scenes[sid]
            scene.tag_ids = list(dict.fromkeys(dest if t in sources else t for t in scene.tag_ids))
        for source in sources:
            del lib.tags[source]
        lib.revision += 1
        st.plex.reset_log()

        fire(st, "Tag.Merge.Post", dest, {"source": [str(s) for s in sources], "destination": str(dest)})
        process(st)

        for sid in had_source:
            shown = genres(st, sid)
            assert lib.tags[dest].name in shown and source_names.isdisjoint(shown), (sid, shown)
        assert_only_written(st, had_source)  # the destination's own scenes did not change


# --- Scene.Destroy.Post ------------------------------------------------------------------------


def test_scene_destroy_drops_its_pending_job_and_ledger_row_without_writing(tmp_path: Path) -> None:
    with synced_stage(tmp_path, 6, seed=75) as st:
        lib = st.library
        sid, other = lib.sorted_ids()[2], lib.sorted_ids()[3]
        doomed = st.plex_item(sid)
        old_title = doomed.title
        assert ledger_row(st, sid) is not None
        # Pending jobs that cannot run yet: Plex is down when the edits' hooks fire.
        st.plex.faults.down = True
        lib.update_scene(sid, title="Edited just before the delete")
        lib.update_scene(other, title="Edited too")
        fire(st, "Scene.Update.Post", sid)
        fire(st, "Scene.Update.Post", other)
        st.wait_until(lambda: queue_counts(st).inbox == 0 and queue_counts(st).in_flight == 0)
        queue = open_queue(st)
        try:
            assert queue.report.job_for_scene(sid) is not None and queue.report.job_for_scene(other) is not None
        finally:
            queue.close(compact=False)

        lib.remove_scene(sid)
        fire(st, "Scene.Destroy.Post", sid)
        st.stop_workers()  # a sleeping worker hands over; Process Queue then takes the event in
        st.plex.faults.down = False
        st.plex.reset_log()
        result = st.task("process_queue")
        assert result.error is None, result.stderr

        queue = open_queue(st)
        try:
            assert queue.report.job_for_scene(sid) is None and queue.ledger.get(sid) is None
            # Only that scene is forgotten: the other one's row stays, and its job, held for the
            # outage, went as soon as Process Queue found Plex answering again.
            assert queue.ledger.get(other) is not None and queue.report.job_for_scene(other) is None
            assert st.plex_item(other).title == "Edited too"
            assert queue.dlq.list_all() == []
        finally:
            queue.close(compact=False)
        assert st.plex.count("PUT", rating_key=doomed.rating_key) == 0
        assert st.plex.item(doomed.rating_key).title == old_title


# --- the quality gate --------------------------------------------------------------------------


def test_a_scene_without_metadata_yet_clears_nothing_in_plex_then_syncs_once_identified(tmp_path: Path) -> None:
    with stage(3, seed=76, work_dir=tmp_path, settings=SETTINGS, on_result=audited("gate e2e")) as st:
        AUDIT.add_secret(st.plex.token)
        lib = st.library
        # Right after a scan: a new scene with a file and nothing else, while Plex's own agent
        # already gave the item a title, summary, studio, genres and a cast.
        path = "/data/stash/new/Fresh Scan.mp4"
        sid = lib.add_scene(files=[path])
        plex_values = dict(summary="Plex's summary", studio="Plex Studio", tagline="Plex tagline",
                           originallyAvailableAt="2001-02-03", genres=["Plex Genre"], actors=["Plex Actor"],
                           collections=["Plex Collection"])
        key = st.plex.add_item("/media/stash/new/Fresh Scan.mp4", title="Plex Title", **plex_values)

        fire(st, "Scene.Create.Post", sid)
        st.wait_for_worker()
        result = st.task("all")  # the bulk path goes through the same gate
        assert result.error is None, result.stderr

        item = st.plex.item(key)
        assert item.title == "Plex Title"
        for name in ("summary", "studio", "tagline", "originallyAvailableAt"):
            assert item.fields.get(name) == plex_values[name], name
        assert item.tag_names("genre") == ["Plex Genre"]
        assert item.tag_names("actor") == ["Plex Actor"]
        assert item.tag_names("collection") == ["Plex Collection"]
        assert ledger_row(st, sid) is not None  # it was synced (and the ledger knows), not skipped

        # Identified: now Stash has metadata, and Stash wins, clearing what it does not have.
        studio = next(iter(lib.studios))
        lib.update_scene(sid, title="Identified", studio_id=studio, tag_ids=[next(iter(lib.tags))])
        fire(st, "Scene.Update.Post", sid)
        result = st.task("process_queue")  # takes over from the hook's worker if it still runs
        assert result.error is None, result.stderr
        item = st.plex.item(key)
        assert item.title == "Identified"
        assert item.fields.get("studio") == lib.studios[studio].name
        assert item.tag_names("genre") == [lib.tags[next(iter(lib.tags))].name]
        assert item.tag_names("actor") == [] and not item.fields.get("summary")
