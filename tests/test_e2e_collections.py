"""Issue 20 end to end: Stash groups (and studios) as Plex collections, run as Stash runs the
plugin (the host) against both emulators: plexapi's requests on the Plex side, stashapi's on
the Stash side.

The library is generated, then given groups whose scene numbers run against the scene ids,
so a collection in id order is visibly out of order. Plex requests are counted per kind from
the emulator's log, so "writes nothing" is a count of zero.
"""

from __future__ import annotations

import os
import re
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.bench_collections import DATES_AGAINST, DATES_FOLLOW, SETTINGS, group_library, kind_of
from emulators.stage import Stage, stage
from emulators.stash_library import png_bytes
from sync_queue.jobs import JobQueue
from tests.secret_audit import AUDIT
from worker.core import BATCH_SIZE

COLLECTION_PATHS = re.compile(r"/library/(collections|metadata/\d+/(posters|prefs)).*")


@contextmanager
def group_stage(tmp_path: Path, n: int = 24, groups: int = 3, **settings: Any) -> Iterator[Stage]:
    with stage(library=group_library(n, groups), work_dir=tmp_path, settings={**SETTINGS, **settings},
               on_result=lambda r: AUDIT.record("collections e2e", r.stdout + r.stderr)) as st:
        AUDIT.add_secret(st.plex.token)
        yield st


def run(st: Stage, mode: str) -> dict[str, Any]:
    result = st.task(mode)
    assert result.error is None, result.stderr
    return result.output or {}


def fire(st: Stage, trigger: str, entity_id: int) -> None:
    results = st.host.run_hook(trigger, entity_id)
    assert len(results) == 1 and results[0].error is None, results[0].stderr
    st.wait_for_worker()
    run(st, "process_queue")


def members_in_order(st: Stage, gid: int) -> list[int]:
    """The group's scenes by scene_index, as the user expects to see them in Plex."""
    lib = st.library
    placed = [(index, sid) for sid, s in lib.scenes.items() for g, index in s.groups if g == gid]
    return [sid for _index, sid in sorted(placed)]


def shown(st: Stage, title: str) -> list[int]:
    """The collection's items in Plex's order, as scene ids."""
    collection = st.plex.collection_by_title(title)
    assert collection is not None, f"no collection {title!r}"
    by_key = {st.plex_item(sid).rating_key: sid for sid in st.library.sorted_ids()}
    return [by_key[k] for k in st.plex.collection_children(collection.rating_key)]


def owned(st: Stage) -> list[Any]:
    queue = JobQueue(st.data_dir)
    try:
        return queue.collections.all()
    finally:
        queue.close(compact=False)


def writes(st: Stage) -> int:
    return st.plex.count("PUT") + st.plex.count("POST") + st.plex.count("DELETE")


def assert_group_collection(st: Stage, gid: int) -> None:
    group = st.library.groups[gid]
    collection = st.plex.collection_by_title(group.name)
    assert collection is not None, group.name
    assert collection.fields.get("summary") == group.synopsis
    assert collection.poster is not None and collection.poster.data == group.front_image
    assert shown(st, group.name) == members_in_order(st, gid)


# --- first sync ----------------------------------------------------------------------------------


def test_sync_all_makes_each_group_a_collection_with_poster_summary_and_order(tmp_path: Path) -> None:
    with group_stage(tmp_path) as st:
        run(st, "all")
        for gid in st.library.groups:
            assert_group_collection(st, gid)
        kinds = sorted({(r.kind, r.title) for r in owned(st)})
        assert [k for k in kinds if k[0] == "group"] == [("group", g.name) for g in st.library.groups.values()]
        assert all(not r.dirty for r in owned(st))
        status = run(st, "queue_status")["collections"]
        assert status["group"] == 3 and status["due"] == 0 and status["failing"] == []
        check = next(c for c in run(st, "health_check")["checks"] if c["check"] == "Collections")
        assert check["level"] == "OK" and "3 group" in check["text"] and "0 due" in check["text"], check

        st.plex.reset_log()
        run(st, "all")  # unchanged: no collection is even read
        assert writes(st) == 0, [r for r in st.plex.requests if r.method != "GET"]
        assert st.plex.count(path=COLLECTION_PATHS) == 0
        run(st, "reconcile_all")  # reads each group collection's order, writes nothing
        assert writes(st) == 0, [r for r in st.plex.requests if r.method != "GET"]
        assert st.plex.count("GET", path=re.compile(r"/library/collections/\d+/children.*")) == 3


def test_a_collection_made_in_plex_gets_our_items_and_nothing_else(tmp_path: Path) -> None:
    with group_stage(tmp_path) as st:
        group = st.library.groups[1]
        mine = st.plex.add_collection(group.name, summary="My own words")
        run(st, "all")
        collection = st.plex.collection(mine)
        assert collection.fields.get("summary") == "My own words" and collection.poster is None
        assert sorted(shown(st, group.name)) == sorted(members_in_order(st, 1))
        assert ("group", "1") not in {(r.kind, r.source_id) for r in owned(st)}

        # Every scene leaves the group: the person's collection stays, emptied.
        for sid in members_in_order(st, 1):
            st.library.update_scene(sid, groups=[])
            st.hook(sid)
        st.wait_for_worker()
        run(st, "process_queue")
        assert st.plex.collection_by_title(group.name) is not None
        assert shown(st, group.name) == []


# --- leaving, deleting --------------------------------------------------------------------------


def test_a_scene_leaving_its_group_leaves_the_collection_and_our_empty_collection_goes(tmp_path: Path) -> None:
    with group_stage(tmp_path) as st:
        run(st, "all")
        order = members_in_order(st, 2)
        leaver = order[1]
        st.library.update_scene(leaver, groups=[])
        st.hook(leaver)
        st.wait_for_worker()
        run(st, "process_queue")
        assert st.library.groups[2].name not in st.plex_item(leaver).tag_names("collection")
        assert shown(st, "Series 2") == [s for s in order if s != leaver]

        for sid in order:
            if sid != leaver:
                st.library.update_scene(sid, groups=[])
                st.hook(sid)
        st.wait_for_worker()
        run(st, "process_queue")
        assert st.plex.collection_by_title("Series 2") is None
        assert ("group", "2") not in {(r.kind, r.source_id) for r in owned(st)}
        assert st.plex.collection_by_title("Series 1") is not None


def test_a_rename_in_the_next_batch_waits_for_the_edits_still_in_flight_under_the_old_name(
        tmp_path: Path) -> None:
    """The drain reads a batch while the last one's writes are in flight. A group renamed in
    Stash between the two reads: the second batch's first sync renames the collection, and
    must not do so before the first batch's last edit, held in flight here and still naming
    the old title, has landed (it would make a second "Series 1" for its item)."""
    with group_stage(tmp_path, n=2 * (BATCH_SIZE + 1), groups=1) as st:
        lib = st.library
        first, *joiners = members_in_order(st, 1)  # BATCH_SIZE scenes join after the first sync
        places = {sid: lib.scenes[sid].groups for sid in joiners}
        for sid in joiners:
            lib.scenes[sid].groups = []
        lib.revision += 1
        run(st, "all")
        for sid in joiners:
            lib.update_scene(sid, groups=places[sid], now=time.time() + 5)
        queue = JobQueue(st.data_dir)
        try:
            for sid in [*joiners, first]:  # one batch of joiners, then the first member alone
                queue.enqueue(sid, "test", time.time())
        finally:
            queue.close(compact=False)
        held = str(st.plex_item(joiners[-1]).rating_key)  # the first batch's last edit
        reads: list[str] = []

        def rename_before_the_second_batch_read(record: Any, phase: str) -> bool:
            if phase == "before" and record.operation_name == "S2PScenesById":
                reads.append(record.operation_name)
                if len(reads) == 2:
                    lib.update_group(1, name="Series One", now=time.time() + 10)
            return False

        def renamed_in_plex() -> bool:
            with st.plex.lock:
                return any(r.method == "PUT" and r.query.get("type") == "18" and "title.value" in r.query
                           for r in st.plex.requests)

        st.stash.faults.intercept = rename_before_the_second_batch_read
        with st.plex.faults.holding(when=lambda: not renamed_in_plex(), ceiling=5.0,
                                    which=lambda method, _path, query: method == "PUT" and query.get("id") == held
                                    and query.get("type") == "1"):
            run(st, "process_queue")
        st.stash.faults.intercept = None
        assert len(reads) == 2 and renamed_in_plex()
        assert st.plex.collection_by_title("Series 1") is None
        groups = {sid: [t for t in st.plex_item(sid).tag_names("collection") if t.startswith("Series")]
                  for sid in [first, *joiners]}
        assert groups == {sid: ["Series One"] for sid in [first, *joiners]}


# --- group hooks ------------------------------------------------------------------------------------


def test_group_renamed_reimaged_reordered_and_deleted_through_its_hooks(tmp_path: Path) -> None:
    with group_stage(tmp_path) as st:
        run(st, "all")
        lib = st.library
        rating_key = st.plex.collection_by_title("Series 1").rating_key

        lib.update_group(1, name="Series One", front_image=png_bytes(4242), now=time.time() + 5)
        fire(st, "Group.Update.Post", 1)
        collection = st.plex.collection_by_title("Series One")
        assert collection is not None and collection.rating_key == rating_key  # renamed, not remade
        assert st.plex.collection_by_title("Series 1") is None
        assert_group_collection(st, 1)

        order = members_in_order(st, 1)
        first, last = order[0], order[-1]
        scene_groups = {first: len(order) + 1, last: 0}
        for sid, index in scene_groups.items():
            lib.update_scene(sid, groups=[(1, index)], now=time.time() + 10)
        st.plex.reset_log()
        fire(st, "Movie.Update.Post", 1)  # an older Stash names the same group a movie
        assert shown(st, "Series One") == members_in_order(st, 1) == [last] + order[1:-1] + [first]
        assert st.plex.count("PUT", path=re.compile(r"/library/collections/\d+/items/\d+/move.*")) <= 2

        lib.remove_group(1)
        fire(st, "Group.Destroy.Post", 1)
        assert st.plex.collection_by_title("Series One") is None
        assert all("Series One" not in st.plex_item(sid).tag_names("collection") for sid in order)
        assert_group_collection(st, 2)


# --- studios and networks ---------------------------------------------------------------------------


def test_studio_and_network_collections_with_prefix_and_studio_poster(tmp_path: Path) -> None:
    with group_stage(tmp_path, sync_network_collections=True, collection_prefix="Stash: ") as st:
        lib = st.library
        scene = next(sid for sid, sc in lib.scenes.items() if sc.studio_id)
        child = lib.studios[lib.scenes[scene].studio_id]
        parent = next(s for s in lib.studios.values() if s.id != child.id and s.parent_id is None)
        child.parent_id, child.image, parent.image = parent.id, png_bytes(77), png_bytes(78)
        lib.revision += 1
        run(st, "all")
        studio_collection = st.plex.collection_by_title("Stash: " + child.name)
        assert studio_collection is not None and studio_collection.poster.data == child.image
        network = st.plex.collection_by_title("Stash: " + parent.name)
        assert network is not None and network.poster.data == parent.image
        assert {"Stash: " + child.name, "Stash: " + parent.name} <= set(st.plex_item(scene).tag_names("collection"))
        assert st.plex.collection_by_title("Stash: Series 1") is not None


# --- the request budget -------------------------------------------------------------------------------


def fewest_moves(st: Stage, gid: int) -> int:
    """Items out of place when the collection lists them by Plex item key (its order once the
    sort is custom): the members minus the longest run already in scene order."""
    keys = [st.plex_item(sid).rating_key for sid in members_in_order(st, gid)]
    best = [1] * len(keys)
    for i in range(len(keys)):
        for j in range(i):
            if keys[j] < keys[i]:
                best[i] = max(best[i], best[j] + 1)
    return len(keys) - max(best, default=0)


def test_first_sync_request_budget_per_group(tmp_path: Path) -> None:
    """200 scenes, 20 groups: one listing per drain before the first edit and one for the
    flush; per group at most one edit (summary and poster lock), one switch to the custom
    sort, one read of its order, the fewest moves, and one upload of its front image."""
    with group_stage(tmp_path, n=200, groups=20) as st:
        st.plex.reset_log()
        run(st, "all")
        with st.plex.lock:
            records = list(st.plex.requests)
        by_kind: dict[str, int] = {}
        for record in records:
            by_kind[kind_of(record)] = by_kind.get(kind_of(record), 0) + 1
        groups = len(st.library.groups)
        studios = sum(1 for r in owned(st) if r.kind == "studio" and r.wanted.get("image_url"))
        assert by_kind["collections listing"] <= 2
        assert by_kind["collection edit"] <= groups + studios
        assert by_kind["poster upload"] == groups + studios
        assert by_kind["sort"] <= groups and by_kind["order read"] <= groups
        assert by_kind.get("move", 0) == sum(fewest_moves(st, gid) for gid in st.library.groups)
        assert "delete" not in by_kind
        for gid in st.library.groups:
            assert_group_collection(st, gid)


# --- dry run and reconcile ------------------------------------------------------------------------------


def collection_previews(output: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["title"]: c for c in output["collections"]}


def test_dry_run_shows_collection_creation_artwork_and_order_and_writes_nothing(tmp_path: Path) -> None:
    with group_stage(tmp_path) as st:
        st.plex.reset_log()
        out = run(st, "dry_run")
        assert writes(st) == 0
        shown_before = collection_previews(out)
        for gid, group in st.library.groups.items():
            preview = shown_before[group.name]
            assert preview["status"] == "create" and preview["items"] == len(members_in_order(st, gid))
            text = " ".join(preview["changes"])
            assert "summary" in text and "poster" in text and "order" in text, preview

        run(st, "all")
        lib = st.library
        order = members_in_order(st, 1)
        lib.update_group(1, front_image=png_bytes(999), now=time.time() + 5)
        lib.update_scene(order[0], groups=[(1, 100)], now=time.time() + 5)
        st.plex.reset_log()
        out = run(st, "dry_run")
        assert writes(st) == 0
        previews = collection_previews(out)
        changes = " ".join(previews["Series 1"]["changes"])
        assert previews["Series 1"]["status"] == "changes"
        assert "poster: new image" in changes and "1 item(s) moved" in changes, changes
        assert "Series 2" not in previews  # unchanged ones are counted, not listed
        assert out["collection_counts"]["unchanged"] >= 2


def test_reconcile_finds_drifted_and_missing_collections_and_the_drain_repairs_them(tmp_path: Path) -> None:
    with group_stage(tmp_path) as st:
        run(st, "all")
        plex = st.plex
        one, two = plex.collection_by_title("Series 1"), plex.collection_by_title("Series 2")
        now = int(time.time())
        with plex.lock:
            plex.collections.edit(one.section, [one.rating_key], {"summary.value": "Edited in Plex"}, now,
                                  lock_edits=False)
            children = plex.collections.children(one)
            plex.collections.move(one.rating_key, children[-1], None, now)
            plex.collections.delete(two.rating_key)
        assert shown(st, "Series 1") != members_in_order(st, 1)

        out = run(st, "reconcile_all")
        check = out["collections"]
        assert check["drifted"] == {"Series 1": ["summary", "order"]} and check["missing"] == ["Series 2"]
        assert check["queued"] == len(members_in_order(st, 2))
        assert_group_collection(st, 1)
        assert_group_collection(st, 2)
        assert ("group", "2") in {(r.kind, r.source_id) for r in owned(st)}

        st.plex.reset_log()
        out = run(st, "reconcile_all")
        assert out["collections"]["drifted"] == {} and out["collections"]["missing"] == []
        assert writes(st) == 0


def test_a_network_renamed_in_stash_renames_its_collection_in_place(tmp_path: Path) -> None:
    with group_stage(tmp_path, sync_network_collections=True) as st:
        lib = st.library
        scene = next(sid for sid, sc in lib.scenes.items() if sc.studio_id)
        child = lib.studios[lib.scenes[scene].studio_id]
        parent = next(s for s in lib.studios.values() if s.id != child.id and s.parent_id is None)
        child.parent_id = parent.id
        lib.revision += 1
        run(st, "all")
        network = st.plex.collection_by_title(parent.name)
        assert network is not None

        parent.name = "Renamed Network"  # as studioUpdate leaves it: the name only
        lib.revision += 1
        fire(st, "Studio.Update.Post", parent.id)
        renamed = st.plex.collection_by_title("Renamed Network")
        assert renamed is not None and renamed.rating_key == network.rating_key
        assert "Renamed Network" in st.plex_item(scene).tag_names("collection")


# --- Plex's release-date order ------------------------------------------------------------------


@contextmanager
def dated_stage(tmp_path: Path, n: int = 40, groups: int = 4, dates: str = DATES_FOLLOW,
                **settings: Any) -> Iterator[Stage]:
    """Groups whose scenes are dated a week apart in the order of their numbers (a series)."""
    with stage(library=group_library(n, groups, dates=dates), work_dir=tmp_path, settings={**SETTINGS, **settings},
               on_result=lambda r: AUDIT.record("collections e2e", r.stdout + r.stderr)) as st:
        AUDIT.add_secret(st.plex.token)
        yield st


def first_sync_kinds(st: Stage) -> dict[str, int]:
    st.plex.reset_log()
    run(st, "all")
    with st.plex.lock:
        return dict(Counter(kind_of(r) for r in st.plex.requests))


def person(st: Stage) -> Any:
    """plexapi as someone using Plex sees the server."""
    os.environ["PLEXAPI_PLEXAPI_AUTORELOAD"] = "false"
    from plexapi.server import PlexServer

    return PlexServer(st.plex.url, st.plex.token)


def test_a_series_dated_in_scene_order_needs_no_sort_order_read_or_move(tmp_path: Path) -> None:
    """Plex lists a new collection by release date: when that already is scene order, each
    group costs its one edit (the synopsis) and its poster upload, nothing for the order."""
    with dated_stage(tmp_path) as st:
        kinds = first_sync_kinds(st)
        groups = len(st.library.groups)
        assert {"sort", "order read", "move"}.isdisjoint(kinds), kinds
        assert kinds["collection edit"] == groups  # the synopses; a studio's poster needs no edit
        studios = sum(1 for r in owned(st) if r.kind == "studio" and r.wanted.get("image_url"))
        assert kinds["poster upload"] == groups + studios
        for gid in st.library.groups:
            assert_group_collection(st, gid)
            collection = st.plex.collection_by_title(st.library.groups[gid].name)
            assert collection.sort == 0 and "thumb" in collection.locks  # locked by its upload
        assert all(r.written.get("sort") == 0 for r in owned(st) if r.kind == "group")

        st.plex.reset_log()
        out = run(st, "dry_run")  # judged with the items' dates: nothing to say, nothing read
        assert not [c for c in out["collections"] if c["kind"] == "group"], out["collections"]
        assert st.plex.count("GET", path=re.compile(r"/library/collections/\d+/children.*")) == 0


def test_a_group_without_synopsis_costs_its_poster_upload_alone(tmp_path: Path) -> None:
    with dated_stage(tmp_path) as st:
        for group in st.library.groups.values():
            group.synopsis = None
        st.library.revision += 1
        kinds = first_sync_kinds(st)
        assert "collection edit" not in kinds, kinds
        for gid, group in st.library.groups.items():
            collection = st.plex.collection_by_title(group.name)
            assert collection.poster.data == group.front_image and "thumb" in collection.locks
            assert shown(st, group.name) == members_in_order(st, gid)


def test_dates_against_scene_numbers_get_the_custom_order(tmp_path: Path) -> None:
    with dated_stage(tmp_path, dates=DATES_AGAINST) as st:
        kinds = first_sync_kinds(st)
        groups = len(st.library.groups)
        assert kinds["sort"] == groups and kinds["order read"] == groups
        for gid in st.library.groups:
            assert_group_collection(st, gid)
            assert st.plex.collection_by_title(st.library.groups[gid].name).sort == 2


def test_a_changed_date_or_number_moves_a_series_to_the_custom_order(tmp_path: Path) -> None:
    """A collection relying on release dates is judged again when a member's date or number
    changes, though the scene stays in its group at its place."""
    with dated_stage(tmp_path) as st:
        run(st, "all")
        lib = st.library
        first = members_in_order(st, 1)[0]
        lib.update_scene(first, date="2030-01-01", now=time.time() + 5)  # now it came out last
        st.hook(first)
        st.wait_for_worker()
        run(st, "process_queue")
        assert shown(st, "Series 1") == members_in_order(st, 1)
        assert st.plex.collection_by_title("Series 1").sort == 2

        order = members_in_order(st, 2)
        lib.update_scene(order[-1], groups=[(2, 0)], now=time.time() + 10)  # renumbered first
        st.hook(order[-1])
        st.wait_for_worker()
        run(st, "process_queue")
        assert shown(st, "Series 2") == members_in_order(st, 2) == [order[-1]] + order[:-1]
        assert_group_collection(st, 3)
        assert st.plex.collection_by_title("Series 3").sort == 0


def test_collection_posters_have_their_own_setting(tmp_path: Path) -> None:
    with dated_stage(tmp_path, sync_collection_posters=False) as st:
        kinds = first_sync_kinds(st)
        assert "poster upload" not in kinds, kinds
        for gid, group in st.library.groups.items():
            collection = st.plex.collection_by_title(group.name)
            assert collection.poster is None and collection.fields.get("summary") == group.synopsis
            assert shown(st, group.name) == members_in_order(st, gid)


def test_reconcile_reads_an_order_only_where_it_could_have_drifted(tmp_path: Path) -> None:
    """A custom order can be changed by hand without a trace: Reconcile All reads it, the
    narrower scopes do not. One relying on release dates is read when the listing shows a
    member with another date than we recorded, as when someone edits a date in Plex (kept
    here, under preserve_plex_edits: the collection then needs the custom order)."""
    children = re.compile(r"/library/collections/\d+/children.*")
    with dated_stage(tmp_path, preserve_plex_edits=True) as st:
        lib = st.library
        for index, sid in enumerate(members_in_order(st, 4), start=1):  # group 4 runs against its dates
            lib.scenes[sid].date = f"2040-01-{30 - index:02d}"
        lib.revision += 1
        run(st, "all")
        assert st.plex.collection_by_title("Series 4").sort == 2

        st.plex.reset_log()
        out = run(st, "reconcile_recent")
        assert out["collections"]["checked"] >= 4 and st.plex.count("GET", path=children) == 0
        st.plex.reset_log()
        run(st, "reconcile_all")
        assert st.plex.count("GET", path=children) == 1  # the custom one only
        assert writes(st) == 0

        order = members_in_order(st, 1)
        person(st).fetchItem(st.plex_item(order[0]).rating_key).editOriginallyAvailable("2041-06-01")
        assert shown(st, "Series 1") == order[1:] + order[:1]  # Plex re-sorted it by date
        st.plex.reset_log()
        out = run(st, "reconcile_recent")
        assert out["collections"]["drifted"] == {"Series 1": ["order"]}
        assert st.plex.count("GET", path=children) == 2  # Reconcile's look, the flush's before its moves
        assert shown(st, "Series 1") == order  # the person's date stays; the order is custom now
        assert st.plex.item(st.plex_item(order[0]).rating_key).fields["originallyAvailableAt"] == "2041-06-01"
        assert st.plex.collection_by_title("Series 1").sort == 2
        st.plex.reset_log()
        out = run(st, "reconcile_recent")
        assert out["collections"]["drifted"] == {} and writes(st) == 0


def test_collections_are_put_in_order_side_by_side(tmp_path: Path) -> None:
    """One move per item out of place, each a round trip, was most of a flush's time: the
    collections' orders go out beside each other. The first collection's moves are held until
    another collection's move has been answered; one at a time, that never happens."""
    move = re.compile(r"/library/collections/(\d+)/items/\d+/move")
    with dated_stage(tmp_path, dates=DATES_AGAINST) as st:
        held: list[str] = []

        def first_collections_moves(method: str, path: str, query: Any) -> bool:
            found = move.match(path)
            if found is None:
                return False
            if not held:
                held.append(found.group(1))
            return found.group(1) == held[0]

        def no_other_collection_moved() -> bool:
            with st.plex.lock:
                paths = [r.path for r in st.plex.requests]
            return not any((m := move.match(p)) and m.group(1) != held[0] for p in paths)

        with st.plex.faults.holding(when=no_other_collection_moved, ceiling=10.0, which=first_collections_moves):
            run(st, "all")
        with st.plex.lock:
            moved = [m.group(1) for r in st.plex.requests if (m := move.match(r.path))]
        assert held and moved[0] != held[0], moved
        for gid in st.library.groups:
            assert_group_collection(st, gid)
