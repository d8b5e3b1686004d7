"""plex.diff: desired against current state, the one edit to send, as tables."""

from __future__ import annotations

from urllib.parse import unquote

import pytest

from plex.desired import Actor, DesiredState
from plex.diff import canonical_state, merge_list, plan_edit, removal_value, state_hash
from plex.records import CurrentState

FULL = DesiredState(
    title="T", title_sort="T", studio="S", summary="Sum", tagline="C-1",
    originally_available_at="2021-06-01", rating=8.3, genres=("A", "B"),
    actors=(Actor("Ann", "http://s/p/1"),), collections=("S",),
)
SHOWN = CurrentState(
    rating_key="5", title="T", title_sort="T", studio="S", summary="Sum", tagline="C-1",
    originally_available_at="2021-06-01", rating=8.3, genres=("a", "B"),  # Plex folds case
    actors=(Actor("Ann", "http://s/p/1"),), collections=("S",),
    locked=frozenset({"title", "titleSort", "studio", "summary", "tagline", "originallyAvailableAt",
                      "userRating", "genre", "actor", "collection"}),
)


def test_nothing_changed_sends_nothing() -> None:
    plan = plan_edit(FULL, SHOWN, None, lock=True, preserve=False)
    assert plan.empty and plan.changes == ()


def test_unlocked_synced_field_sends_only_its_lock() -> None:
    current = CurrentState(**{**vars(SHOWN), "locked": SHOWN.locked - {"summary", "genre"}})
    plan = plan_edit(FULL, current, None, lock=True, preserve=False)
    assert dict(plan.params) == {"summary.locked": 1, "genre.locked": 1}
    assert plan_edit(FULL, current, None, lock=False, preserve=False).empty


def test_first_sync_of_a_bare_item_sends_everything_in_one_plan() -> None:
    plan = plan_edit(FULL, CurrentState(rating_key="5", title="file-name"), None, lock=True, preserve=False)
    p = dict(plan.params)
    assert p["title.value"] == "T" and p["title.locked"] == 1
    assert p["titleSort.value"] == "T" and p["studio.value"] == "S" and p["summary.value"] == "Sum"
    assert p["tagline.value"] == "C-1" and p["originallyAvailableAt.value"] == "2021-06-01"
    assert p["userRating.value"] == 8.3
    assert p["genre[0].tag.tag"] == "A" and p["genre[1].tag.tag"] == "B" and p["genre.locked"] == 1
    assert p["actor[0].tag.tag"] == "Ann" and p["actor[0].tag.thumb"] == "http://s/p/1"
    assert p["collection[0].tag.tag"] == "S"
    assert not any(k.endswith("tag.tag-") for k in p)  # nothing to remove from a bare item


def test_lock_off_sends_unlock_with_values() -> None:
    plan = plan_edit(FULL, CurrentState(rating_key="5"), None, lock=False, preserve=False)
    assert plan.params["title.locked"] == 0 and plan.params["genre.locked"] == 0


@pytest.mark.parametrize(("field", "attr", "value", "param"), [
    ("title", "title", "New", "title.value"),
    ("studio", "studio", "Other", "studio.value"),
    ("summary", "summary", "", "summary.value"),  # cleared in Stash: cleared in Plex
    ("originally_available_at", "originally_available_at", "2020-01-01", "originallyAvailableAt.value"),
    ("rating", "rating", 5.0, "userRating.value"),
])
def test_one_scalar_change(field: str, attr: str, value: object, param: str) -> None:
    desired = DesiredState(**{**vars(FULL), field: value})
    plan = plan_edit(desired, SHOWN, None, lock=True, preserve=False)
    assert dict(plan.params) == {param: value, param.replace(".value", ".locked"): 1}
    assert len(plan.changes) == 1


def test_blank_title_is_never_sent() -> None:
    desired = DesiredState(**{**vars(FULL), "title": ""})
    assert "title.value" not in plan_edit(desired, SHOWN, None, lock=True, preserve=False).params


def test_unmanaged_fields_are_untouched() -> None:
    plan = plan_edit(DesiredState(title="T"), CurrentState(rating_key="5", title="T", genres=("X",),
                                                           summary="mine"), None, lock=False, preserve=False)
    assert plan.empty


def test_tag_removed_in_stash_is_removed_in_plex() -> None:
    desired = DesiredState(**{**vars(FULL), "genres": ("A",)})
    plan = plan_edit(desired, SHOWN, None, lock=True, preserve=False)
    assert plan.params["genre[0].tag.tag"] == "A"
    assert "genre[1].tag.tag" not in plan.params
    assert plan.params["genre[].tag.tag-"] == "B"


def test_emptied_list_is_spelled_as_removals() -> None:
    desired = DesiredState(**{**vars(FULL), "genres": ()})
    plan = plan_edit(desired, SHOWN, None, lock=True, preserve=False)
    assert unquote(plan.params["genre[].tag.tag-"]).split(",") == ["a", "B"]
    assert not any(k.startswith("genre[0]") for k in plan.params)


def test_removal_value_quotes_each_name() -> None:
    assert removal_value(["A", "x y", "a,b"]) == "A,x%20y,a%2Cb"


def test_studio_change_swaps_only_our_collection() -> None:
    current = CurrentState(**{**vars(SHOWN), "collections": ("S", "My Favourites")})
    desired = DesiredState(**{**vars(FULL), "studio": "S2", "collections": ("S2",)})
    plan = plan_edit(desired, current, {"collection": ["S"]}, lock=True, preserve=False)
    sent = [v for k, v in plan.params.items() if k.startswith("collection[") and k.endswith("].tag.tag")]
    assert sent == ["My Favourites", "S2"]
    assert plan.params["collection[].tag.tag-"] == "S"


def test_user_collection_survives_without_ledger() -> None:
    current = CurrentState(**{**vars(SHOWN), "collections": ("Mine",)})
    plan = plan_edit(FULL, current, None, lock=True, preserve=False)
    sent = [v for k, v in plan.params.items() if k.startswith("collection[") and k.endswith("].tag.tag")]
    assert sent == ["Mine", "S"]
    assert "collection[].tag.tag-" not in plan.params



@pytest.mark.parametrize("preserve", [False, True])
def test_an_item_leaves_a_collection_of_ours_the_ledger_never_recorded(preserve: bool) -> None:
    """A write cut off before it was recorded put the item in our "Old" collection: the
    collections table says "Old" is ours, so it goes; "Mine" is the user's and stays."""
    current = CurrentState(**{**vars(SHOWN), "collections": ("S", "Old", "Mine")})
    plan = plan_edit(FULL, current, {"collection": ["S"]}, lock=True, preserve=preserve,
                     owned_collections=("S", "Old"))
    sent = [v for k, v in plan.params.items() if k.startswith("collection[") and k.endswith("].tag.tag")]
    assert sent == ["S", "Mine"]


def test_an_owned_collection_stash_wants_is_still_joined_under_preserve() -> None:
    current = CurrentState(**{**vars(SHOWN), "collections": ()})
    plan = plan_edit(FULL, current, {"collection": []}, lock=True, preserve=True, owned_collections=("S",))
    assert plan.params["collection[0].tag.tag"] == "S"

# --- preserve_plex_edits: three-way ---------------------------------------------------

@pytest.mark.parametrize(("stash", "ledger", "plex", "sent", "kept"), [
    ("new", "old", "old", "new", False),  # only Stash changed: Stash wins
    ("old", "old", "edited", None, True),  # only Plex changed: Plex's edit stays
    ("new", "old", "edited", None, True),  # both changed: the person's edit stays
    ("new", None, "edited", "new", False),  # no ledger value: no evidence of an edit
    ("same", "old", "same", None, False),  # converged
])
def test_preserve_three_way_scalar(stash: str, ledger: str | None, plex: str, sent: str | None,
                                   kept: bool) -> None:
    written = {} if ledger is None else {"summary": ledger}
    plan = plan_edit(DesiredState(summary=stash), CurrentState(rating_key="1", summary=plex,
                                                              locked=frozenset({"summary"})),
                     written, lock=True, preserve=True)
    assert plan.params.get("summary.value") == sent
    assert ("summary" in plan.kept) is kept
    assert plan.written["summary"] == (ledger if kept else stash)


def test_without_preserve_plex_edits_are_overwritten() -> None:
    plan = plan_edit(DesiredState(summary="stash"), CurrentState(rating_key="1", summary="edited"),
                     {"summary": "old"}, lock=True, preserve=False)
    assert plan.params["summary.value"] == "stash" and plan.kept == ()


@pytest.mark.parametrize(("current", "last", "desired", "mirror", "preserve", "expected"), [
    (("A", "B"), None, ("B", "C"), True, False, ("B", "C")),
    (("A", "B", "Mine"), ("A", "B"), ("B", "C"), True, True, ("B", "Mine", "C")),  # Plex-added tag survives
    (("B",), ("A", "B"), ("A", "B"), True, True, ("B",)),  # a tag removed in Plex stays removed
    (("A", "B"), None, ("B", "C"), True, True, ("B", "C")),  # no ledger: mirror
    (("x", "Mine"), ("X",), ("Y",), False, False, ("Mine", "Y")),  # ours swapped, case-insensitive
    (("Mine",), None, ("S",), False, False, ("Mine", "S")),
])
def test_merge_list(current: tuple[str, ...], last: tuple[str, ...] | None, desired: tuple[str, ...],
                    mirror: bool, preserve: bool, expected: tuple[str, ...]) -> None:
    assert merge_list(current, last, desired, mirror, preserve) == expected


# --- actors -----------------------------------------------------------------------------

def test_new_actor_photo_resends_the_list() -> None:
    desired = DesiredState(actors=(Actor("Ann", "http://s/p/1?v=2"),))
    plan = plan_edit(desired, SHOWN, {"actor": [["Ann", "http://s/p/1"]]}, lock=True, preserve=False)
    assert plan.params["actor[0].tag.thumb"] == "http://s/p/1?v=2"


def test_same_actors_is_no_change() -> None:
    plan = plan_edit(DesiredState(actors=(Actor("ann", "http://s/p/1"),)), SHOWN,
                     {"actor": [["Ann", "http://s/p/1"]]}, lock=True, preserve=False)
    assert plan.empty


def test_image_locks_ride_in_the_edit() -> None:
    plan = plan_edit(FULL, SHOWN, None, lock=True, preserve=False, uploads=("poster", "art"))
    assert dict(plan.params) == {"thumb.locked": 1, "art.locked": 1}
    locked = CurrentState(**{**vars(SHOWN), "locked": SHOWN.locked | {"thumb"}})
    assert dict(plan_edit(FULL, locked, None, lock=True, preserve=False, uploads=("poster",)).params) == {}


# --- ledger hash ----------------------------------------------------------------------

def test_state_hash_tracks_values_and_settings() -> None:
    h = state_hash(FULL, lock=True, preserve=False)
    assert h == state_hash(DesiredState(**vars(FULL)), lock=True, preserve=False)
    assert h != state_hash(DesiredState(**{**vars(FULL), "summary": "x"}), lock=True, preserve=False)
    assert h != state_hash(FULL, lock=False, preserve=False)
    assert h != state_hash(FULL, lock=True, preserve=True)
    assert canonical_state(FULL, lock=True, preserve=False)["settings"] == {"lock": True, "preserve": False}


def test_state_hash_keeps_the_value_ledgers_already_hold() -> None:
    """The hash is stored in every ledger row: a change in how it is computed would make every
    synced scene look changed (a whole-library resync after an upgrade)."""
    assert state_hash(FULL, lock=True, preserve=False) == \
        "b0276b1c31ea6fd0e03eed47cb74c0480f924e80946bb5d5a5fe4f1514ecec50"
    assert state_hash(FULL, lock=False, preserve=True, groups=[["7", 2, "Syn", None]]) == \
        "27b66424b4eb7dfe161d023d5103b39b0d5d8b3a3b6e1164575d45ecc1f5502e"


def test_actor_without_a_photo_of_ours_leaves_plexs_photo() -> None:
    """None means "no photo we can give": Plex's own stays, and no edit is sent for it."""
    plan = plan_edit(DesiredState(actors=(Actor("Ann", None),)), SHOWN, None, lock=True, preserve=False)
    assert plan.empty
    plan = plan_edit(DesiredState(actors=(Actor("Ann", None), Actor("Bob", None))), SHOWN, None,
                     lock=True, preserve=False)
    assert plan.params["actor[0].tag.thumb"] == "http://s/p/1" and "actor[1].tag.thumb" not in plan.params
