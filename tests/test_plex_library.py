"""The emulated Plex library's rules, without HTTP: edits, tag semantics, locks, scans, XML."""

from __future__ import annotations

import pytest

from emulators.plex_library import (
    EditError,
    PlexLibrary,
    UnknownItem,
    agent_refresh,
    apply_edit,
    parse_edit,
)

NOW = 1_700_000_000


def library(**kwargs) -> PlexLibrary:
    return PlexLibrary(now=NOW, **kwargs)


def test_indexed_tags_replace_the_whole_list():
    lib = library()
    key = lib.add_item("/media/stash/a.mp4", now=NOW, genres=["A", "B", "C"])
    lib.edit(1, [key], {"type": "1", "genre[0].tag.tag": "D", "genre.locked": "1"}, NOW + 1)
    assert lib.item(key).tag_names("genre") == ["D"]
    assert lib.item(key).is_locked("genre")


def test_removal_takes_individually_quoted_names_and_ignores_case():
    lib = library()
    key = lib.add_item("/media/stash/a.mp4", now=NOW, genres=["A", "x y", "a,b", "keep"])
    # what the server sees after one decode of plexapi's `A%2Cx%2520y%2Ca%252Cb`
    lib.edit(1, [key], {"type": "1", "genre[].tag.tag-": "a,x%20y,a%2Cb"}, NOW)
    assert lib.item(key).tag_names("genres") == ["keep"]


def test_index_order_not_parameter_order_decides_and_duplicates_collapse():
    plan = parse_edit({"genre[1].tag.tag": "Second", "genre[0].tag.tag": "First",
                       "genre[2].tag.tag": "first"})
    lib = library()
    key = lib.add_item("/media/stash/a.mp4", now=NOW)
    apply_edit(lib.item(key), plan, NOW)
    assert lib.item(key).tag_names("Genre") == ["First", "Second"]


@pytest.mark.parametrize("params", [
    {"originallyAvailableAt.value": "2024-13-01"},
    {"originallyAvailableAt.value": "2024"},
    {"year.value": "twenty"},
    {"bogus.value": "x"},
    {"title.locked": "yes"},
    {"title.value": ""},
    {"genre[0].tagging.text": "no tag name"},
    {"planet[0].tag.tag": "Mars"},
    {"genre[0].tag.tag-": "A"},
    {"something": "1"},
])
def test_malformed_edits_are_refused(params):
    with pytest.raises(EditError):
        parse_edit(params)


def test_a_refused_edit_changes_nothing_on_any_item():
    lib = library()
    a = lib.add_item("/media/stash/a.mp4", now=NOW, title="A", genres=["G"])
    b = lib.add_item("/media/stash/b.mp4", now=NOW, title="B")
    before = [(lib.item(k).fields.copy(), dict(lib.item(k).tags), set(lib.item(k).locks)) for k in (a, b)]
    with pytest.raises(EditError):
        lib.edit(1, [a, b], {"type": "1", "title.value": "Changed", "genre[0].tag.tag": "New",
                             "originallyAvailableAt.value": "not-a-date"}, NOW + 5)
    after = [(lib.item(k).fields, lib.item(k).tags, lib.item(k).locks) for k in (a, b)]
    assert after == before


def test_edit_of_unknown_item_or_wrong_type_is_refused():
    lib = library()
    key = lib.add_item("/media/stash/a.mp4", now=NOW)
    with pytest.raises(UnknownItem):
        lib.edit(1, [key, 999], {"type": "1", "title.value": "x"}, NOW)
    with pytest.raises(EditError):
        lib.edit(1, [key], {"type": "2", "title.value": "x"}, NOW)
    assert lib.item(key).title == "a"


def test_a_value_sets_year_and_empty_value_clears():
    lib = library()
    key = lib.add_item("/media/stash/a.mp4", now=NOW, summary="old")
    lib.edit(1, [key], {"type": "1", "originallyAvailableAt.value": "2021-05-06",
                        "originallyAvailableAt.locked": "1", "summary.value": "", "summary.locked": "0"}, NOW)
    item = lib.item(key)
    assert item.fields["year"] == 2021
    assert "summary" not in item.fields
    assert item.is_locked("originallyAvailableAt") and not item.is_locked("summary")


def test_agent_refresh_resets_unlocked_and_keeps_locked_and_labels():
    lib = library()
    key = lib.add_item("/media/stash/dir/file name.mp4", now=NOW, title="Mine", summary="S", studio="X",
                       genres=["G"], actors=["P"], labels=["L"], locked=["studio", "actor"])
    item = lib.item(key)
    lib.upload(key, "thumb", b"poster", None, NOW)
    agent_refresh(item, NOW + 1)
    assert item.title == "file name"
    assert "summary" not in item.fields
    assert item.fields["studio"] == "X"
    assert item.tag_names("genre") == [] and item.tag_names("actor") == ["P"]
    assert item.tag_names("label") == ["L"]
    assert item.poster.provider == "agent"


def test_locked_poster_survives_refresh():
    lib = library()
    key = lib.add_item("/media/stash/a.mp4", now=NOW)
    lib.upload(key, "thumb", b"poster", None, NOW)
    lib.edit(1, [key], {"type": "1", "thumb.locked": "1"}, NOW)
    lib.refresh(key, NOW + 1)
    assert lib.item(key).poster.data == b"poster"


def test_uploads_get_distinct_stamps_and_can_be_selected_back():
    lib = library()
    key = lib.add_item("/media/stash/a.mp4", now=NOW)
    lib.upload(key, "thumb", b"one", None, NOW)
    lib.upload(key, "thumb", b"two", None, NOW)
    item = lib.item(key)
    stamps = [image.stamp for image in item.posters]
    assert len(set(stamps)) == 3
    assert item.poster.data == b"two"
    lib.select(key, "thumb", item.posters[1].resource_key, NOW)
    assert item.poster.data == b"one"
    with pytest.raises(EditError):
        lib.select(key, "thumb", "upload://nope", NOW)


def test_scan_of_a_folder_takes_only_that_folder():
    lib = library()
    lib.add_pending("/media/stash/new/a.mp4")
    lib.add_pending("/media/stash/newer/b.mp4")
    lib.add_pending("/media/stash/new/sub/c.mp4")
    keys = lib.scan(1, "/media/stash/new", NOW)
    assert sorted(lib.item(k).file for k in keys) == ["/media/stash/new/a.mp4", "/media/stash/new/sub/c.mp4"]
    assert lib.item_by_file("/media/stash/newer/b.mp4") is None
    lib.scan(1, None, NOW)
    assert lib.item_by_file("/media/stash/newer/b.mp4") is not None
    assert lib.pending == {}


def test_files_outside_every_section_or_twice_are_refused():
    lib = library()
    with pytest.raises(ValueError):
        lib.add_item("/data/stash/a.mp4", now=NOW)
    lib.add_item("/media/stash/a.mp4", now=NOW, files=["/media/stash/a-1080.mp4"])
    with pytest.raises(ValueError):
        lib.add_item("/media/stash/a-1080.mp4", now=NOW)
    with pytest.raises(TypeError):
        lib.add_item("/media/stash/b.mp4", now=NOW, colour="red")
    assert lib.item_by_file("/media/stash/a-1080.mp4").files == ["/media/stash/a.mp4", "/media/stash/a-1080.mp4"]


def test_listing_is_sorted_by_title_filtered_and_sliced():
    lib = library()
    for title, path in (("b", "/media/stash/X/1.mp4"), ("A", "/media/stash/y/2.mp4"), ("c", "/media/stash/x/3.mp4")):
        lib.add_item(path, now=NOW, title=title)
    page, total = lib.listing(1, 1, 1)
    assert ([i.title for i in page], total) == (["b"], 3)
    page, total = lib.listing(1, 0, None, file="/X/")
    assert ([i.title for i in page], total) == (["b", "c"], 2)
    assert lib.listing(1, 0, None, title="B")[1] == 1
    assert lib.listing(1, 0, None, type="2") == ([], 0)
    key = lib.by_file["/media/stash/x/3.mp4"]
    lib.edit(1, [key], {"type": "1", "title.value": "0 first"}, NOW)
    assert lib.listing(1, 0, 1)[0][0].rating_key == key


def test_listing_element_is_truncated_and_full_element_is_not():
    lib = library(listing_limits={"genre": 1})
    key = lib.add_item("/media/stash/a.mp4", now=NOW, genres=["G1", "G2"], producers=["P"],
                       actors=[("Person", "Lead", "http://img/p.jpg")], locked=["title"])
    item = lib.item(key)
    short = lib.item_element(item, full=False)
    full = lib.item_element(item, full=True)
    assert [g.get("tag") for g in short.findall("Genre")] == ["G1"]
    assert short.findall("Producer") == [] and short.findall("Field") == []
    assert "summary" not in short.attrib and "summary" not in full.attrib
    assert [g.get("tag") for g in full.findall("Genre")] == ["G1", "G2"]
    role = full.find("Role")
    assert (role.get("tag"), role.get("role"), role.get("thumb")) == ("Person", "Lead", "http://img/p.jpg")
    assert role.get("filter") == f"actor={role.get('id')}"
    assert [f.get("name") for f in full.findall("Field")] == ["title"]


def test_tag_ids_are_shared_across_items_and_thumbs_belong_to_the_person():
    lib = library()
    a = lib.add_item("/media/stash/a.mp4", now=NOW, genres=["G"], actors=["P"])
    b = lib.add_item("/media/stash/b.mp4", now=NOW, genres=["G"])
    lib.edit(1, [b], {"type": "1", "actor[0].tag.tag": "P", "actor[0].tag.thumb": "http://t/p.jpg",
                      "actor[0].tagging.text": "Role"}, NOW)
    ga = lib.item_element(lib.item(a), full=True).find("Genre").get("id")
    gb = lib.item_element(lib.item(b), full=True).find("Genre").get("id")
    assert ga == gb
    assert lib.item_element(lib.item(a), full=True).find("Role").get("thumb") == "http://t/p.jpg"
    assert lib.item(b).roles() == {"P": "Role"}
