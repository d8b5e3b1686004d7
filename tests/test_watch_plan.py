"""The watch-history import's decisions, without I/O: plays per minute, resume points, scope."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from base.errors import SettingsError
from watch.plan import NewPlay, minute, plays_to_add, resume_change
from watch.scope import needs_accounts, resolve_scope

T = 1_700_000_040  # on a minute boundary


def test_new_plays_are_added_at_their_times():
    plan = plays_to_add([NewPlay("a", 1, T), NewPlay("b", 1, T + 3600), NewPlay("c", 2, T)], {}, {})
    assert plan.to_add == {1: [T, T + 3600], 2: [T]}
    assert plan.added_keys == {"a", "b", "c"} and not plan.in_stash_keys


def test_a_play_stash_has_at_that_minute_is_not_added_again():
    # Stash's own player recorded the play 20 s after Plex's time, in the same minute.
    plan = plays_to_add([NewPlay("a", 1, T)], {}, {1: [T + 20]})
    assert plan.to_add == {} and plan.in_stash_keys == {"a"}


def test_a_play_in_another_minute_is_a_different_play():
    plan = plays_to_add([NewPlay("a", 1, T)], {}, {1: [T + 60]})
    assert plan.to_add == {1: [T]}


def test_two_plays_in_one_minute_both_arrive():
    plan = plays_to_add([NewPlay("a", 1, T), NewPlay("b", 1, T + 30)], {}, {})
    assert plan.to_add == {1: [T, T + 30]}


def test_a_logged_play_at_the_same_minute_does_not_hide_a_new_one():
    # One play of this minute was imported before (and is in Stash); a second one is new.
    plan = plays_to_add([NewPlay("b", 1, T + 10)], {(1, minute(T)): 1}, {1: [T]})
    assert plan.to_add == {1: [T + 10]}


def test_a_replayed_page_after_a_kill_sends_nothing_twice():
    # The page's plays reached Stash, then the process died before logging them.
    page = [NewPlay("a", 1, T), NewPlay("b", 1, T + 5), NewPlay("c", 2, T + 600)]
    plan = plays_to_add(page, {}, {1: [T, T + 5], 2: [T + 600]})
    assert plan.to_add == {} and plan.in_stash_keys == {"a", "b", "c"}


def test_a_partly_sent_page_sends_only_the_rest():
    page = [NewPlay("a", 1, T), NewPlay("c", 2, T + 600)]
    plan = plays_to_add(page, {}, {1: [T]})
    assert plan.to_add == {2: [T + 600]} and plan.in_stash_keys == {"a"}


def test_a_play_deleted_in_stash_after_import_is_not_sent_back_by_a_new_one():
    # Imported before (logged), then removed by the user in Stash; a new play at that minute
    # adds exactly itself.
    plan = plays_to_add([NewPlay("b", 1, T + 1)], {(1, minute(T)): 1}, {1: []})
    assert plan.to_add == {1: [T + 1]}


plays = st.lists(st.tuples(st.integers(1, 3), st.integers(0, 300)), max_size=30)


@settings(max_examples=200, deadline=None)
@given(plays, st.data())
def test_replaying_any_prefix_converges_to_exactly_the_plex_plays(raw, data):
    """Whatever part of a page reached Stash before a kill, replaying it ends with each
    Plex play in Stash exactly once (Stash starts without plays of its own)."""
    page = [NewPlay(f"k{i}", scene, T + offset) for i, (scene, offset) in enumerate(raw)]
    first = plays_to_add(page, {}, {})
    sent = [(s, t) for s, times in first.to_add.items() for t in times]
    cut = data.draw(st.integers(0, len(sent)))
    stash: dict[int, list[float]] = {}
    for scene, t in sent[:cut]:
        stash.setdefault(scene, []).append(t)
    replay = plays_to_add(page, {}, stash)
    for scene, times in replay.to_add.items():
        stash.setdefault(scene, []).extend(times)
    want = Counter((p.scene_id, p.viewed_at) for p in page)
    assert Counter((s, int(t)) for s, times in stash.items() for t in times) == want


def test_resume_from_plex_when_plex_is_newer():
    change = resume_change(1, T + 100, 95_000, 1200.0, 0.0, T)
    assert change is not None and change.resume_time == 95.0


def test_resume_when_stash_never_played():
    assert resume_change(1, T, 5_000, 1200.0, 0.0, None).resume_time == 5.0


def test_stash_newer_activity_wins():
    assert resume_change(1, T, 95_000, 1200.0, 40.0, T + 1) is None


def test_a_finished_play_clears_the_resume_point():
    change = resume_change(1, T, 0, 1200.0, 300.0, T - 10)
    assert change is not None and change.resume_time == 0.0


def test_an_offset_at_the_very_end_counts_as_finished():
    assert resume_change(1, T, 1_190_000, 1200.0, 300.0, None).resume_time == 0.0


def test_nothing_to_do_when_equal_or_never_viewed():
    assert resume_change(1, T, 95_000, 1200.0, 95.0, None) is None
    assert resume_change(1, T, 0, 1200.0, 0.0, None) is None
    assert resume_change(1, None, 95_000, 1200.0, 0.0, None) is None


def test_scope_default_is_the_tokens_account_with_resume_points():
    scope = resolve_scope("")
    assert scope.account_id == 1 and scope.with_resume and not needs_accounts("")


def test_scope_all_reads_every_account_without_resume_points():
    scope = resolve_scope(" ALL ")
    assert scope.account_id is None and not scope.with_resume and not needs_accounts("all")


def test_scope_names_a_managed_user_case_insensitively():
    scope = resolve_scope("Bob", {0: "", 1: "owner", 7: "bob"})
    assert (scope.account_id, scope.key, scope.with_resume) == (7, "account:7", False)
    assert needs_accounts("Bob")


def test_unknown_user_is_a_settings_error_listing_the_accounts():
    with pytest.raises(SettingsError, match=r"'carol'.*accounts: bob, owner"):
        resolve_scope("carol", {0: "", 1: "owner", 7: "bob"})
