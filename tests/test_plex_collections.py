"""plex.collections' flush through the real plexapi against the emulated Plex, with the real
queue tables: what it sends, and what it does when Plex is down or refuses."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from emulators.plex_server import PlexEmulator
from plex.collections import CollectionBatch, member_order
from plex.connection import PlexConnection
from sync_queue.collections import MAX_ATTEMPTS
from sync_queue.jobs import JobQueue
from sync_queue.ledger import Member

T0 = 1_700_000_000.0
PNG = b"\x89PNG\r\n\x1a\n" + b"group-front"
IMAGE = "http://stash.test/group/10/frontimage?t=1"


@pytest.fixture
def plex() -> Iterator[PlexEmulator]:
    with PlexEmulator() as emulator:
        yield emulator


def setup(plex: PlexEmulator, tmp_path: Path, titles: list[str]) -> tuple[CollectionBatch, JobQueue, list[int]]:
    """Three items tagged into the group's collection (as their item edits would), ledger rows
    saying so with scene numbers that reverse the item order, and our claim on it."""
    keys = [plex.add_item(f"/media/stash/{n}.mp4") for n in range(3)]
    with plex.lock:  # what each item's edit with `collection[i].tag.tag` does
        for key in keys:
            plex.library.edit(1, [key], {f"collection[{i}].tag.tag": t for i, t in enumerate(titles)}, now=int(T0))
            plex.collections.adopt([key], int(T0))
    queue = JobQueue(tmp_path / "db")
    for n, key in enumerate(keys):
        queue.ledger.put(n + 1, f"h{n}", str(key), None, None, {
            "plex_key": str(key), "section_id": "1", "written": {"collection": titles},
            "group_index": {"10": 3 - n}}, T0)
    queue.collections.claim("1", "group", "10", titles[0], {"summary": "About", "image_url": IMAGE,
                                                            "ordered": True}, T0)
    conn = PlexConnection(plex.url, plex.token, data_dir=tmp_path, sleep=lambda s: None)
    return CollectionBatch(conn, queue.collections, queue.ledger, lambda url: PNG, lock=True), queue, keys


def test_member_order_by_scene_index_then_unnumbered_by_scene_id() -> None:
    members = [Member(5, "50", {"1": None}), Member(3, "30", {"1": 2}), Member(4, "40", {"1": 1}),
               Member(2, "20", {}), Member(6, "40", {"1": 1})]
    assert member_order(members, "group", "1") == ["40", "30", "20", "50"]
    assert member_order(members, "studio", "1") == ["20", "30", "40", "50"]


def test_flush_writes_a_new_collection_once(plex: PlexEmulator, tmp_path: Path) -> None:
    batch, queue, keys = setup(plex, tmp_path, ["Series A"])
    result = batch.flush(T0)
    collection = plex.collection_by_title("Series A")
    assert (result.written, result.failed, result.stopped) == (1, 0, None)
    assert collection.fields["summary"] == "About" and collection.poster.data == PNG
    assert {"summary", "thumb"} <= collection.locks
    assert plex.collection_children(collection.rating_key) == list(reversed(keys))
    assert queue.collections.get("1", "group", "10").rating_key == str(collection.rating_key)
    plex.reset_log()
    assert batch.flush(T0 + 1).requests == 0  # nothing due: not even the listing
    queue.close()


def test_plex_down_leaves_the_collection_due_without_using_an_attempt(plex: PlexEmulator, tmp_path: Path) -> None:
    batch, queue, _keys = setup(plex, tmp_path, ["Series A"])
    plex.faults.down = True
    try:
        result = batch.flush(T0)
    finally:
        plex.faults.down = False
    assert result.stopped and result.failed == 0
    row = queue.collections.get("1", "group", "10")
    assert row.dirty and row.attempts == 0
    assert batch.flush(T0 + 1).written == 1 and not queue.collections.get("1", "group", "10").dirty
    queue.close()


def test_a_write_plex_refuses_is_tried_a_bounded_number_of_times(plex: PlexEmulator, tmp_path: Path) -> None:
    batch, queue, _keys = setup(plex, tmp_path, ["Series A"])
    batch.flush(T0)
    plex.add_collection("Taken")
    queue.collections.touch("1", "group", "10", T0 + 1, title="Taken")  # renaming onto a person's name
    counts = []
    for attempt in range(MAX_ATTEMPTS + 2):
        plex.reset_log()
        result = batch.flush(T0 + 2 + attempt)
        counts.append(len(plex.requests))
        assert result.failed == (1 if attempt < MAX_ATTEMPTS else 0)
    assert counts[-2:] == [0, 0]  # given up: no request at all until it changes again
    row = queue.collections.get("1", "group", "10")
    assert row.attempts == MAX_ATTEMPTS and row.last_error
    assert plex.collection_by_title("Series A") is not None
    queue.close()


def test_a_rename_plex_does_not_take_holds_the_scene_back_until_it_does(plex: PlexEmulator, tmp_path: Path) -> None:
    """The scene's edit would tag its item with the new name, making a second collection and
    leaving the others in the old one: while the rename fails, the scene waits for it."""
    from base.errors import TransientError
    from plex.collection_specs import CollectionSpec

    batch, queue, keys = setup(plex, tmp_path, ["Series A"])
    assert batch.flush(T0).written == 1
    rating_key = plex.collection_by_title("Series A").rating_key
    spec = CollectionSpec("group", "10", "Series B", summary="About", image_url=IMAGE, scene_index=3)
    plex.faults.error_burst(50, 503)
    with pytest.raises(TransientError, match="not renamed"):
        batch.note("1", [spec], ["Series A"], None, T0 + 1)
    assert plex.collection_by_title("Series B") is None
    plex.faults.clear_answers()
    batch.note("1", [spec], ["Series A"], None, T0 + 2)  # Plex answers: renamed first, in place
    renamed = plex.collection_by_title("Series B")
    assert renamed is not None and renamed.rating_key == rating_key
    assert plex.collection_by_title("Series A") is None
    queue.close()


def test_a_rename_lets_writes_in_flight_land_first_and_says_what_it_renamed(plex: PlexEmulator,
                                                                           tmp_path: Path) -> None:
    """The drain's writes in flight land before the rename goes out (`before_rename`), and the
    rename is returned, so items read before it are seen under the new name."""
    from plex.collection_specs import CollectionSpec
    from plex.records import CurrentState
    from plex.sync import PlexBatch

    batch, queue, keys = setup(plex, tmp_path, ["Series A"])
    assert batch.flush(T0).written == 1
    landed: list[int] = []
    batch.before_rename = lambda: landed.append(plex.count("PUT"))
    spec = CollectionSpec("group", "10", "Series B", summary="About", image_url=IMAGE, scene_index=3)
    unchanged = CollectionSpec("group", "10", "Series B", summary="About", image_url=IMAGE, scene_index=3)

    renames = batch.note("1", [spec], ["Series A", "Mine"], None, T0 + 1)
    assert renames == {"series a": "Series B"}
    assert len(landed) == 1 and plex.count("PUT") > landed[0]  # called before the rename's edit
    assert batch.note("1", [unchanged], ["Series B"], None, T0 + 2) == {}
    assert len(landed) == 1  # no rename, no wait

    read_before = PlexBatch({str(keys[1]): CurrentState(rating_key=str(keys[1]), collections=("SERIES A", "Mine"))})
    read_before.renamed(renames)
    assert read_before.items[str(keys[1])].collections == ("Series B", "Mine")
    queue.close()


def tag(plex: PlexEmulator, key: int, titles: list[str]) -> None:
    """What an item edit with `collection[i].tag.tag` does, landing on its own."""
    with plex.lock:
        plex.library.edit(1, [key], {f"collection[{i}].tag.tag": t for i, t in enumerate(titles)}, now=int(T0))
        plex.collections.adopt([key], int(T0))


def test_an_item_left_under_a_past_name_is_ours_and_the_flush_deletes_that_collection(
        plex: PlexEmulator, tmp_path: Path) -> None:
    """An edit planned before our rename landed after it (its process died with the request
    on the way): a collection under the old name, with that item in it. Both are ours."""
    batch, queue, keys = setup(plex, tmp_path, ["Series A"])
    assert batch.flush(T0).written == 1
    queue.collections.touch("1", "group", "10", T0 + 1, title="Series B")
    batch.flush(T0 + 1)
    assert plex.collection_by_title("Series B") is not None
    tag(plex, keys[0], ["Series B", "Series A", "Mine"])  # the late edit: a second "Series A"
    plex.add_collection("Someone's", [keys[1]])
    assert batch.owned_titles("1", ["Series B", "Series A", "Mine"], ["Series B"]) == ("Series B", "Series A")

    queue.collections.touch("1", "group", "10", T0 + 2)
    result = batch.flush(T0 + 2)
    assert result.deleted == 1 and plex.collection_by_title("Series A") is None
    assert plex.collection_by_title("Someone's") is not None and plex.collection_by_title("Mine") is not None
    assert [t for t, _ in plex.library.items[keys[0]].tags["Collection"]] == ["Series B", "Mine"]
    queue.close()


def test_a_twin_under_the_new_name_made_by_our_edits_merges_into_ours(plex: PlexEmulator, tmp_path: Path) -> None:
    """Our collection kept its old name (the rename had not landed) while an item edit made
    a second one under the new name: ours takes the new name and the twin's items."""
    batch, queue, keys = setup(plex, tmp_path, ["Series A"])
    assert batch.flush(T0).written == 1
    ours = plex.collection_by_title("Series A").rating_key
    queue.collections.touch("1", "group", "10", T0 + 1, title="Series B")
    tag(plex, keys[0], ["Series B"])  # its scene's edit landed first
    queue.ledger.put(1, "h0b", str(keys[0]), None, None, {
        "plex_key": str(keys[0]), "section_id": "1", "written": {"collection": ["Series B"]},
        "group_index": {"10": 3}}, T0 + 1)

    result = batch.flush(T0 + 2)
    assert result.failed == 0 and result.stopped is None
    merged = plex.collection_by_title("Series B")
    assert merged is not None and merged.rating_key == ours and plex.collection_by_title("Series A") is None
    assert sorted(plex.collections.children(merged)) == sorted(keys)
    assert queue.collections.get("1", "group", "10").rating_key == str(ours)
    queue.close()


def test_a_twin_with_an_item_that_is_not_ours_is_a_persons_and_stays(plex: PlexEmulator, tmp_path: Path) -> None:
    batch, queue, keys = setup(plex, tmp_path, ["Series A"])
    assert batch.flush(T0).written == 1
    other = plex.add_item("/media/stash/not synced/film.mp4")
    plex.add_collection("Series B", [other])
    queue.collections.touch("1", "group", "10", T0 + 1, title="Series B")
    assert batch.flush(T0 + 2).failed == 1  # the rename is refused, as before
    assert plex.collections.children(plex.collection_by_title("Series B")) == [other]
    assert plex.collection_by_title("Series A") is not None
    queue.close()


def test_plex_gone_during_the_moves_leaves_the_collection_due_and_a_later_flush_orders_it(
        plex: PlexEmulator, tmp_path: Path) -> None:
    """The order goes out beside the flush's own writes; a collection is recorded as written
    only once Plex took every move, so an outage among them leaves it due, attempts unused."""
    batch, queue, keys = setup(plex, tmp_path, ["Series A"])
    puts_before_moves = 2  # the collection's edit and its custom sort
    plex.faults.down_after(puts_before_moves, "PUT")
    try:
        result = batch.flush(T0)
    finally:
        plex.faults.down = False
    assert [r.path.split("/")[-1] for r in plex.requests if r.method == "PUT"][-1].startswith("prefs")
    assert result.stopped and result.failed == 0 and result.written == 0
    row = queue.collections.get("1", "group", "10")
    assert row.dirty and row.attempts == 0
    assert batch.flush(T0 + 1).written == 1 and not queue.collections.get("1", "group", "10").dirty
    assert plex.collection_children(plex.collection_by_title("Series A").rating_key) == list(reversed(keys))
    queue.close()
