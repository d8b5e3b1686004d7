"""plex.desired: the Plex state a Stash scene asks for, as tables over scenes and toggles."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from base.settings import load_settings
from plex.desired import (
    ELLIPSIS,
    SUMMARY_MAX,
    TITLE_MAX,
    Actor,
    _cleaned,
    already_clean,
    clean_text,
    complete_date,
    desired_state,
    encoded_size,
    photo_for_plex,
    rating_from,
    still_image_url,
    unique_names,
)
from stash.records import Performer, Scene, SceneFile, Studio

COVER = "http://stash:9999/scene/7/screenshot?t=1700000000"


def settings(**raw: object):
    return load_settings(raw, warn=lambda message: None)


def scene(**fields: object) -> Scene:
    base: dict[str, object] = dict(
        id=7, title="A Title", code="ABC-1", details="Line one\nLine two", date="2021-06",
        rating100=83, files=(SceneFile("/data/stash/a.mp4", 10, 5.0),),
        studio=Studio("1", "Studio X"), performers=(Performer("1", "Ann", "http://stash/p/1/image"),),
        tags=("Tag A", "tag a", "Tag B"), screenshot_url=COVER,
    )
    base.update(fields)
    return Scene(**base)  # type: ignore[arg-type]


def test_fully_tagged_scene() -> None:
    state = desired_state(scene(), settings())
    assert state.title == state.title_sort == "A Title"
    assert state.studio == "Studio X"
    assert state.summary == "Line one\nLine two"
    assert state.tagline == "ABC-1"
    assert state.originally_available_at == "2021-06-01"
    assert state.rating == 8.3
    assert state.genres == ("Tag A", "Tag B")  # case duplicates folded, first spelling kept
    assert state.actors == (Actor("Ann", "http://stash/p/1/image"),)
    assert state.collections == ("Studio X",)
    assert state.poster_url == state.art_url == COVER


@pytest.mark.parametrize(("toggle", "attrs"), [
    ("sync_title", ("title", "title_sort")),
    ("sync_studio", ("studio",)),
    ("sync_summary", ("summary",)),
    ("sync_tagline", ("tagline",)),
    ("sync_date", ("originally_available_at",)),
    ("sync_performers", ("actors",)),
    ("sync_tags", ("genres",)),
    ("sync_poster", ("poster_url",)),
    ("sync_background", ("art_url",)),
    ("sync_collection", ("collections",)),
])
def test_each_toggle_unmanages_only_its_fields(toggle: str, attrs: tuple[str, ...]) -> None:
    full = desired_state(scene(), settings())
    off = desired_state(scene(), settings(**{toggle: False}))
    for name in vars(full):
        if name in attrs:
            assert getattr(off, name) is None, name
        else:
            assert getattr(off, name) == getattr(full, name), name


def test_master_switch_unmanages_everything() -> None:
    state = desired_state(scene(), settings(sync_master=False))
    assert all(value is None for value in vars(state).values())


def test_title_is_never_blanked_but_other_fields_clear() -> None:
    state = desired_state(scene(title="", details=None, code=None, date=None, studio=None, tags=(),
                                performers=(Performer("1", "Bob"),)), settings())
    assert state.title is None and state.title_sort is None
    assert state.summary == "" and state.tagline == "" and state.originally_available_at == ""
    assert state.studio == "" and state.collections == () and state.genres == ()
    assert state.actors == (Actor("Bob", None),)


def test_scene_without_metadata_clears_nothing() -> None:
    bare = scene(title=None, details=None, date=None, studio=None, performers=(), tags=(), code=None,
                 rating100=None)
    assert not bare.has_metadata
    state = desired_state(bare, settings())
    assert state.summary is None and state.genres is None and state.studio is None
    assert state.collections is None and state.actors is None
    assert state.poster_url == COVER  # a value it has is still managed


def test_max_tags_binds() -> None:
    tags = tuple(f"T{i}" for i in range(10))
    assert desired_state(scene(tags=tags), settings(max_tags=3)).genres == ("T0", "T1", "T2")
    assert desired_state(scene(tags=tags), settings(max_tags=0)).genres == tags


def test_video_urls_are_never_images() -> None:
    state = desired_state(scene(screenshot_url="http://stash/scene/7/stream.mp4"), settings())
    assert state.poster_url is None and state.art_url is None


@pytest.mark.parametrize(("url", "kept"), [
    ("http://s/scene/1/screenshot?t=5", True),
    ("http://s/performer/1/image", True),
    ("http://s/scene/1/preview", False),
    ("http://s/scene/1/stream", False),
    ("http://s/scene/1/stream.m3u8?x=1", False),
    ("http://s/a.webm", False),
    ("http://s/a.MP4", False),
    ("", False),
    (None, False),
])
def test_still_image_url(url: str | None, kept: bool) -> None:
    assert still_image_url(url) == (url if kept else None)


@pytest.mark.parametrize(("value", "expected"), [
    ("2021", "2021-01-01"), ("2021-06", "2021-06-01"), ("2021-06-15", "2021-06-15"),
    (" 2021-06-15 ", "2021-06-15"), ("2021-02-30", None), ("2021-13", None), ("21-x", None),
    ("2021-06-15-01", None), ("", None), (None, None), ("0000", None),
])
def test_complete_date(value: str | None, expected: str | None) -> None:
    assert complete_date(value) == expected


def test_unreal_date_is_left_alone_missing_date_clears() -> None:
    assert desired_state(scene(date="2021-02-30"), settings()).originally_available_at is None
    assert desired_state(scene(date=None), settings()).originally_available_at == ""


@pytest.mark.parametrize(("rating100", "rating"), [
    (83, 8.3), (100, 10.0), (1, 0.1), (20, 2.0), (0, None), (None, None), (101, None), (-5, None),
])
def test_rating_from(rating100: int | None, rating: float | None) -> None:
    assert rating_from(rating100) == rating


@pytest.mark.parametrize(("text", "limit", "multiline", "expected"), [
    ("  a \t b\n c  ", TITLE_MAX, False, "a b c"),
    ("a\x00b\x07c\x1bd", TITLE_MAX, False, "abcd"),
    ("x\r\ny\rz", SUMMARY_MAX, True, "x\ny\nz"),
    ("keep\ttab  \nline", SUMMARY_MAX, True, "keep\ttab\nline"),
    ("bad\ud800surrogate", TITLE_MAX, False, "badsurrogate"),
    ("e\u0301", TITLE_MAX, False, "\u00e9"),  # NFC
    (None, TITLE_MAX, False, ""),
    ("", TITLE_MAX, False, ""),
])
def test_clean_text(text: str | None, limit: int, multiline: bool, expected: str) -> None:
    assert clean_text(text, limit, multiline) == expected


def test_clean_text_caps_length_at_a_word() -> None:
    long = "word " * 200
    out = clean_text(long, 100)
    assert len(out) <= 100 and out.endswith(ELLIPSIS) and " " not in out[-2:]
    no_spaces = "x" * 300
    assert len(clean_text(no_spaces)) == TITLE_MAX
    assert len(clean_text("y" * 20000, SUMMARY_MAX, True)) == SUMMARY_MAX


#: Words of any characters but controls and separators, joined by one space or by anything:
#: text that is often clean already, and often not.
WORDS = st.lists(st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zs", "Zl", "Zp")), min_size=1), min_size=1)
TEXTS = st.one_of(WORDS.map(" ".join), st.tuples(WORDS, st.text()).map(lambda p: p[1].join(p[0])), st.text())


@given(TEXTS, st.booleans())
@example("e\u0301", False)  # not NFC
@example("a  b", False)
@example(" a", True)
@example("a ", True)
@example("a\tb", True)
@example("a\xa0b", False)
@example("a\u2028b", False)
@example("a\x85b", True)
def test_text_taken_as_already_clean_is_what_cleaning_would_leave(text: str, multiline: bool) -> None:
    cleaned = _cleaned(text, multiline).strip()
    assert already_clean(text) <= (cleaned == text)
    if len(cleaned) <= SUMMARY_MAX:
        assert clean_text(text, SUMMARY_MAX, multiline) == cleaned


@given(TEXTS)
def test_encoded_size_is_the_length_of_the_percent_encoding(text: str) -> None:
    assert encoded_size(text) == len(quote(text, safe=""))


def test_encoded_size_refuses_a_lone_surrogate_as_quote_does() -> None:
    with pytest.raises(UnicodeEncodeError):
        quote("a\ud800", safe="")
    with pytest.raises(UnicodeEncodeError):
        encoded_size("a\ud800")


def test_unique_names_cleans_and_drops_empty() -> None:
    assert unique_names(("  A ", "a", "", "\x00", "B\nC")) == ("A", "B C")


@pytest.mark.parametrize(("url", "plex_url", "sent"), [
    ("http://stash.lan:9999/performer/1/image?t=5", "http://plex.lan:32400", True),
    ("https://stash.example.org/performer/1/image", "http://10.0.0.2:32400", True),
    ("http://127.0.0.1:9999/performer/1/image?t=5", "http://127.0.0.1:32400", True),  # one machine
    ("http://localhost:9999/performer/1/image", "http://[::1]:32400", True),
    ("http://127.0.0.1:9999/performer/1/image?t=5", "http://plex.lan:32400", False),  # Plex's own loopback
    ("http://[::1]:9999/performer/1/image", "http://10.0.0.2:32400", False),
    ("http://0.0.0.0:9999/performer/1/image", "http://10.0.0.2:32400", False),
    ("http://stash.lan:9999/performer/1/image?apikey=secret", "http://plex.lan:32400", False),
    ("http://user:pw@stash.lan:9999/performer/1/image", "http://plex.lan:32400", False),
    ("ftp://stash.lan/performer/1/image", "http://plex.lan:32400", False),
    ("http://stash.lan:9999/scene/1/stream.mp4", "http://plex.lan:32400", False),  # not a still
    (None, "http://plex.lan:32400", False),
])
def test_photo_for_plex(url: str | None, plex_url: str, sent: bool) -> None:
    assert photo_for_plex(url, plex_url) == (url if sent else None)


def test_unreachable_photo_keeps_the_performer() -> None:
    state = desired_state(scene(performers=(Performer("1", "Ann", "http://127.0.0.1:9999/performer/1/image"),)),
                          settings(plex_url="http://plex.lan:32400"))
    assert state.actors == (Actor("Ann", None),)
