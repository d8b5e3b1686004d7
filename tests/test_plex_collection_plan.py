"""plex.collection_plan: ownership, only-when-changed writes, order moves, deletion."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from plex.collection_plan import (
    SORT_ALPHA,
    SORT_CUSTOM,
    SORT_RELEASE,
    Listed,
    Move,
    Wanted,
    in_release_order,
    order_moves,
    plan_collection,
    poster_plan,
)

WANT = Wanted("Series A", "About A", "http://stash/group/1/frontimage", ordered=True)


def apply(order: list[str], moves: tuple[Move, ...]) -> list[str]:
    for move in moves:
        order = [k for k in order if k != move.key]
        at = 0 if move.after is None else order.index(move.after) + 1
        order.insert(at, move.key)
    return order


def test_someone_elses_collection_is_never_written() -> None:
    plan = plan_collection(WANT, Listed("5", "Old name", child_count=0), {}, [], owned=False, lock=True)
    assert not plan.params and not plan.delete and not plan.fetch_poster and not plan.custom_sort


def test_ours_emptied_is_deleted() -> None:
    assert plan_collection(WANT, Listed("5", "Series A"), {}, [], owned=True, lock=True).delete


def test_new_collection_gets_everything_once() -> None:
    plan = plan_collection(WANT, Listed("5", "Series A", child_count=3), {}, ["1", "2", "3"], owned=True, lock=True)
    assert plan.params == {"summary.value": "About A", "summary.locked": 1}
    assert plan.fetch_poster and plan.custom_sort and plan.read_order
    assert plan.written["order"] == ["1", "2", "3"] and plan.written["summary"] == "About A"


def test_unchanged_collection_sends_nothing() -> None:
    written = {"title": "Series A", "summary": "About A", "poster_source": WANT.image_url, "order": ["1", "2"]}
    listed = Listed("5", "Series A", child_count=2, sort=SORT_CUSTOM)
    plan = plan_collection(WANT, listed, written, ["1", "2"], owned=True, lock=True)
    assert (plan.params, plan.fetch_poster, plan.custom_sort, plan.read_order, plan.moves, plan.changes) == (
        {}, False, False, False, (), ())


def test_rename_reorder_without_reading() -> None:
    written = {"title": "Series A", "summary": "About A", "poster_source": WANT.image_url, "order": ["1", "2", "3"]}
    listed = Listed("5", "Old", child_count=3, sort=SORT_CUSTOM)
    plan = plan_collection(WANT, listed, written, ["3", "1", "2"], owned=True, lock=False)
    assert plan.params == {"title.value": "Series A"}
    assert not plan.read_order and plan.moves == (Move("3", None),)


def test_new_member_means_reading_the_order() -> None:
    written = {"order": ["1", "2"], "summary": "About A", "poster_source": WANT.image_url}
    plan = plan_collection(WANT, Listed("5", "Series A", child_count=3, sort=SORT_CUSTOM), written,
                           ["1", "2", "3"], owned=True, lock=True)
    assert plan.read_order and not plan.custom_sort


def test_poster_uploaded_only_for_new_bytes() -> None:
    params, upload, kept = poster_plan({}, "abc", {"poster_hash": "abc"}, "u2", lock=True)
    assert not upload and kept["poster_source"] == "u2" and params == {}
    params, upload, kept = poster_plan({}, "def", {"poster_hash": "abc"}, "u2", lock=True)
    assert upload and params == {"thumb.locked": 1} and kept["poster_hash"] == "def"
    assert poster_plan({}, None, {"poster_hash": "abc"}, "u3", lock=True)[1] is False


def test_moves_fewest() -> None:
    assert order_moves(["1", "2", "3"], ["1", "2", "3"]) == ()
    assert order_moves(["2", "3", "1"], ["1", "2", "3"]) == (Move("1", None),)
    moves = order_moves(["9", "1", "8", "2"], ["2", "1"])  # others' items are not ours to order
    assert len(moves) == 1 and [k for k in apply(["9", "1", "8", "2"], moves) if k in "12"] == ["2", "1"]
    assert len(order_moves(["4", "3", "2", "1"], ["1", "2", "3", "4"])) == 3


@given(st.permutations(list("abcdef")))
def test_moves_always_reach_the_order(current: list[str]) -> None:
    desired = sorted(current)
    moves = order_moves(current, desired)
    assert apply(list(current), moves) == desired
    best = min(len(desired) - len(run) for n in range(len(desired) + 1)
               for run in itertools.combinations(current, n) if list(run) == sorted(run))
    assert len(moves) == best


def test_release_order_holds_only_for_strictly_increasing_dates_all_present() -> None:
    assert in_release_order(["2020-01-01", "2020-01-08", "2021-03-01"])
    assert not in_release_order(["2020-01-01", "2020-01-01"])  # one day: Plex's tie-break decides
    assert not in_release_order(["2020-01-08", "2020-01-01"])
    assert not in_release_order(["2020-01-01", None]) and not in_release_order(["", "2020-01-01"])
    assert in_release_order([]) and in_release_order(["2020-01-01"])


def test_a_new_collection_in_release_order_sends_nothing_for_its_order() -> None:
    listed = Listed("5", "Series A", child_count=3)  # a new collection: Plex's default sort
    plan = plan_collection(WANT, listed, {}, ["1", "2", "3"], owned=True, lock=True, release_ordered=True)
    assert (plan.custom_sort, plan.read_order, plan.moves) == (False, False, ())
    assert not any(c.startswith("collection order") for c in plan.changes)
    assert plan.written["sort"] == SORT_RELEASE and plan.written["order"] == ["1", "2", "3"]


def test_release_order_is_not_relied_on_once_dates_disagree_or_the_sort_is_another() -> None:
    written = {"title": "Series A", "summary": "About A", "poster_source": WANT.image_url,
               "order": ["1", "2", "3"], "sort": SORT_RELEASE}
    plan = plan_collection(WANT, Listed("5", "Series A", child_count=3), written, ["1", "2", "3"], owned=True,
                           lock=True, release_ordered=False)
    assert plan.custom_sort and plan.read_order and plan.written["sort"] == SORT_CUSTOM
    alpha = Listed("5", "Series A", child_count=3, sort=SORT_ALPHA)  # someone chose alphabetical
    plan = plan_collection(WANT, alpha, written, ["1", "2", "3"], owned=True, lock=True, release_ordered=True)
    assert plan.custom_sort and plan.read_order
    custom = Listed("5", "Series A", child_count=3, sort=SORT_CUSTOM)  # ours already: moves as before
    plan = plan_collection(WANT, custom, {**written, "sort": SORT_CUSTOM}, ["1", "3", "2"], owned=True, lock=True,
                           release_ordered=True)
    assert not plan.custom_sort and not plan.read_order and len(plan.moves) == 1

