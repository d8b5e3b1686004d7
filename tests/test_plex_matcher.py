"""plex.matcher: which Plex item a scene is, as a table over (scene files, index, strict)."""

from __future__ import annotations

import pytest

from plex.matcher import IndexEntry, LibraryIndex, MatchKind, build_index, match, merge_index
from plex.pathmap import to_plex
from stash.records import SceneFile

MAP = (("/data/stash", "/media/stash"),)

LIBRARY = build_index([
    IndexEntry("/media/stash/a/scene.mp4", "1", size=100, duration=60.0),
    IndexEntry("/media/stash/b/scene.mp4", "2", size=200, duration=120.0),  # same name, other folder
    IndexEntry("/media/stash/c/unique.mp4", "3", size=300, duration=30.0),
    IndexEntry("/media/stash/d/two-parts-1.mp4", "4", size=10),
    IndexEntry("/media/stash/d/two-parts-2.mp4", "4", size=20),  # a second part of item 4
    IndexEntry("/elsewhere/x/nosize.mp4", "5"),
    IndexEntry("/elsewhere/y/nosize.mp4", "6"),
    IndexEntry("D:\\Plex\\Win.mp4", "7", size=70),
])


def f(path: str, size: int = 0, duration: float = 0.0) -> SceneFile:
    return SceneFile(path, size, duration)


CASES = [
    # id, files, strict, kind, key
    ("exact", [f("/data/stash/a/scene.mp4", 100)], True, MatchKind.EXACT, "1"),
    ("exact other folder same name", [f("/data/stash/b/scene.mp4", 999)], True, MatchKind.EXACT, "2"),
    ("exact wins over a wrong size", [f("/data/stash/a/scene.mp4", 5)], True, MatchKind.EXACT, "1"),
    ("second file matches", [f("/data/stash/new/nope.mp4"), f("/data/stash/c/unique.mp4")], True,
     MatchKind.EXACT, "3"),
    ("first file wins", [f("/data/stash/b/scene.mp4"), f("/data/stash/a/scene.mp4")], True,
     MatchKind.EXACT, "2"),
    ("second part of a multi-part item", [f("/data/stash/d/two-parts-2.mp4")], True, MatchKind.EXACT, "4"),
    ("fallback unique name", [f("/wrong/map/unique.mp4", 300)], True, MatchKind.FILE_NAME, "3"),
    ("fallback unique name, size unknown", [f("/wrong/map/unique.mp4")], True, MatchKind.FILE_NAME, "3"),
    ("fallback name, size disagrees", [f("/wrong/map/unique.mp4", 301)], True, MatchKind.NOT_FOUND, None),
    ("fallback tiebreak by size", [f("/wrong/scene.mp4", 200)], True, MatchKind.FILE_NAME, "2"),
    ("fallback tiebreak by duration", [f("/wrong/scene.mp4", 0, 60.9)], True, MatchKind.FILE_NAME, "1"),
    ("duration outside tolerance", [f("/wrong/scene.mp4", 0, 90.0)], True, MatchKind.NOT_FOUND, None),
    ("ambiguous strict", [f("/wrong/scene.mp4")], True, MatchKind.AMBIGUOUS, None),
    ("ambiguous lenient is not found", [f("/wrong/scene.mp4")], False, MatchKind.NOT_FOUND, None),
    ("ambiguous without sizes", [f("/q/nosize.mp4", 5)], True, MatchKind.AMBIGUOUS, None),
    ("fallback name case-insensitive", [f("/x/UNIQUE.MP4", 300)], True, MatchKind.FILE_NAME, "3"),
    ("nothing", [f("/data/stash/zzz.mp4")], True, MatchKind.NOT_FOUND, None),
    ("no files", [], True, MatchKind.NOT_FOUND, None),
    ("windows plex path via map", [f("/data/win/win.mp4")], True, MatchKind.EXACT, "7"),
]


@pytest.mark.parametrize(("files", "strict", "kind", "key"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_match_table(files: list[SceneFile], strict: bool, kind: MatchKind, key: str | None) -> None:
    mapping = MAP + (("/data/win", "d:\\plex"),)
    result = match(files, LIBRARY, mapping, strict)
    assert result.kind is kind
    assert result.rating_key == key
    assert result.found is (key is not None)
    assert result.paths_tried == tuple(to_plex(x.path, mapping) for x in files)


def test_ambiguous_lists_every_candidate() -> None:
    result = match([f("/wrong/scene.mp4")], LIBRARY, MAP, strict=True)
    assert result.candidates == ("/media/stash/a/scene.mp4 (item 1)", "/media/stash/b/scene.mp4 (item 2)")


def test_two_files_of_one_item_are_one_candidate() -> None:
    index = build_index([IndexEntry("/p/a/x.mp4", "9"), IndexEntry("/p/b/x.mp4", "9")])
    assert match([f("/s/x.mp4")], index, (), True).rating_key == "9"


def test_empty_index_is_not_found() -> None:
    assert match([f("/data/stash/a.mp4")], LibraryIndex(), MAP, True).kind is MatchKind.NOT_FOUND


def test_merge_index_replaces_moved_paths_and_adds_new() -> None:
    index = build_index([IndexEntry("/m/a.mp4", "1"), IndexEntry("/m/b.mp4", "2")])
    merged = merge_index(index, [IndexEntry("/m/a.mp4", "10"), IndexEntry("/m/c.mp4", "3")])
    assert dict(merged.by_path) == {"/m/a.mp4": "10", "/m/b.mp4": "2", "/m/c.mp4": "3"}
    assert [e.rating_key for e in merged.by_name["a.mp4"]] == ["10"]
