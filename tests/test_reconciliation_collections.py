"""reconciliation.collections' pure judgements: which parts of our collections drifted, and
which orders only a read can check."""

from __future__ import annotations

from plex.collection_plan import SORT_ALPHA, SORT_CUSTOM, SORT_RELEASE, Listed
from plex.records import CurrentState
from plex.sync import date_moved
from reconciliation.collections import drifted, redated_members, unseen_drift
from reconciliation.gaps import snapshot
from sync_queue.collections import CollectionRow
from sync_queue.ledger import Member

KEYS = ["11", "12", "13"]


def row(sort: int | None = None, **written: object) -> CollectionRow:
    done = {"title": "Series A", "order": KEYS, **written}
    if sort is not None:
        done["sort"] = sort
    return CollectionRow("1", "group", "7", "Series A", "50", {"ordered": True}, done, False, 0, None, 0.0)


def listed(sort: int) -> Listed:
    return Listed("50", "Series A", child_count=3, sort=sort)


def test_the_sort_we_rely_on_is_the_one_expected() -> None:
    assert drifted(row(SORT_RELEASE), listed(SORT_RELEASE), KEYS, None) == ()
    assert drifted(row(SORT_RELEASE), listed(SORT_CUSTOM), KEYS, None) == ("order",)
    assert drifted(row(SORT_CUSTOM), listed(SORT_RELEASE), KEYS, None) == ("order",)
    assert drifted(row(), listed(SORT_CUSTOM), KEYS, None) == ()  # recorded before the sort was kept
    assert drifted(row(SORT_RELEASE), listed(SORT_RELEASE), KEYS, ["12", "11", "13"]) == ("order",)


def test_an_order_is_read_only_where_the_listing_cannot_show_its_drift() -> None:
    custom, release = row(SORT_CUSTOM), row(SORT_RELEASE)
    assert unseen_drift(custom, listed(SORT_CUSTOM), KEYS, full=True, redated=set())
    assert not unseen_drift(custom, listed(SORT_CUSTOM), KEYS, full=False, redated=set())
    assert not unseen_drift(custom, listed(SORT_ALPHA), KEYS, full=True, redated=set())  # the listing shows it
    assert not unseen_drift(release, listed(SORT_RELEASE), KEYS, full=True, redated=set())
    assert unseen_drift(release, listed(SORT_RELEASE), KEYS, full=False, redated={"12"})
    assert not unseen_drift(release, listed(SORT_RELEASE), KEYS, full=False, redated={"99"})
    assert not unseen_drift(release, listed(SORT_RELEASE), KEYS[:1], full=True, redated={"11"})  # one item


def test_members_whose_listed_date_is_not_the_recorded_one() -> None:
    members = {("1", "group", "7"): [Member(1, "11", {"7": 1}, "2020-01-01"), Member(2, "12", {"7": 2}, "2020-02-01"),
                                     Member(3, "13", {"7": 3}, None)]}
    snaps = {"11": snapshot(CurrentState("11", originally_available_at="2020-01-01")),
             "12": snapshot(CurrentState("12", originally_available_at="2031-01-01")),
             "13": snapshot(CurrentState("13", originally_available_at="2020-03-01"))}
    assert [m.scene_id for m in redated_members([row(SORT_RELEASE)], members, snaps)] == [2, 3]
    assert redated_members([row(SORT_CUSTOM)], members, snaps) == []  # a custom order does not follow dates
    assert redated_members([row(SORT_RELEASE)], members, {}) == []  # not listed: nothing to compare


def test_a_sync_may_move_the_items_date() -> None:
    assert not date_moved("2020-01-01", "2020-01-01", "2020-01-01")
    assert not date_moved("2020-01-01", "2020-01-01", None)  # dates not synced: Plex's stays
    assert date_moved("2020-01-01", "2031-01-01", None)  # changed in Plex
    assert date_moved("2020-01-01", "2020-01-01", "2020-05-01")  # changed in Stash
    assert date_moved(None, "2020-01-01", "2020-01-01")  # recorded before dates were kept
    assert not date_moved("", "", "")
