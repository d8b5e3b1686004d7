"""Images from Stash to Plex over both wires: `StashClient.fetch_image` against the emulated
Stash's image routes, and a `PlexSync` sync that uses it against the emulated Plex."""

from __future__ import annotations

import io
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from base.errors import PlexUnavailable, StashUnavailable
from base.protocol import StashLog
from base.settings import load_settings
from emulators.plex_server import PlexEmulator
from emulators.stash_library import Performer, StashLibrary, png_bytes
from emulators.stash_server import StashEmulator
from plex.connection import PlexConnection
from plex.records import SyncStatus
from plex.sync import PlexSync
from stash.client import StashClient

COVER = png_bytes(4242)


def library() -> StashLibrary:
    lib = StashLibrary()
    lib.performers[1] = Performer(1, "Ann", image=png_bytes(7))
    lib.add_scene(files=["/data/stash/a/one.mp4"], title="One", performer_ids=[1], cover=COVER, now=1000.0)
    lib.add_scene(files=["/data/stash/a/two.mp4"], title="Two", now=1000.0)
    return lib


@pytest.fixture
def stash() -> Iterator[StashEmulator]:
    with StashEmulator(library()) as emulator:
        yield emulator


@pytest.fixture
def plex() -> Iterator[PlexEmulator]:
    with PlexEmulator() as emulator:
        yield emulator


def client(stash: StashEmulator) -> StashClient:
    return StashClient(stash.connection(), StashLog(stream=io.StringIO()))


def plex_sync(plex: PlexEmulator, stash_client: StashClient, tmp_path: Path,
              plex_url: str | None = None) -> PlexSync:
    """`plex_url` is the setting's value (where the user says Plex is); requests go to the emulator."""
    settings = load_settings({"plex_url": plex_url or plex.url, "plex_token": plex.token,
                              "path_map": "/data/stash=>/media/stash"}, warn=lambda m: None)
    conn = PlexConnection(plex.url, plex.token, data_dir=tmp_path, sleep=lambda s: None)
    return PlexSync(conn, settings, stash_client.fetch_image)


def test_fetch_image_returns_the_bytes_stash_serves(stash: StashEmulator) -> None:
    c = client(stash)
    scene = c.find_scene(1)
    assert scene.screenshot_url and c.fetch_image(scene.screenshot_url) == COVER
    assert c.fetch_image(scene.performers[0].image_url or "") == png_bytes(7)


def test_fetch_image_404_means_no_image_not_an_outage(stash: StashEmulator) -> None:
    c = client(stash)
    assert c.fetch_image(f"{stash.url}/scene/999/screenshot?t=1") is None
    assert c.fetch_image(f"{stash.url}/performer/999/image?t=1") is None
    assert stash.requests[-1].status == 404  # the emulator really answered 404


def test_fetch_image_stash_down_or_failing_stays_unavailable(stash: StashEmulator) -> None:
    c = client(stash)
    url = c.find_scene(1).screenshot_url or ""
    stash.faults.http_500_next(1)
    with pytest.raises(StashUnavailable):
        c.fetch_image(url)
    stash.faults.down = True
    try:
        with pytest.raises(StashUnavailable):
            c.fetch_image(url)
    finally:
        stash.faults.down = False


def test_sync_skips_an_image_stash_no_longer_has(stash: StashEmulator, plex: PlexEmulator, tmp_path: Path) -> None:
    """The scene was read, then deleted in Stash before its cover was downloaded: its
    screenshot route answers 404. The metadata is still written; no upload, no error."""
    key = plex.add_item("/media/stash/a/one.mp4")
    c = client(stash)
    scene = c.find_scene(1)
    stash.library.remove_scene(1)
    plex.reset_log()
    out = plex_sync(plex, c, tmp_path).sync(scene, None, now=1000.0)
    assert out.status is SyncStatus.WRITTEN and out.images_uploaded == ()
    assert plex.item(key).fields["title"] == "One"
    item = plex.item(key)
    assert plex.count("POST") == 0
    assert item.poster is not None and item.poster.provider == "agent"  # Plex's own frame stays
    assert not {"thumb", "art"} & item.locks  # nothing uploaded, so nothing to protect
    assert out.ledger.poster_hash is None and out.ledger.art_hash is None
    assert any(r.status == 404 and r.path == "/scene/1/screenshot" for r in stash.requests)


def test_sync_uploads_the_cover_downloaded_from_stash(stash: StashEmulator, plex: PlexEmulator,
                                                       tmp_path: Path) -> None:
    key = plex.add_item("/media/stash/a/one.mp4")
    c = client(stash)
    out = plex_sync(plex, c, tmp_path).sync(c.find_scene(1), None, now=1000.0)
    item = plex.item(key)
    assert out.images_uploaded == ("poster", "art")
    assert item.poster is not None and item.poster.data == COVER
    assert item.art is not None and item.art.data == COVER


def test_performer_photo_reaches_plex_as_a_url_plex_can_fetch(stash: StashEmulator, plex: PlexEmulator,
                                                              tmp_path: Path) -> None:
    """Stash and Plex on one machine: the photo URL goes into the tag edit, plexapi reads it
    back on the Role, and fetching it without our credentials (as Plex does) gives the
    performer's image."""
    key = plex.add_item("/media/stash/a/one.mp4")
    c = client(stash)
    scene = c.find_scene(1)
    plex_sync(plex, c, tmp_path).sync(scene, None, now=1000.0)
    edit = [r for r in plex.requests if r.method == "PUT" and r.path == "/library/sections/1/all"]
    assert len(edit) == 1 and edit[0].query["actor[0].tag.thumb"] == scene.performers[0].image_url
    role = PlexConnection(plex.url, plex.token, data_dir=tmp_path).server().fetchItem(key).roles[0]
    assert role.tag == "Ann" and role.thumb == scene.performers[0].image_url
    assert plex.fetch_url(role.thumb) == png_bytes(7)


def test_loopback_photo_is_not_sent_to_a_plex_elsewhere(stash: StashEmulator, plex: PlexEmulator,
                                                        tmp_path: Path) -> None:
    """Plex on another machine would resolve 127.0.0.1 to itself: the name syncs, no photo."""
    key = plex.add_item("/media/stash/a/one.mp4")
    c = client(stash)
    scene = c.find_scene(1)
    assert "127.0.0.1" in (scene.performers[0].image_url or "")
    plex_sync(plex, c, tmp_path, plex_url="http://plex.lan:32400").sync(scene, None, now=1000.0)
    assert plex.item(key).roles() == {"Ann": None}
    assert not any(k.endswith("tag.thumb") for r in plex.requests for k in r.query)
    assert plex.library.tag("Role", "Ann").thumb is None


def test_with_a_stash_login_no_credential_goes_to_plex(plex: PlexEmulator, tmp_path: Path) -> None:
    """Stash requires a login: our downloads carry the key, the photo URL Plex stores never
    does, so Plex's own fetch is refused (the documented limitation) and nothing leaks."""
    with StashEmulator(library(), username="u", password="p", api_key="k-secret-1234") as stash:
        key = plex.add_item("/media/stash/a/one.mp4")
        c = client(stash)
        scene = c.find_scene(1)
        out = plex_sync(plex, c, tmp_path).sync(scene, None, now=1000.0)
        assert out.images_uploaded == ("poster", "art") and plex.item(key).poster.data == COVER
        thumb = plex.library.tag("Role", "Ann").thumb or ""
        assert thumb and "k-secret-1234" not in thumb and "apikey" not in thumb.casefold()
        assert not any("k-secret-1234" in v for r in plex.requests for v in r.query.values())
        with pytest.raises(OSError):  # urllib's HTTPError: Stash answers 401 to Plex
            plex.fetch_url(thumb)


def test_a_scenes_edit_and_uploads_go_out_at_once_on_the_lanes_and_count_as_its_requests(
        stash: StashEmulator, plex: PlexEmulator, tmp_path: Path) -> None:
    """The drain lends its lanes (`lanes`): the edit is held until both uploads have been
    answered, which one request at a time never happens, and the sync still counts every
    request it caused, from every lane."""
    key = plex.add_item("/media/stash/a/one.mp4")
    c = client(stash)
    scene = c.find_scene(1)
    sync = plex_sync(plex, c, tmp_path)
    plex.reset_log()

    def uploads_unanswered() -> bool:
        with plex.lock:
            return sum(r.method == "POST" for r in plex.requests) < 2

    with plex.faults.holding(when=uploads_unanswered, ceiling=10.0, which=lambda method, path, query: method == "PUT"), \
            ThreadPoolExecutor(4) as lanes:
        sync.lanes = lanes.submit
        out = sync.sync(scene, None, now=1000.0)
    assert [r.method for r in plex.requests if r.method != "GET"] == ["POST", "POST", "PUT"]
    assert out.images_uploaded == ("poster", "art") and out.requests == plex.count()
    assert plex.item(key).poster.data == COVER and plex.item(key).art.data == COVER
    assert plex.item(key).fields["title"] == "One"


def test_without_lanes_the_edit_goes_first_and_one_plex_never_answers_sends_no_upload(
        stash: StashEmulator, plex: PlexEmulator, tmp_path: Path) -> None:
    """A sync outside a drain (a hook's) sends its requests one after another, stopping at
    the first failure."""
    key = plex.add_item("/media/stash/a/one.mp4")
    c = client(stash)
    scene = c.find_scene(1)
    sync = plex_sync(plex, c, tmp_path)
    plex.reset_log()
    plex.faults.down_after(0, "PUT")  # Plex goes away under the edit
    try:
        with pytest.raises(PlexUnavailable):
            sync.sync(scene, None, now=1000.0)
    finally:
        plex.faults.down = False
    assert not any(r.method == "POST" for r in plex.requests)
    out = sync.sync(scene, None, now=1001.0)
    assert [r.method for r in plex.requests if r.method != "GET"] == ["PUT", "POST", "POST"]
    assert out.images_uploaded == ("poster", "art") and plex.item(key).art.data == COVER


def test_an_upload_that_fails_beside_the_other_fails_the_sync_once_both_are_answered(
        stash: StashEmulator, plex: PlexEmulator, tmp_path: Path) -> None:
    plex.add_item("/media/stash/a/one.mp4")
    c = client(stash)
    scene = c.find_scene(1)
    sync = plex_sync(plex, c, tmp_path)
    plex.faults.down_after(1, "POST")  # the first upload lands, Plex goes away under the second
    try:
        with ThreadPoolExecutor(4) as lanes, pytest.raises(PlexUnavailable):
            sync.lanes = lanes.submit
            sync.sync(scene, None, now=1000.0)
        assert plex.count("POST") == 1
    finally:
        plex.faults.down = False
