"""The chaos soak's end checks (`bench.chaos_checks`): each passes on a sound end state and
fails on the fault it exists for."""

from __future__ import annotations

from bench.chaos_checks import (
    Event,
    ItemView,
    SceneView,
    Write,
    differences,
    entity_name,
    foreign_writes,
    lost_events,
    percentile,
    read_entity_name,
    read_scene_mark,
    repeated_writes,
    save_latencies,
    scene_mark,
    stuck,
    writes_per_scene,
)

T1 = entity_name("tag", 1, 2)
SCENE = SceneView(title=f"{scene_mark(7, 3)} Night", studio="S1", tags=(T1, "plain"), performers=("Ann",),
                  entities=frozenset({("tag", 1), ("tag", 2), ("performer", 4), ("studio", 1)}))
ITEM = ItemView(title=f"{scene_mark(7, 3)} Night", studio="S1", genres=(T1, "plain"), actors=("Ann",),
                collections=("S1",))


def item(**changes) -> ItemView:
    return ItemView(**{**ITEM.__dict__, **changes})


def test_markers_read_back() -> None:
    assert read_scene_mark(scene_mark(12, 4) + " words") == (12, 4)
    assert read_scene_mark("words [s1 v2]") is None and read_scene_mark(None) is None
    assert read_entity_name(entity_name("performer", 9, 3)) == (("performer", 9), 3)
    assert read_entity_name("P9 r3 and more") is None


def test_differences_pass_when_plex_shows_stash_and_name_each_gap() -> None:
    assert differences({7: SCENE}, {7: ITEM}) == []
    assert differences({7: SCENE}, {7: item(genres=("plain", T1))}) == []  # order is Plex's
    for bad, word in ((item(title="Old"), "title"), (item(studio="S2"), "studio"),
                      (item(genres=("plain",)), "genres"), (item(actors=("Ann", "Ann")), "twice"),
                      (item(collections=()), "collections"), (None, "no Plex item")):
        (problem,) = differences({7: SCENE}, {7: bad})
        assert problem.startswith("scene 7") and word in problem


def test_an_untitled_scene_leaves_the_plex_title_alone() -> None:
    untitled = SceneView(**{**SCENE.__dict__, "title": None})
    assert differences({7: untitled}, {7: item(title="file name.mp4")}) == []


def test_an_edit_carrying_another_scenes_text_is_foreign() -> None:
    owner = {100: 7, 101: 8}
    ok = Write(1.0, 100, {"title.value": scene_mark(7, 1) + " A", "summary.value": scene_mark(7, 1)})
    assert foreign_writes([ok, Write(2.0, 101, {"genre[0].tag.tag": "x"})], owner) == []
    wrong = Write(3.0, 101, {"title.value": scene_mark(7, 1) + " A"})
    unmarked = Write(4.0, 100, {"summary.value": "someone's text"})
    found = foreign_writes([wrong, unmarked], owner)
    assert len(found) == 2 and "scene 8" in found[0] and "scene 7" in found[1]


def test_an_acknowledged_save_plex_does_not_show_is_lost() -> None:
    save = Event(1.0, "save", scene=7, version=3, acked=True)
    assert lost_events([save], {7: SCENE}, {7: ITEM}, ()) == []
    behind = item(title=f"{scene_mark(7, 2)} Night")
    (problem,) = lost_events([save], {7: SCENE}, {7: behind}, ())
    assert "scene 7 v3" in problem and "v2" in problem
    # Owed nothing: a hook killed before it recorded, a deleted scene, a true dead letter.
    assert lost_events([Event(1.0, "save", scene=7, version=3, acked=False)], {7: SCENE}, {7: behind}, ()) == []
    assert lost_events([save], {}, {7: behind}, ()) == []
    assert lost_events([save], {7: SCENE}, {7: behind}, {7}) == []


def test_an_acknowledged_rename_every_scene_showing_the_entity_must_show() -> None:
    rename = Event(1.0, "rename", entity=("tag", 1), version=2, acked=True)
    assert lost_events([rename], {7: SCENE}, {7: ITEM}, ()) == []
    stale = item(genres=(entity_name("tag", 1, 1), "plain"))
    (problem,) = lost_events([rename], {7: SCENE}, {7: stale}, ())
    assert "tag 1 r2" in problem and "scene 7 shows r1" in problem
    never = item(genres=("original tag name", "plain"))
    assert len(lost_events([rename], {7: SCENE}, {7: never}, ())) == 1
    elsewhere = Event(1.0, "rename", entity=("tag", 9), version=5, acked=True)
    assert lost_events([elsewhere], {7: SCENE}, {7: stale}, ()) == []


def test_work_left_and_false_dead_letters_are_stuck() -> None:
    quiet = {"due jobs": 0, "inbox events": 0}
    assert stuck(quiet, {}, {7}, (), {7}) == []
    assert stuck({"due jobs": 2}, {}, {7}, (), {7}) == ["2 due jobs left"]
    assert stuck(quiet, {9: "gone"}, {7}, (), {7}) == []  # scene 9 was deleted
    assert stuck(quiet, {7: "gone"}, {7}, (), {7}) != []  # it was not
    assert stuck(quiet, {7: "not_found"}, {7}, (), set()) == []
    assert stuck(quiet, {7: "not_found"}, {7}, (), {7}) != []  # Plex has its file
    assert stuck(quiet, {7: "auth"}, {7}, {"revoke"}, {7}) == []
    assert stuck(quiet, {7: "auth"}, {7}, {"plex_down"}, {7}) != []  # no token was revoked
    assert stuck(quiet, {7: "bug"}, {7}, {"plex_down", "revoke"}, {7}) != []


def test_the_same_edit_twice_without_a_cut_between_is_a_duplicated_job() -> None:
    edit = {"title.value": "x"}
    twice = [Write(1.0, 100, edit), Write(5.0, 100, dict(edit))]
    assert repeated_writes(twice, cuts=[]) != []
    assert repeated_writes(twice, cuts=[3.0]) == []  # a kill between: redone after a crash
    assert repeated_writes(twice, cuts=[0.5]) == []  # the sender died just after sending
    assert repeated_writes(twice, cuts=[9.0]) != []
    changed = [Write(1.0, 100, edit), Write(2.0, 100, {"title.value": "y"}), Write(3.0, 100, edit)]
    assert repeated_writes(changed, cuts=[]) == []
    assert repeated_writes([Write(1.0, 100, edit), Write(2.0, 101, edit)], cuts=[]) == []


def test_save_to_plex_is_the_first_edit_showing_that_save_or_a_later_one() -> None:
    owner = {100: 7}
    events = [Event(10.0, "save", scene=7, version=1, acked=True),
              Event(11.0, "save", scene=7, version=2, acked=True),
              Event(12.0, "save", scene=7, version=3, acked=False)]
    writes = [Write(9.0, 100, {"title.value": scene_mark(7, 0)}),
              Write(13.5, 100, {"title.value": scene_mark(7, 2)}),
              Write(20.0, 100, {"title.value": scene_mark(7, 3)})]
    assert save_latencies(events, writes, owner) == [3.5, 2.5]
    assert writes_per_scene(writes, owner) == {7: 3}
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5 and percentile([], 95) == 0.0
