"""The emulated Plex's collections, driven through the real plexapi over loopback: what a
plugin that keeps Stash groups and studios as Plex collections will send, and what plexapi's
own test suite reads back from a real server."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from emulators.plex_server import PlexEmulator


@pytest.fixture
def plex() -> Iterator[PlexEmulator]:
    with PlexEmulator() as emulator:
        yield emulator


def server(plex: PlexEmulator) -> Any:
    os.environ["PLEXAPI_PLEXAPI_AUTORELOAD"] = "false"
    from plexapi.server import PlexServer

    return PlexServer(plex.url, plex.token)


def three(plex: PlexEmulator) -> list[int]:
    return [plex.add_item(f"/media/stash/{name}.mp4", title=name, originallyAvailableAt=date)
            for name, date in (("Cherry", "2021-05-01"), ("Apple", "2023-01-01"), ("Banana", "2019-02-03"))]


def titles(collection: Any) -> list[str]:
    return [item.title for item in collection.reload().items()]  # items() is cached until reload


def test_create_lists_and_reads_a_collection_as_plexapi_expects(plex: PlexEmulator) -> None:
    keys = three(plex)
    plex_server = server(plex)
    section = plex_server.library.section("Stash")
    movies = [plex_server.fetchItem(k) for k in keys[:2]]
    created = plex_server.createCollection("Studio X", section=section, items=movies)
    assert plex.count("POST", "/library/collections") == 1
    (post,) = [r for r in plex.requests if r.method == "POST"]
    assert post.query["uri"] == f"server://{plex.machine_identifier}/com.plexapp.plugins.library/library/metadata/{keys[0]},{keys[1]}"
    assert (post.query["type"], post.query["smart"], post.query["sectionId"]) == ("1", "0", "1")

    (listed,) = section.collections()
    assert listed.ratingKey == created.ratingKey
    assert section.collection("studio x").ratingKey == created.ratingKey
    assert plex.count("GET", "/library/sections/1/all") and any(
        r.query.get("type") == "18" for r in plex.requests if r.path == "/library/sections/1/all")
    fetched = plex_server.fetchItem(created.ratingKey)
    assert type(fetched).__name__ == "Collection"
    assert fetched.key == f"/library/collections/{created.ratingKey}"
    assert fetched.guid.startswith("collection://")
    assert (fetched.type, fetched.subtype, fetched.smart, fetched.childCount) == ("collection", "movie", False, 2)
    assert fetched.summary == "" and fetched.titleSort == "Studio X"
    assert fetched.thumb.startswith(f"/library/collections/{created.ratingKey}/composite")
    assert (fetched.minYear, fetched.maxYear) == (2021, 2023)
    assert fetched.collectionSort == 0 and fetched.collectionMode == -1
    assert titles(fetched) == ["Cherry", "Apple"]  # release date order by default
    for key in keys[:2]:
        assert [c.tag for c in plex_server.fetchItem(key).collections] == ["Studio X"]
    assert plex_server.fetchItem(keys[2]).collections == []


def test_a_second_collection_of_the_same_name_is_the_same_collection(plex: PlexEmulator) -> None:
    keys = three(plex)
    first = plex.add_collection("Studio X", keys[:1])
    plex_server = server(plex)
    again = plex_server.createCollection("Studio X", section="Stash", items=[plex_server.fetchItem(keys[1])])
    assert again.ratingKey == first
    assert plex.collection_children(first) == [keys[0], keys[1]]


def test_add_remove_and_item_tags_stay_consistent_both_ways(plex: PlexEmulator) -> None:
    keys = three(plex)
    plex_server = server(plex)
    collection = plex_server.fetchItem(plex.add_collection("Group A", keys[:1]))
    collection.addItems([plex_server.fetchItem(keys[2])])
    assert sorted(plex.collection_children(collection.ratingKey)) == sorted([keys[0], keys[2]])
    assert plex.item(keys[2]).tag_names("collection") == ["Group A"]

    plex_server.fetchItem(keys[1]).addCollection("Group A")
    collection.reload()
    assert collection.childCount == 3

    collection.removeItems([plex_server.fetchItem(keys[0])])
    assert plex.item(keys[0]).tag_names("collection") == []
    plex_server.fetchItem(keys[2]).removeCollection("Group A")
    plex_server.fetchItem(keys[1]).removeCollection("group a")
    collection.reload()
    assert collection.childCount == 0 and collection.items() == []
    assert [c.title for c in plex_server.library.section("Stash").collections()] == ["Group A"]


def test_an_item_edit_naming_a_new_collection_creates_it(plex: PlexEmulator) -> None:
    keys = three(plex)
    plex_server = server(plex)
    plex_server.fetchItem(keys[0]).addCollection(["Net 1", "Net 2"])
    section = plex_server.library.section("Stash")
    assert sorted(c.title for c in section.collections()) == ["Net 1", "Net 2"]
    net1 = plex.collection_by_title("Net 1")
    assert net1 is not None and plex.collection_children(net1.rating_key) == [keys[0]]
    assert plex.add_item("/media/stash/d.mp4", collections=["Net 3"]) and plex.collection_by_title("Net 3")


def test_custom_order_and_moves(plex: PlexEmulator) -> None:
    keys = three(plex)
    plex_server = server(plex)
    collection = plex_server.fetchItem(plex.add_collection("Series", keys))
    collection.sortUpdate("custom")
    put = [r for r in plex.requests if r.path.endswith("/prefs")]
    assert [(r.path, r.query) for r in put] == [
        (f"/library/collections/{collection.ratingKey}/prefs", {"collectionSort": "2"})]
    assert collection.reload().collectionSort == 2
    assert titles(collection) == ["Cherry", "Apple", "Banana"]  # the order they joined
    items = collection.items()
    collection.moveItem(items[2])
    assert titles(collection) == ["Banana", "Cherry", "Apple"]
    collection.moveItem(items[2], after=items[1])
    assert titles(collection) == ["Cherry", "Apple", "Banana"]
    collection.sortUpdate("alpha")
    assert titles(collection) == ["Apple", "Banana", "Cherry"]
    collection.moveItem(items[1])  # a move puts the collection back in its custom order
    assert collection.reload().collectionSort == 2
    assert titles(collection) == ["Apple", "Cherry", "Banana"]


def test_a_new_collection_lists_its_items_by_release_date_oldest_first(plex: PlexEmulator) -> None:
    """Plex's default collection order (collectionSort 0, plexapi's `test_Collection_attrs`):
    the order a group collection relies on when its scenes' dates follow their numbers."""
    keys = three(plex)
    plex_server = server(plex)
    for key in keys:
        plex_server.fetchItem(key).addCollection("Dated")
    (collection,) = plex_server.library.section("Stash").collections()
    assert collection.collectionSort == 0
    assert titles(collection) == ["Banana", "Cherry", "Apple"]  # 2019, 2021, 2023
    plex_server.fetchItem(keys[1]).editOriginallyAvailable("2018-01-01")
    assert titles(collection) == ["Apple", "Banana", "Cherry"]


def test_a_collection_poster_upload_is_locked_without_an_edit(plex: PlexEmulator) -> None:
    keys = three(plex)
    plex_server = server(plex)
    collection = plex_server.fetchItem(plex.add_collection("Locked", keys[:1]))
    assert not collection.isLocked("thumb")
    collection.uploadPoster(filepath=b"\x89PNG\r\n\x1a\n-uploaded")
    assert collection.reload().isLocked("thumb")
    assert not [r for r in plex.requests if r.method == "PUT"]


def test_edits_of_a_collection_and_their_locks(plex: PlexEmulator) -> None:
    keys = three(plex)
    plex_server = server(plex)
    collection = plex_server.fetchItem(plex.add_collection("Old", keys[:2]))
    collection.editSummary("About it").editSortTitle("0 First")
    collection.editTitle("New")
    edits = [r for r in plex.requests if r.method == "PUT" and r.path == "/library/sections/1/all"]
    assert all(r.query["type"] == "18" and r.query["id"] == str(collection.ratingKey) for r in edits)
    collection.reload()
    assert (collection.title, collection.summary, collection.titleSort) == ("New", "About it", "0 First")
    assert {f.name for f in collection.fields if f.locked} == {"summary", "titleSort", "title"}
    assert [plex.item(k).tag_names("collection") for k in keys[:2]] == [["New"], ["New"]]
    collection.editSummary("", locked=False)
    assert collection.reload().summary == "" and not collection.isLocked("summary")
    collection.addLabel("Stash2Plex")
    assert [label.tag for label in collection.reload().labels] == ["Stash2Plex"]


def test_a_collection_poster_upload_is_served(plex: PlexEmulator) -> None:
    keys = three(plex)
    plex_server = server(plex)
    collection = plex_server.fetchItem(plex.add_collection("Poster", keys[:1]))
    image = b"\x89PNG\r\n\x1a\n-collection-poster"
    collection.uploadPoster(filepath=image)
    collection.reload()
    assert collection.thumb.startswith(f"/library/metadata/{collection.ratingKey}/thumb/")
    (poster,) = collection.posters()
    assert poster.selected
    assert plex_server._session.get(plex.url + collection.thumb,
                                    headers={"X-Plex-Token": plex.token}).content == image
    collection.lockPoster()
    assert collection.reload().isLocked("thumb")


def test_delete_removes_the_collection_and_its_tag(plex: PlexEmulator) -> None:
    keys = three(plex)
    plex_server = server(plex)
    gone = plex_server.fetchItem(plex.add_collection("Gone", keys[:2]))
    kept = plex.add_collection("Kept", keys[:1])
    gone.delete()
    assert plex.count("DELETE", f"/library/collections/{gone.ratingKey}") == 1
    assert [c.ratingKey for c in plex_server.library.section("Stash").collections()] == [kept]
    assert plex.item(keys[0]).tag_names("collection") == ["Kept"]
    plex_server.query(f"/library/metadata/{kept}", method=plex_server._session.delete)
    assert plex_server.library.section("Stash").collections() == []


def test_errors_as_plex_answers_them(plex: PlexEmulator) -> None:
    from plexapi.exceptions import BadRequest, NotFound

    keys = three(plex)
    plex_server = server(plex)
    coll = plex.add_collection("C", keys[:1])
    query, put, delete = plex_server.query, plex_server._session.put, plex_server._session.delete
    with pytest.raises(NotFound):
        plex_server.fetchItem(99999)
    with pytest.raises(NotFound):
        query(f"/library/collections/{coll}/items/{keys[1]}", method=delete)  # not a member
    with pytest.raises(NotFound):
        query(f"/library/collections/99999/items/{keys[0]}", method=delete)
    with pytest.raises(BadRequest):
        query(f"/library/collections/{coll}/prefs?collectionSort=7", method=put)
    with pytest.raises(BadRequest):
        query(f"/library/collections/{coll}/items/{keys[0]}/move?after={keys[1]}", method=put)
    with pytest.raises(BadRequest):
        query(f"/library/sections/1/all?type=18&id={coll}&genre%5B0%5D.tag.tag=x", method=put)
    with pytest.raises(BadRequest):
        query(f"/library/collections?type=1&title=X&smart=0&sectionId=1&uri=server://other/"
              f"com.plexapp.plugins.library/library/metadata/{keys[0]}", method=plex_server._session.post)
    with pytest.raises(BadRequest):
        query(f"/library/metadata/{keys[0]}", method=delete)  # deleting media is off
    assert plex.collection_children(coll) == [keys[0]]
    assert plex.item(keys[0]).title == "Cherry"


def test_collection_requests_are_counted_and_faults_apply(plex: PlexEmulator) -> None:
    from plexapi.exceptions import BadRequest

    keys = three(plex)
    plex_server = server(plex)
    collection = plex_server.fetchItem(plex.add_collection("C", keys[:1]))
    movie = plex_server.fetchItem(keys[1])
    plex.reset_log()
    plex.faults.error_burst(1, status=400)
    with pytest.raises(BadRequest):
        collection.addItems([movie])
    assert plex.collection_children(collection.ratingKey) == [keys[0]]
    collection.addItems([movie])
    assert plex.count("PUT", rating_key=collection.ratingKey) == 2
    assert plex.collection_children(collection.ratingKey) == [keys[0], keys[1]]


def test_section_collection_listings_page(plex: PlexEmulator) -> None:
    keys = three(plex)
    for n in range(5):
        plex.add_collection(f"C{n}", keys[:1])
    plex_server = server(plex)
    section = plex_server.library.section("Stash")
    assert [c.title for c in section.collections(container_size=2)] == [f"C{n}" for n in range(5)]
    page = plex_server.query("/library/sections/1/collections",
                             headers={"X-Plex-Container-Start": "1", "X-Plex-Container-Size": "2"})
    assert page.attrib["totalSize"] == "5" and [d.attrib["title"] for d in page] == ["C1", "C2"]
