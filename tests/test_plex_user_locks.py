"""Locks a person set in Plex: plex.diff's rule (pure) and plex.sync through the real plexapi
against the emulated Plex, where a Plex Web edit locks the field it changed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from base.settings import load_settings
from emulators.plex_server import PlexEmulator
from plex.connection import PlexConnection
from plex.desired import Actor, DesiredState
from plex.diff import locks_in_flight, locks_we_set, plan_edit
from plex.records import CurrentState, LedgerEntry, LocksInFlight, SyncStatus
from plex.sync import PlexSync
from reconciliation.gaps import LedgerView, classify, snapshot
from reconciliation.reconcile import ledger_view
from stash.records import Scene, SceneFile, Studio
from sync_queue.ledger import LedgerRow

DESIRED = DesiredState(title="New", title_sort="New", summary="Stash text", genres=("A", "B"),
                       actors=(Actor("Ann"),), collections=("Studio X",))
CURRENT = CurrentState(rating_key="5", title="Old", title_sort="Old", summary="Typed in Plex",
                       genres=("C",), actors=(Actor("Bob"),), collections=())
EVERY_LOCK = frozenset({"title", "titleSort", "summary", "genre", "actor", "collection", "thumb", "art"})


def plan(current: CurrentState, *, lock: bool = True, ours: frozenset[str] | None = frozenset(),
         overwrite: bool = False, **kw: object):
    return plan_edit(DESIRED, current, kw.pop("written", None), lock=lock, preserve=False, ours=ours,  # type: ignore[arg-type]
                     overwrite_locks=overwrite, **kw)  # type: ignore[arg-type]


def sent_fields(params: dict) -> set[str]:
    return {k.split(".")[0].split("[")[0] for k in params}


# --- the rule, pure -----------------------------------------------------------------------


def test_a_field_someone_else_locked_is_left_alone() -> None:
    current = CurrentState(**{**CURRENT.__dict__, "locked": frozenset({"summary", "genre"})})
    out = plan(current)
    assert "summary" not in sent_fields(out.params) and "genre" not in sent_fields(out.params)
    assert out.kept_locked == ("summary", "genre")
    assert out.params["title.value"] == "New" and out.params["title.locked"] == 1
    assert {"summary", "genre"}.isdisjoint(out.locks)  # ...but are never recorded as ours
    assert {"title", "titleSort", "actor", "collection"} <= set(out.locks)


def test_our_own_lock_does_not_protect_a_field() -> None:
    current = CurrentState(**{**CURRENT.__dict__, "locked": frozenset({"summary"})})
    out = plan(current, ours=frozenset({"summary"}))
    assert out.params["summary.value"] == "Stash text" and out.kept_locked == ()


def test_overwrite_user_locks_writes_the_field_and_keeps_their_lock() -> None:
    current = CurrentState(**{**CURRENT.__dict__, "locked": frozenset({"summary", "genre"})})
    for lock in (True, False):
        out = plan(current, lock=lock, overwrite=True)
        assert out.params["summary.value"] == "Stash text" and out.params["summary.locked"] == 1
        assert out.params["genre.locked"] == 1 and out.kept_locked == ()
        assert {"summary", "genre"}.isdisjoint(out.locks)


@pytest.mark.parametrize("overwrite", [False, True])
def test_with_locking_off_no_lock_we_did_not_set_is_ever_unlocked(overwrite: bool) -> None:
    for name in EVERY_LOCK | {"role"}:
        current = CurrentState(**{**CURRENT.__dict__, "locked": frozenset({name})})
        out = plan(current, lock=False, overwrite=overwrite, uploads=("poster", "art"))
        for lock_name in (name, "actor" if name == "role" else name):
            assert out.params.get(f"{lock_name}.locked") != 0, (name, out.params)


def test_with_locking_off_our_own_lock_may_be_released() -> None:
    current = CurrentState(**{**CURRENT.__dict__, "locked": frozenset({"title"})})
    out = plan(current, lock=False, ours=frozenset({"title"}))
    assert out.params["title.locked"] == 0 and "title" not in out.locks


def test_an_image_someone_else_locked_is_not_uploaded() -> None:
    current = CurrentState(**{**CURRENT.__dict__, "locked": frozenset({"thumb"})})
    out = plan(current, uploads=("poster", "art"))
    assert out.uploads == ("art",) and out.kept_locked == ("poster",)
    assert "thumb.locked" not in out.params and out.params["art.locked"] == 1
    assert plan(current, uploads=("poster",), overwrite=True).uploads == ("poster",)


def test_a_locked_field_that_already_shows_stash_s_value_is_not_reported() -> None:
    current = CurrentState(**{**CURRENT.__dict__, "summary": "Stash text", "genres": ("b", "a"),
                              "locked": frozenset({"summary", "genre"})})
    out = plan(current)
    assert out.kept_locked == () and not {"summary", "genre"} & sent_fields(out.params)
    assert out.written["summary"] == "Stash text" and out.written["genre"] == ["A", "B"]


def test_without_a_record_of_ours_every_lock_counts_as_ours() -> None:
    current = CurrentState(**{**CURRENT.__dict__, "locked": frozenset({"summary"})})
    assert plan(current, ours=None).params["summary.value"] == "Stash text"


def test_a_ledger_from_before_locks_were_recorded_owns_the_locks_of_what_it_wrote() -> None:
    old = LedgerEntry(plex_key="5", written={"title": "x", "actor": [["Ann", None]]}, poster_hash="h")
    assert old.locks is None
    assert locks_we_set(old) == {"title", "actor", "role", "thumb"}
    assert locks_we_set(LedgerEntry(plex_key="5", written={"title": "x"}, locks=("genre",))) == {"genre"}
    assert locks_we_set(None) == frozenset()
    # The record survives the ledger's JSON round trip, an empty one included.
    for entry in (LedgerEntry(locks=("title",), user_locked=("summary",)), LedgerEntry(locks=())):
        assert LedgerEntry.from_any(entry.to_dict()) == entry


def with_locks(locks: frozenset[str] | set[str], **fields: object) -> CurrentState:
    return CurrentState(**{**CURRENT.__dict__, "locked": frozenset(locks), **fields})


WITH_IMAGES = DesiredState(**{**DESIRED.__dict__, "poster_url": "http://stash/p", "art_url": "http://stash/a"})


def test_the_locks_in_flight_are_every_lock_the_write_may_set_and_none_already_on_the_item() -> None:
    """Every subset of locks a person may have set: what the edit will lock anew is in flight,
    what the item already showed never is (a person's lock must not become ours by a kill)."""
    names = sorted(EVERY_LOCK | {"role", "tagline"})
    for lock in (True, False):
        for mask in range(1 << len(names)):
            current = with_locks({n for i, n in enumerate(names) if mask >> i & 1})
            flight = locks_in_flight(WITH_IMAGES, current, None, lock=lock)
            noted = flight.locks if flight is not None else frozenset()
            assert noted.isdisjoint(current.locked), (current.locked, noted)
            out = plan_edit(WITH_IMAGES, current, None, lock=lock, preserve=False, ours=frozenset(),
                            uploads=("poster", "art"))
            assert set(out.locks) - current.locked <= noted, (current.locked, out.locks, noted)
            assert flight is None or flight.plex_key == current.rating_key


def test_the_locks_in_flight_follow_the_settings_and_what_stash_has() -> None:
    everything = locks_in_flight(WITH_IMAGES, with_locks(set()), None, lock=True)
    assert everything == LocksInFlight("5", frozenset(
        {"title", "titleSort", "summary", "genre", "actor", "role", "collection", "thumb", "art"}))
    unlocked = locks_in_flight(WITH_IMAGES, with_locks(set()), None, lock=False)
    assert unlocked == LocksInFlight("5", frozenset({"thumb", "art"}))  # an upload is always locked
    assert locks_in_flight(DESIRED, with_locks(set()), None, lock=False) is None
    assert locks_in_flight(WITH_IMAGES, with_locks(everything.locks), None, lock=True) is None


def test_locks_an_unrecorded_write_set_stay_in_flight_while_the_item_shows_them() -> None:
    noted = LocksInFlight("5", frozenset({"title", "titleSort", "tagline", "genre"}))
    current = with_locks({"title", "tagline", "summary"})
    flight = locks_in_flight(DESIRED, current, noted, lock=False)
    assert flight == LocksInFlight("5", frozenset({"title", "tagline"}))  # on the item: ours, set by that write
    assert locks_in_flight(DESIRED, with_locks(set()), noted, lock=False) is None  # none landed
    assert locks_in_flight(DESIRED, with_locks({"title"}, rating_key="6"), noted, lock=False) is None  # another item
    # Planned with them as ours, the title follows Stash again; the person's summary does not.
    out = plan(current, ours=flight.locks)
    assert out.params["title.value"] == "New" and out.kept_locked == ("summary",)


def test_reconcile_does_not_count_a_user_locked_field_as_drift_or_empty() -> None:
    listed = CurrentState(rating_key="5", title="New", title_sort="New", summary="", genres=("A", "B"),
                          actors=(Actor("Ann"),), files=("/m/a.mp4",), listing=True)
    written = {"title": "New", "titleSort": "New", "summary": "Stash text", "genre": ["A", "B"]}
    found = type("F", (), {"found": True, "rating_key": "5", "paths_tried": (), "candidates": ()})()
    plain = LedgerView("h", written, "5")
    assert classify("h", DESIRED, plain, found, snapshot(listed), preserve=False).fields == ("summary",)
    kept = LedgerView("h", written, "5", user_locked=frozenset({"summary"}))
    assert classify("h", DESIRED, kept, found, snapshot(listed), preserve=False).gap is None
    row = LedgerRow(1, "h", "5", None, None, LedgerEntry(plex_key="5", user_locked=("summary",)).to_dict(), 0.0,
                    False)
    assert ledger_view(row).user_locked == {"summary"}


# --- through plexapi against the emulated Plex ----------------------------------------------


def settings(**raw: object):
    base: dict[str, object] = {"plex_url": "x", "plex_token": "t", "path_map": "/data/stash=>/media/stash"}
    base.update(raw)
    return load_settings(base, warn=lambda m: None)


def scene(**fields: object) -> Scene:
    base: dict[str, object] = dict(id=1, title="Scene 1", details="About it", date="2021-06",
                                   files=(SceneFile("/data/stash/a/one.mp4", 1048576, 600.0),),
                                   studio=Studio("1", "Studio X"), tags=("Tag A",),
                                   screenshot_url="http://stash.test/scene/1/screenshot")
    base.update(fields)
    return Scene(**base)  # type: ignore[arg-type]


@pytest.fixture
def plex() -> Iterator[PlexEmulator]:
    with PlexEmulator() as emulator:
        yield emulator


def make(plex: PlexEmulator, tmp_path: Path, **raw: object) -> PlexSync:
    conn = PlexConnection(plex.url, plex.token, data_dir=tmp_path, sleep=lambda s: None)
    return PlexSync(conn, settings(**raw), lambda url: b"\x89PNG" + url.encode())


def edits(plex: PlexEmulator) -> list[dict[str, str]]:
    return [r.query for r in plex.requests if r.method == "PUT" and r.path == "/library/sections/1/all"]


def test_a_plex_web_edit_is_kept_and_reported_until_overwrite_is_asked_for(plex: PlexEmulator, tmp_path: Path) -> None:
    key = plex.add_item("/media/stash/a/one.mp4")
    off = {"lock_synced_fields": False}
    first = make(plex, tmp_path, **off).sync(scene(), None, now=1.0)
    assert first.ledger.locks is not None and "summary" not in first.ledger.locks
    assert not plex.item(key).is_locked("summary")
    plex.user_edit(key, summary="A person's summary")  # Plex Web locks what it edits
    assert plex.item(key).is_locked("summary")
    plex.reset_log()
    out = make(plex, tmp_path, **off).sync(scene(title="Renamed", details="New Stash text"), first.ledger, now=2.0)
    assert out.status is SyncStatus.WRITTEN and out.kept_locked == ("summary",)
    assert plex.item(key).fields["summary"] == "A person's summary" and plex.item(key).is_locked("summary")
    assert plex.item(key).fields["title"] == "Renamed"
    (sent,) = edits(plex)
    assert not any(k.startswith("summary.") for k in sent)
    assert out.ledger.user_locked == ("summary",) and "summary" not in (out.ledger.locks or ())
    plex.reset_log()
    again = make(plex, tmp_path, **off).sync(scene(title="Renamed", details="New Stash text"), out.ledger, now=3.0)
    assert again.status is SyncStatus.UNCHANGED and again.kept_locked == ("summary",)
    assert plex.count("PUT") == 0 and plex.count("POST") == 0
    # The override writes it; the person's lock stays.
    forced = make(plex, tmp_path, overwrite_user_locks=True, **off).sync(
        scene(title="Renamed", details="New Stash text"), again.ledger, now=4.0)
    assert forced.kept_locked == () and plex.item(key).fields["summary"] == "New Stash text"
    assert plex.item(key).is_locked("summary") and "summary" not in (forced.ledger.locks or ())


def test_a_field_locked_by_hand_before_the_first_sync_stays_the_persons(plex: PlexEmulator, tmp_path: Path) -> None:
    key = plex.add_item("/media/stash/a/one.mp4", title="Curated title", locked=["title"])
    out = make(plex, tmp_path).sync(scene(), None, now=1.0)
    assert out.kept_locked == ("title", "titleSort") and plex.item(key).fields["title"] == "Curated title"
    assert "titleSort" not in plex.item(key).fields  # sorts by the person's title
    assert {"summary", "genre", "thumb"} <= set(out.ledger.locks or ()) and "title" not in (out.ledger.locks or ())
    # Our own locks never protect a field from us: Stash's next summary goes through.
    out = make(plex, tmp_path).sync(scene(details="Changed in Stash"), out.ledger, now=2.0)
    assert plex.item(key).fields["summary"] == "Changed in Stash" and out.kept_locked == ("title", "titleSort")


def test_with_locking_off_a_hand_lock_is_never_released(plex: PlexEmulator, tmp_path: Path) -> None:
    key = plex.add_item("/media/stash/a/one.mp4")
    plex.user_edit(key, locks=["title", "genre"])  # locked by hand, values as Plex has them
    plex.reset_log()
    out = make(plex, tmp_path, lock_synced_fields=False).sync(scene(), None, now=1.0)
    item = plex.item(key)
    assert item.is_locked("title") and item.is_locked("genre")
    assert item.fields["title"] == "one" and item.tag_names("genre") == []
    assert item.fields["summary"] == "About it" and not item.is_locked("summary")
    for sent in edits(plex):
        assert "title.locked" not in sent and "genre.locked" not in sent and "title.value" not in sent
    assert set(out.kept_locked) == {"title", "titleSort", "genre"}


def test_a_poster_someone_locked_is_not_replaced(plex: PlexEmulator, tmp_path: Path) -> None:
    key = plex.add_item("/media/stash/a/one.mp4", locked=["thumb"])
    before = plex.item(key).poster
    out = make(plex, tmp_path).sync(scene(), None, now=1.0)
    assert out.images_uploaded == ("art",) and "poster" in out.kept_locked
    assert plex.item(key).poster is before
    assert out.ledger.poster_hash is None and out.ledger.art_hash is not None
    plex.reset_log()
    again = make(plex, tmp_path).sync(scene(), out.ledger, now=2.0)
    assert again.kept_locked == ("poster",) and plex.count("POST") == 0 and plex.count("PUT") == 0
