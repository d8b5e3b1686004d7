"""The plugin's Plex side against the shapes real Plex servers answer with (`RealShapes`):
an omitted `titleSort`, file names in NFD, several items in one multi-key read. Real plexapi
over loopback against the emulated Plex; costs read from its request log."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from emulators.plex_library import RealShapes
from emulators.plex_server import PlexEmulator
from plex import xmlread
from plex.connection import PlexConnection
from plex.desired import desired_state
from plex.diff import plan_edit
from plex.records import LedgerEntry, SyncStatus
from plex.sync import PlexSync
from plugin.errors import PlexNotFound
from plugin.settings import load_settings
from reconciliation.gaps import drifted_fields, snapshot
from reconciliation.reconcile import listed_item
from stash.records import Scene, SceneFile

NFC_NAME = unicodedata.normalize("NFC", "Première Café.mp4")
NFD_NAME = unicodedata.normalize("NFD", NFC_NAME)


def settings(**raw: object):
    base: dict[str, object] = {"plex_url": "x", "plex_token": "t", "path_map": "/data/stash=>/media/stash",
                               "sync_poster": False, "sync_background": False}
    base.update(raw)
    return load_settings(base, warn=lambda m: None)


def scene(sid: int = 1, path: str = "/data/stash/a/one.mp4", **fields: object) -> Scene:
    base: dict[str, object] = dict(id=sid, title=f"Scene {sid}", details="About it", date="2021-06",
                                   files=(SceneFile(path, 1048576, 600.0),), tags=("Tag A",))
    base.update(fields)
    return Scene(**base)  # type: ignore[arg-type]


def make(plex: PlexEmulator, tmp_path: Path, **raw: object) -> PlexSync:
    conn = PlexConnection(plex.url, plex.token, data_dir=tmp_path, sleep=lambda s: None)
    return PlexSync(conn, settings(**raw), lambda url: None)


@pytest.fixture
def plex() -> Iterator[PlexEmulator]:
    with PlexEmulator() as emulator:
        yield emulator


def raw_video(plex: PlexEmulator, key: int, listing: bool = False) -> ET.Element:
    conn = PlexConnection(plex.url, plex.token, data_dir=None, sleep=lambda s: None)
    path = "/library/sections/1/all?type=1" if listing else f"/library/metadata/{key}"
    return next(v for v in conn.query(path) if v.get("ratingKey") == str(key))


# --- titleSort ------------------------------------------------------------------------------


def test_real_plex_leaves_title_sort_out_when_it_equals_the_title(plex: PlexEmulator) -> None:
    same = plex.add_item("/media/stash/a/brave.mp4", title="Brave", titleSort="Brave")
    other = plex.add_item("/media/stash/a/avatar.mp4", title="Avatar", titleSort="Avatar 01")
    assert "titleSort" not in raw_video(plex, same).attrib
    assert "titleSort" not in raw_video(plex, same, listing=True).attrib
    assert raw_video(plex, other).get("titleSort") == "Avatar 01"
    # Read as plexapi reads it: absent means the title, never empty.
    assert xmlread.current_state(raw_video(plex, same)).title_sort == "Brave"
    assert xmlread.current_state(raw_video(plex, other)).title_sort == "Avatar 01"


def test_switched_off_the_emulator_prints_title_sort_always() -> None:
    with PlexEmulator(shapes=RealShapes(omit_default_title_sort=False)) as plex:
        key = plex.add_item("/media/stash/a/brave.mp4", title="Brave", titleSort="Brave")
        assert raw_video(plex, key).get("titleSort") == "Brave"


@pytest.mark.parametrize("preserve", [False, True])
def test_a_second_sync_sends_nothing_though_plex_omits_the_sort_title(plex: PlexEmulator, tmp_path: Path,
                                                                      preserve: bool) -> None:
    key = plex.add_item("/media/stash/a/one.mp4")
    first = make(plex, tmp_path, preserve_plex_edits=preserve).sync(scene(), None, now=1.0)
    assert plex.item(key).fields["titleSort"] == "Scene 1"
    assert "titleSort" not in raw_video(plex, key).attrib
    plex.reset_log()
    again = make(plex, tmp_path, preserve_plex_edits=preserve).sync(scene(), first.ledger, now=2.0)
    assert again.status is SyncStatus.UNCHANGED and again.changes == () and again.kept == ()
    assert plex.count("PUT") == 0


def test_reconcile_sees_no_drift_in_an_omitted_sort_title(plex: PlexEmulator, tmp_path: Path) -> None:
    key = plex.add_item("/media/stash/a/one.mp4")
    out = make(plex, tmp_path).sync(scene(), None, now=1.0)
    snap = snapshot(listed_item(raw_video(plex, key, listing=True)))
    assert drifted_fields(out.ledger.written, snap) == ()
    # A sort title a person typed in Plex is printed, and is drift.
    plex.user_edit(key, titleSort="Zzz")
    snap = snapshot(listed_item(raw_video(plex, key, listing=True)))
    assert drifted_fields(out.ledger.written, snap) == ("titleSort",)


def test_preserve_plex_edits_takes_no_omitted_sort_title_for_a_persons_edit(plex: PlexEmulator) -> None:
    key = plex.add_item("/media/stash/a/one.mp4", title="Scene 1", titleSort="Scene 1")
    state = xmlread.current_state(raw_video(plex, key))
    desired = desired_state(scene(title="Scene 1 renamed"), settings())
    plan = plan_edit(desired, state, {"title": "Scene 1", "titleSort": "Scene 1"}, lock=True, preserve=True)
    assert "titleSort" not in plan.kept
    assert plan.params["titleSort.value"] == "Scene 1 renamed"


# --- Unicode normal forms -------------------------------------------------------------------


def test_nfd_in_plex_matches_nfc_from_stash_and_learns_the_form(plex: PlexEmulator, tmp_path: Path) -> None:
    key = plex.add_item(f"/media/stash/a/{NFC_NAME}")
    other = plex.add_item(f"/media/stash/b/{unicodedata.normalize('NFD', 'Zoë.mp4')}")
    assert plex.item(key).file.endswith(NFD_NAME)  # stored as a Mac share hands it over
    sync = make(plex, tmp_path)
    plex.reset_log()
    out = sync.sync(scene(1, f"/data/stash/a/{NFC_NAME}"), None, now=1.0)
    assert out.plex_key == str(key) and out.status is SyncStatus.WRITTEN
    sent = [r.query.get("file") for r in plex.requests if r.path == "/library/sections/1/all" and r.method == "GET"]
    assert sent == [NFC_NAME, NFD_NAME]  # the NFC ask finds nothing on this server
    plex.reset_log()
    out = sync.sync(scene(2, "/data/stash/b/Zoë.mp4"), None, now=2.0)
    assert out.plex_key == str(other)
    sent = [r.query.get("file") for r in plex.requests if r.path == "/library/sections/1/all" and r.method == "GET"]
    assert sent == [unicodedata.normalize("NFD", "Zoë.mp4")]  # asked in the form this server holds
    # The next sync reads the item by its ledger key and finds its file in the other form.
    plex.reset_log()
    again = make(plex, tmp_path).sync(scene(1, f"/data/stash/a/{NFC_NAME}"), LedgerEntry(plex_key=str(key)),
                                      now=3.0)
    assert again.plex_key == str(key)
    assert plex.count("GET", "/library/sections/1/all") == 0


def test_nfc_in_plex_matches_nfd_from_stash(tmp_path: Path) -> None:
    with PlexEmulator(shapes=RealShapes(nfd_file_names=False)) as plex:
        key = plex.add_item(f"/media/stash/a/{NFC_NAME}")
        assert plex.item(key).file.endswith(NFC_NAME)
        out = make(plex, tmp_path).sync(scene(1, f"/data/stash/a/{NFD_NAME}"), None, now=1.0)
        assert out.plex_key == str(key)
        sent = [r.query.get("file") for r in plex.requests if r.path == "/library/sections/1/all" and r.method == "GET"]
        assert sent == [NFC_NAME]


@pytest.mark.parametrize("plex_form,stash_form", [("NFD", "NFC"), ("NFC", "NFD")])
def test_the_full_index_matches_across_normal_forms(tmp_path: Path, plex_form: str, stash_form: str) -> None:
    with PlexEmulator(shapes=RealShapes(nfd_file_names=plex_form == "NFD")) as plex:
        folder = unicodedata.normalize(plex_form, "/media/stash/Études")
        key = plex.add_item(f"{folder}/{unicodedata.normalize(plex_form, NFC_NAME)}")
        sync = make(plex, tmp_path, path_map=unicodedata.normalize(stash_form, "/data/Études=>") + folder)
        stash_path = unicodedata.normalize(stash_form, f"/data/Études/{NFC_NAME}")
        assert sync.prefetch([scene(1, stash_path)], now=1.0) == 1
        out = sync.sync(scene(1, stash_path), None, now=1.0)
        assert out.plex_key == str(key)


def scans(plex: PlexEmulator) -> list[str]:
    return [r.query["path"] for r in plex.requests if r.path == "/library/sections/1/refresh"]


def test_a_scan_names_the_folder_as_plex_holds_it(plex: PlexEmulator, tmp_path: Path) -> None:
    folder = unicodedata.normalize("NFC", "/media/stash/Études")
    plex.add_pending(f"{folder}/{NFC_NAME}")  # on disk in NFD, not scanned yet
    sync = make(plex, tmp_path, trigger_plex_scan=True)
    with pytest.raises(PlexNotFound):
        sync.sync(scene(1, f"/data/stash/Études/{NFC_NAME}"), None, now=1.0)
    # The server's form is not known yet: both are asked for; only the NFD one finds the folder.
    assert scans(plex) == [folder, unicodedata.normalize("NFD", folder)]
    assert sync.sync(scene(1, f"/data/stash/Études/{NFC_NAME}"), None, now=10.0).status is SyncStatus.WRITTEN
    # Once a listing showed the form, one scan request names the folder in it.
    plex.add_pending(f"{folder}/Zoë.mp4")
    plex.reset_log()
    sync.build_index(3.0)
    with pytest.raises(PlexNotFound):
        sync.sync(scene(2, "/data/stash/Études/Zoë.mp4"), None, now=200.0)
    assert scans(plex) == [unicodedata.normalize("NFD", folder)]
    assert plex.item_by_file(f"{folder}/Zoë.mp4") is not None


def test_a_scan_in_the_wrong_form_finds_nothing_on_the_emulated_disk(plex: PlexEmulator) -> None:
    plex.add_pending(f"/media/stash/Études/{NFC_NAME}")
    plex.library.scan(1, unicodedata.normalize("NFC", "/media/stash/Études"), now=1)
    assert plex.library.pending and not plex.library.items
    plex.library.scan(1, unicodedata.normalize("NFD", "/media/stash/Études"), now=2)
    assert not plex.library.pending and len(plex.library.items) == 1


# --- multi-key reads ------------------------------------------------------------------------


def test_a_multi_key_read_is_parsed_item_by_item_in_any_order_and_without_missing_keys(plex: PlexEmulator) -> None:
    keys = [plex.add_item(f"/media/stash/a/{n}.mp4", title=f"T{n}", genres=[f"G{n}"]) for n in range(3)]
    plex.remove_item(keys[1])
    conn = PlexConnection(plex.url, plex.token, data_dir=None, sleep=lambda s: None)
    root = conn.query(f"/library/metadata/{keys[2]},{keys[1]},{keys[0]}")
    states = xmlread.current_states(root)
    assert set(states) == {str(keys[0]), str(keys[2])}  # a key Plex no longer has is just absent
    for n in (0, 2):
        state = states[str(keys[n])]
        assert (state.title, state.genres, state.files) == (f"T{n}", (f"G{n}",), (f"/media/stash/a/{n}.mp4",))
    # The same answer with the items in another order reads the same.
    reordered = ET.Element(root.tag, root.attrib)
    reordered.extend(reversed(list(root)))
    assert xmlread.current_states(reordered) == states


def test_prefetch_survives_a_batch_with_a_vanished_item(plex: PlexEmulator, tmp_path: Path) -> None:
    keys = [plex.add_item(f"/media/stash/a/{n}.mp4") for n in range(3)]
    scenes = [scene(n + 1, f"/data/stash/a/{n}.mp4") for n in range(3)]
    sync = make(plex, tmp_path)
    sync.build_index(1.0)
    plex.remove_item(keys[1])
    assert sync.prefetch(scenes, now=1.0) == 2
    plex.reset_log()
    assert sync.sync(scenes[2], None, now=1.0).plex_key == str(keys[2])
    assert plex.count("GET", "/library/metadata/") == 0  # served from the batch


# --- optimised versions: the item's own file ----------------------------------------------------


def test_plex_versions_are_a_second_media_of_the_same_item(plex: PlexEmulator) -> None:
    key = plex.add_item("/media/stash/Brave (2012)/Brave (2012).mkv", title="Brave")
    assert plex.add_item("/media/stash/Brave (2012)/Plex Versions/Optimized for Mobile/Brave.mp4") == key
    assert plex.add_version("/media/stash/Brave (2012)", "Optimized for TV") == key
    video = raw_video(plex, key)
    media = video.findall("Media")
    assert [m.get("title") for m in media] == ["Original", "Optimized for Mobile", "Optimized for TV"]
    assert [m.get("proxyType") for m in media] == [None, "42", "42"]
    state = xmlread.current_state(video)
    assert state.primary_file == "/media/stash/Brave (2012)/Brave (2012).mkv"
    assert state.files[1] == "/media/stash/Brave (2012)/Plex Versions/Optimized for Mobile/Brave.mp4"
    assert len(plex.library.items) == 1
