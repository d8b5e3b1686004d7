"""plex.claims: which of two scenes resolving to one Plex item may write it. Pure."""

from __future__ import annotations

from plex.claims import Claim, Ownership, decide, live, needs_holder

ORIGINAL = "/media/Brave (2012)/Brave (2012).mkv"
MOBILE = "/media/Brave (2012)/Plex Versions/Optimized for Mobile/Brave.mp4"
TV = "/media/Brave (2012)/Plex Versions/Optimized for TV/Brave.mp4"
FILES = (ORIGINAL, MOBILE, TV)


def test_alone_a_scene_owns_its_item_whichever_part_it_holds() -> None:
    assert decide(7, ORIGINAL, ORIGINAL, FILES, None) == Ownership(7, True)
    assert decide(7, MOBILE, ORIGINAL, FILES, None) == Ownership(7, False)


def test_the_primary_part_wins_over_an_earlier_claim_and_displaces_it() -> None:
    assert decide(9, ORIGINAL, ORIGINAL, FILES, Claim(3, MOBILE)) == Ownership(9, True, displaced=3)


def test_the_owner_takes_over_the_locks_the_displaced_claimant_set() -> None:
    rival = Claim(3, MOBILE, frozenset({"title", "genre"}))
    assert decide(9, ORIGINAL, ORIGINAL, FILES, rival).locks == {"title", "genre"}
    assert decide(2, MOBILE, ORIGINAL, FILES, Claim(5, ORIGINAL, frozenset({"title"}))).locks == frozenset()


def test_a_rival_holding_the_primary_part_keeps_the_item() -> None:
    assert decide(2, MOBILE, ORIGINAL, FILES, Claim(5, ORIGINAL)) == Ownership(5, True)


def test_stash_s_holder_of_the_primary_part_owns_it_before_it_ever_synced() -> None:
    assert needs_holder(MOBILE, ORIGINAL, None)
    assert decide(2, MOBILE, ORIGINAL, FILES, None, holder=8) == Ownership(8, True)
    assert decide(2, MOBILE, ORIGINAL, FILES, Claim(4, TV), holder=8) == Ownership(8, True)


def test_neither_primary_the_scene_that_owned_it_first_keeps_it() -> None:
    assert decide(2, MOBILE, ORIGINAL, FILES, Claim(4, TV)) == Ownership(4, False)
    assert decide(6, TV, ORIGINAL, FILES, Claim(4, MOBILE)) == Ownership(4, False)


def test_a_claim_on_a_part_the_item_no_longer_has_is_void() -> None:
    gone = Claim(4, "/media/elsewhere/old.mp4")
    assert live(gone, FILES) is None
    assert decide(2, MOBILE, ORIGINAL, FILES, gone) == Ownership(2, False, displaced=4)


def test_a_claim_recorded_before_parts_were_kept_still_counts() -> None:
    older = Claim(4, None)
    assert live(older, FILES) is older
    assert decide(2, MOBILE, ORIGINAL, FILES, older) == Ownership(4, False)
    assert decide(2, ORIGINAL, ORIGINAL, FILES, older) == Ownership(2, True, displaced=4)


def test_stash_is_asked_only_when_neither_side_holds_the_primary_part() -> None:
    assert not needs_holder(ORIGINAL, ORIGINAL, None)
    assert not needs_holder(MOBILE, ORIGINAL, Claim(5, ORIGINAL))
    assert needs_holder(MOBILE, ORIGINAL, Claim(5, TV))


def test_parts_compare_in_one_normal_form() -> None:
    nfd = "/media/Pre\u0301miere/Pre\u0301miere.mkv"
    nfc = "/media/Pr\u00e9miere/Pr\u00e9miere.mkv"
    assert decide(3, nfc, nfd, (nfd,), Claim(1, None)) == Ownership(3, True, displaced=1)
