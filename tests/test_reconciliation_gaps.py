"""Which gap a scene has: a table over (ledger, match, listed item, settings). Pure."""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from dataclasses import replace
from typing import Any

import pytest

from base.unicode_forms import nfc
from plex import xmlread
from plex.desired import Actor, DesiredState
from plex.matcher import MatchKind, MatchResult
from plex.records import CurrentState
from reconciliation.gaps import (
    GAP_ORDER,
    Gap,
    LedgerView,
    Verdict,
    _squash,
    classify,
    digest,
    drifted_fields,
    reason,
    snapshot,
    title_is_placeholder,
)
from reconciliation.reconcile import ReconcileReport

FILE = "/media/stash/studio/real-scene.mp4"
HASH = "h1"
DESIRED = DesiredState(title="Real Title", title_sort="Real Title", studio="Studio", summary="About it.",
                       tagline="", originally_available_at="2021-06-01", rating=8.3,
                       genres=("Blonde", "Outdoor"), actors=(Actor("Ann"), Actor("Bo")), collections=("Studio",))
WRITTEN: dict[str, Any] = {
    "title": "Real Title", "titleSort": "Real Title", "studio": "Studio", "summary": "About it.",
    "tagline": "", "originallyAvailableAt": "2021-06-01", "userRating": 8.3,
    "genre": ["Blonde", "Outdoor"], "actor": [["Ann", None], ["Bo", "http://x/p.jpg"]], "collection": ["Studio"],
}
LISTED = CurrentState("7", title="Real Title", title_sort="Real Title", studio="Studio", summary="About it.",
                      originally_available_at="2021-06-01", rating=8.3, genres=("blonde",),
                      actors=(Actor("Ann"), Actor("Bo")), files=(FILE,), listing=True)
LEDGER = LedgerView(HASH, WRITTEN, "7")
FOUND = MatchResult(MatchKind.EXACT, "7", FILE, (FILE,))
NOT_FOUND = MatchResult(MatchKind.NOT_FOUND, paths_tried=(FILE, "/media/stash/other/b.mp4"))
AMBIGUOUS = MatchResult(MatchKind.NOT_FOUND, paths_tried=(FILE,),
                        candidates=("/a/real-scene.mp4 (item 3)", "/b/real-scene.mp4 (item 4)"))


def listed(**changes: Any) -> CurrentState:
    return replace(LISTED, **changes)


def ledger(**changes: Any) -> LedgerView:
    return replace(LEDGER, **changes)


CASES = [
    # (name, state hash, desired, ledger, match, listed item or None, preserve, expected verdict)
    ("in sync", HASH, DESIRED, LEDGER, FOUND, LISTED, False, Verdict(None)),
    ("no item holds the file", HASH, DESIRED, LEDGER, NOT_FOUND, None, False,
     Verdict(Gap.MISSING, True, paths_tried=NOT_FOUND.paths_tried)),
    ("same-named candidates only", HASH, DESIRED, LEDGER, AMBIGUOUS, None, False,
     Verdict(Gap.MISSING, True, paths_tried=(FILE,), candidates=AMBIGUOUS.candidates)),
    ("missing beats never synced", HASH, DESIRED, None, NOT_FOUND, None, False,
     Verdict(Gap.MISSING, True, paths_tried=NOT_FOUND.paths_tried)),
    ("index key without a listed item", HASH, DESIRED, LEDGER, FOUND, None, False,
     Verdict(Gap.MISSING, True, paths_tried=(FILE,))),
    ("no ledger row", HASH, DESIRED, None, FOUND, LISTED, False, Verdict(Gap.NEVER_SYNCED, True)),
    ("ledger marked lost, item back", HASH, DESIRED, ledger(lost=True), FOUND, LISTED, False,
     Verdict(Gap.NEVER_SYNCED, True)),
    ("file now under another key", HASH, DESIRED, ledger(plex_key="99"), FOUND, LISTED, False,
     Verdict(Gap.NEVER_SYNCED, True)),
    ("Stash changed", "h2", DESIRED, LEDGER, FOUND, LISTED, False, Verdict(Gap.STALE, True)),
    ("stale beats empty", "h2", DESIRED, LEDGER, FOUND, listed(summary=""), False, Verdict(Gap.STALE, True)),
    ("title back to the file name", HASH, DESIRED, LEDGER, FOUND, listed(title="Real-Scene"), False,
     Verdict(Gap.EMPTY, True, fields=("title",))),
    ("no title at all", HASH, DESIRED, LEDGER, FOUND, listed(title=""), False,
     Verdict(Gap.EMPTY, True, fields=("title",))),
    ("summary gone", HASH, DESIRED, LEDGER, FOUND, listed(summary=""), False,
     Verdict(Gap.EMPTY, True, fields=("summary",))),
    ("agent refresh: everything gone", HASH, DESIRED, LEDGER, FOUND,
     CurrentState("7", title="real-scene", files=(FILE,), listing=True), False,
     Verdict(Gap.EMPTY, True, fields=("title", "summary", "studio", "originallyAvailableAt", "genre", "actor"))),
    ("empty under preserve is kept", HASH, DESIRED, LEDGER, FOUND, listed(summary=""), True,
     Verdict(Gap.EMPTY, False, fields=("summary",))),
    ("a field we do not manage may be empty", HASH, replace(DESIRED, summary=None),
     ledger(written={k: v for k, v in WRITTEN.items() if k != "summary"}), FOUND, listed(summary=""), False,
     Verdict(None)),
    ("Stash's own title is the file name", HASH, replace(DESIRED, title="real-scene", title_sort="real-scene"),
     ledger(written={**WRITTEN, "title": "real-scene", "titleSort": "real-scene"}), FOUND,
     listed(title="real-scene", title_sort="real-scene"), False, Verdict(None)),
    ("title edited in Plex", HASH, DESIRED, LEDGER, FOUND, listed(title="My Title"), False,
     Verdict(Gap.DRIFTED, True, fields=("title",))),
    ("drift under preserve is kept", HASH, DESIRED, LEDGER, FOUND, listed(title="My Title"), True,
     Verdict(Gap.DRIFTED, False, fields=("title",))),
    ("rating changed in Plex", HASH, DESIRED, LEDGER, FOUND, listed(rating=4.0), False,
     Verdict(Gap.DRIFTED, True, fields=("userRating",))),
    ("rating as Plex prints it", HASH, DESIRED, LEDGER, FOUND, listed(rating=8.30001), False, Verdict(None)),
    ("sort title dropped", HASH, DESIRED, LEDGER, FOUND, listed(title_sort=""), False,
     Verdict(Gap.DRIFTED, True, fields=("titleSort",))),
    ("genre added in Plex", HASH, DESIRED, LEDGER, FOUND, listed(genres=("Blonde", "Mine")), False,
     Verdict(Gap.DRIFTED, True, fields=("genre",))),
    ("actor added in Plex", HASH, DESIRED, LEDGER, FOUND, listed(actors=(Actor("Ann"), Actor("Cy"))), False,
     Verdict(Gap.DRIFTED, True, fields=("actor",))),
    ("a cut-short listing is no drift", HASH, DESIRED, LEDGER, FOUND, listed(genres=("OUTDOOR",)), False,
     Verdict(None)),
    ("empty tagline both sides", HASH, DESIRED, LEDGER, FOUND, listed(tagline=""), False, Verdict(None)),
    ("tagline typed in Plex", HASH, DESIRED, LEDGER, FOUND, listed(tagline="ABC-1"), False,
     Verdict(Gap.DRIFTED, True, fields=("tagline",))),
]


@pytest.mark.parametrize(("name", "state", "desired", "view", "found", "item", "preserve", "expected"), CASES,
                         ids=[c[0] for c in CASES])
def test_classify(name: str, state: str, desired: DesiredState, view: LedgerView | None, found: MatchResult,
                  item: CurrentState | None, preserve: bool, expected: Verdict) -> None:
    snap = snapshot(item) if item is not None else None
    assert classify(state, desired, view, found, snap, preserve=preserve, files=(FILE,)) == expected


def test_every_gap_type_is_in_the_table_and_queued_unless_kept() -> None:
    seen = {c[-1].gap for c in CASES}
    assert seen == {None, *GAP_ORDER}
    assert {c[-1].queue for c in CASES if c[-1].gap in (Gap.EMPTY, Gap.DRIFTED)} == {True, False}
    assert all(c[-1].queue for c in CASES if c[-1].gap in (Gap.MISSING, Gap.NEVER_SYNCED, Gap.STALE))
    assert reason(Gap.DRIFTED) == "reconcile_drifted"


def test_digests_compare_like_the_diff() -> None:
    assert digest(None) == digest("") != digest(" ")
    assert digest(8.3) == digest(8.30001) != digest(8.4)
    assert digest(8) == digest(8.0)
    assert digest("Title") != digest("title")
    assert len(digest("x" * 10_000)) == 8


def test_placeholder_title_is_the_file_stem_in_any_case() -> None:
    assert title_is_placeholder("", ())
    assert title_is_placeholder("Real-Scene", ("/x/real-scene.mp4",))
    assert title_is_placeholder("  clip.final ", ("C:\\v\\clip.final.mkv",))
    assert title_is_placeholder("My Movie 2020", ("/x/My.Movie.2020.mkv",))
    assert title_is_placeholder("  ", ())
    assert not title_is_placeholder("Real Scenes", ("/x/real-scene.mp4",))
    assert not title_is_placeholder("Real Title", ("/x/real-scene.mp4",))


def test_placeholder_compares_exactly_the_letters_and_digits_of_every_script() -> None:
    """What a title is squashed to keeps each character `str.isalnum` keeps (after NFC and
    case folding), in every script, and nothing else."""
    for block in range(0, sys.maxunicode + 1, 0x1000):
        text = "A_ z".join(chr(code) for code in range(block, block + 0x1000))
        assert _squash(text) == "".join(c for c in nfc(text).casefold() if c.isalnum()), hex(block)


def test_snapshot_is_small_and_drift_needs_only_it() -> None:
    item = listed(summary="long " * 2000)
    snap = snapshot(item)
    assert len(snap.scalars) == 7 * 8 and "long" not in repr(snap)
    assert drifted_fields({**WRITTEN, "summary": "long " * 2000}, snap) == ()
    assert drifted_fields(WRITTEN, snap) == ("summary",)


LISTING_XML = """<MediaContainer size="1" totalSize="1">
<Video ratingKey="7" key="/library/metadata/7" title="Real Title" titleSort="Real Title" studio="Studio"
 summary="Line one&#10;line two" userRating="8.3" originallyAvailableAt="2021-06-01" thumb="/t">
<Media duration="1000"><Part file="/media/stash/studio/real-scene.mp4" size="10" duration="1000"/></Media>
<Genre tag="Blonde"/><Collection tag="Studio"/><Role tag="Ann"/><Role tag="Bo"/>
</Video></MediaContainer>"""


def test_listed_item_reads_a_listing_element() -> None:
    (video,) = [v for v in ET.fromstring(LISTING_XML) if v.tag == "Video"]
    item = xmlread.listed_state(video)
    assert item == CurrentState("7", title="Real Title", title_sort="Real Title", studio="Studio",
                                summary="Line one\nline two", originally_available_at="2021-06-01", rating=8.3,
                                genres=("Blonde",), actors=(Actor("Ann"), Actor("Bo")), collections=("Studio",),
                                thumb="/t", files=(FILE,), primary_file=FILE, listing=True)


def test_report_counts_every_gap_and_lists_paths_tried() -> None:
    report = ReconcileReport("reconcile_all", scenes=5)
    report.add(1, Verdict(Gap.MISSING, True, paths_tried=(FILE,)))
    report.add(2, Verdict(Gap.DRIFTED, False, fields=("title",)))
    report.add(3, Verdict(None))
    data = report.to_dict()
    assert data["gaps"] == {"missing": 1, "never_synced": 0, "stale": 0, "empty": 0, "drifted": 1}
    assert data["kept"] == {"drifted": 1} and data["in_sync"] == 3
    assert data["examples"]["missing"] == [{"scene_id": 1, "paths_tried": [FILE]}]
    lines = report.lines()
    assert len(lines) == len(GAP_ORDER) + 1
    assert lines[0] == f"Stash2Plex reconcile: 1 missing in Plex: scene 1 (tried {FILE})."
    assert "1 kept (preserve_plex_edits is on)" in lines[4] and "scene 2 (title)" in lines[4]
