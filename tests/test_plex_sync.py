"""plex.sync through the real plexapi against the emulated Plex: results in its item model,
costs in its request log."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from base.errors import AmbiguousMatch, PlexAuthError, PlexNotFound, PlexUnavailable, TransientError
from base.settings import load_settings
from emulators.plex_server import PlexEmulator
from plex.connection import PlexConnection
from plex.desired import desired_state
from plex.diff import state_hash
from plex.records import LedgerEntry, SyncStatus
from plex.sections import ScanMemory, section_for_folder
from plex.sync import PlexSync
from plex.xmlread import Section
from stash.records import Performer, Scene, SceneFile, Studio

PNG = b"\x89PNG\r\n\x1a\n" + b"cover-bytes"
COVER = "http://stash.test/scene/1/screenshot?t=1"


def settings(**raw: object):
    base: dict[str, object] = {"plex_url": "x", "plex_token": "t", "path_map": "/data/stash=>/media/stash"}
    base.update(raw)
    return load_settings(base, warn=lambda m: None)


def scene(sid: int = 1, path: str = "/data/stash/a/one.mp4", **fields: object) -> Scene:
    base: dict[str, object] = dict(
        id=sid, title=f"Scene {sid}", details="About it", date="2021-06", code="C-1", rating100=80,
        files=(SceneFile(path, 1048576, 600.0),), studio=Studio("1", "Studio X"),
        performers=(Performer("1", "Ann", "http://stash.test/performer/1/image"),),
        tags=("Tag A", "Tag B", "Tag C", "Tag D"), screenshot_url=COVER)
    base.update(fields)
    return Scene(**base)  # type: ignore[arg-type]


@pytest.fixture
def plex() -> Iterator[PlexEmulator]:
    with PlexEmulator() as emulator:
        yield emulator


class Images:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, url: str) -> bytes:
        self.calls.append(url)
        return PNG + url.encode()


def make(plex: PlexEmulator, tmp_path: Path, **raw: object) -> tuple[PlexSync, Images]:
    conn = PlexConnection(plex.url, plex.token, data_dir=tmp_path, sleep=lambda s: None)
    images = Images()
    return PlexSync(conn, settings(**raw), images), images


def genres(plex: PlexEmulator, key: int) -> list[str]:
    return [name for name, _ in plex.item(key).tags.get("Genre", [])]


def test_first_sync_writes_everything_in_budget(plex: PlexEmulator, tmp_path: Path) -> None:
    key = plex.add_item("/media/stash/a/one.mp4", size=1048576)
    sync, images = make(plex, tmp_path)
    plex.reset_log()
    out = sync.sync(scene(), None, now=1000.0)
    item = plex.item(key)
    assert out.status is SyncStatus.WRITTEN and out.plex_key == str(key)
    assert item.fields["title"] == "Scene 1" and item.fields["studio"] == "Studio X"
    assert item.fields["originallyAvailableAt"] == "2021-06-01" and item.fields["summary"] == "About it"
    assert genres(plex, key) == ["Tag A", "Tag B", "Tag C", "Tag D"]
    assert [n for n, _ in item.tags["Collection"]] == ["Studio X"]
    assert {"title", "genre", "actor", "collection", "thumb", "art"} <= item.locks
    assert images.calls == [COVER]  # poster and background share one download
    assert plex.count("PUT", "/library/sections/1/all") == 1
    assert plex.count("POST") == 2
    assert plex.count("GET", "/library/metadata/") == 1
    # ledger contract: the hash bulk computes without Plex equals the one stored
    s = settings()
    assert out.ledger.state_hash == state_hash(desired_state(scene(), s), lock=True, preserve=False)


def test_unchanged_scene_costs_one_read_no_write(plex: PlexEmulator, tmp_path: Path) -> None:
    plex.add_item("/media/stash/a/one.mp4")
    sync, images = make(plex, tmp_path)
    first = sync.sync(scene(), None, now=1000.0)
    again, _ = make(plex, tmp_path)  # a new process: no index, no memory
    plex.reset_log()
    out = again.sync(scene(), LedgerEntry.from_any(first.ledger.to_dict()), now=2000.0)
    assert out.status is SyncStatus.UNCHANGED and out.changes == ()
    assert plex.count("PUT") == 0 and plex.count("POST") == 0
    assert plex.count("GET", "/library/metadata/") == 1
    assert plex.count("GET", "/library/sections/1/all") == 0
    assert out.ledger.state_hash == first.ledger.state_hash


def test_tag_removed_in_stash_goes_and_truncated_listing_loses_nothing(plex: PlexEmulator, tmp_path: Path) -> None:
    key = plex.add_item("/media/stash/a/one.mp4", genres=["Old 1", "Old 2", "Old 3", "Old 4"])
    sync, _ = make(plex, tmp_path)
    out = sync.sync(scene(tags=("Old 1", "Old 2", "Old 3", "Old 4", "New")), None, now=1.0)
    assert genres(plex, key) == ["Old 1", "Old 2", "Old 3", "Old 4", "New"]
    sync.sync(scene(tags=("Old 1", "New")), out.ledger, now=2.0)
    assert genres(plex, key) == ["Old 1", "New"]


def test_studio_change_swaps_the_collection_and_keeps_users_own(plex: PlexEmulator, tmp_path: Path) -> None:
    key = plex.add_item("/media/stash/a/one.mp4", collections=["My Picks"])
    sync, _ = make(plex, tmp_path)
    out = sync.sync(scene(), None, now=1.0)
    sync.sync(scene(studio=Studio("2", "Studio Y")), out.ledger, now=2.0)
    names = sorted(n for n, _ in plex.item(key).tags["Collection"])
    assert names == ["My Picks", "Studio Y"]
    assert plex.item(key).fields["studio"] == "Studio Y"


def test_lock_survives_agent_refresh(plex: PlexEmulator, tmp_path: Path) -> None:
    key = plex.add_item("/media/stash/a/one.mp4")
    sync, _ = make(plex, tmp_path)
    sync.sync(scene(), None, now=1.0)
    plex.library.refresh(key, now=10**10)
    assert plex.item(key).fields["title"] == "Scene 1" and genres(plex, key)


def test_same_file_name_in_two_folders(plex: PlexEmulator, tmp_path: Path) -> None:
    a = plex.add_item("/media/stash/a/scene.mp4")
    b = plex.add_item("/media/stash/b/scene.mp4")
    sync, _ = make(plex, tmp_path)
    assert sync.sync(scene(path="/data/stash/b/scene.mp4"), None, now=1.0).plex_key == str(b)
    assert plex.item(a).fields["title"] == "scene"


def test_ambiguous_fallback_raises_with_candidates(plex: PlexEmulator, tmp_path: Path) -> None:
    plex.add_item("/media/stash/p/scene.mp4")
    plex.add_item("/media/stash/q/scene.mp4")
    sync, _ = make(plex, tmp_path)
    with pytest.raises(AmbiguousMatch) as err:
        sync.sync(scene(path="/data/stash/x/scene.mp4", files=(SceneFile("/data/stash/x/scene.mp4"),)),
                  None, now=1.0)
    assert len(err.value.candidates) == 2


def test_not_found_asks_for_one_folder_scan_then_finds_it(plex: PlexEmulator, tmp_path: Path) -> None:
    plex.add_pending("/media/stash/new/n1.mp4")
    plex.add_pending("/media/stash/new/n2.mp4")
    sync, _ = make(plex, tmp_path)
    with pytest.raises(PlexNotFound) as err:
        sync.sync(scene(1, "/data/stash/new/n1.mp4"), None, now=100.0)
    assert err.value.paths_tried == ("/media/stash/new/n1.mp4",)
    scans = [r for r in plex.requests if r.path.endswith("/refresh")]
    assert [r.query.get("path") for r in scans] == ["/media/stash/new"]
    # the scan finished in the emulator; a later job for the other file finds it, no second scan
    out = sync.sync(scene(2, "/data/stash/new/n2.mp4"), None, now=200.0)
    assert out.status is SyncStatus.WRITTEN
    assert plex.count("GET", "/library/sections/1/refresh") == 1


def test_no_scan_when_disabled(plex: PlexEmulator, tmp_path: Path) -> None:
    sync, _ = make(plex, tmp_path, trigger_plex_scan=False)
    with pytest.raises(PlexNotFound):
        sync.sync(scene(), None, now=1.0)
    assert plex.count("GET", "/library/sections/1/refresh") == 0


def test_image_not_reuploaded_when_unchanged(plex: PlexEmulator, tmp_path: Path) -> None:
    plex.add_item("/media/stash/a/one.mp4")
    sync, images = make(plex, tmp_path)
    first = sync.sync(scene(), None, now=1.0)
    plex.reset_log()
    second = sync.sync(scene(screenshot_url=COVER), first.ledger, now=2.0)
    assert second.images_uploaded == () and plex.count("POST") == 0 and len(images.calls) == 1
    third = sync.sync(scene(screenshot_url=COVER + "2"), second.ledger, now=3.0)
    assert third.images_uploaded == ("poster", "art") and plex.count("POST") == 2


def test_preserve_plex_edits_keeps_a_person_edit(plex: PlexEmulator, tmp_path: Path) -> None:
    key = plex.add_item("/media/stash/a/one.mp4")
    sync, _ = make(plex, tmp_path, preserve_plex_edits=True)
    first = sync.sync(scene(), None, now=1.0)
    plex.item(key).fields["summary"] = "Edited in Plex"
    out = sync.sync(scene(details="New in Stash", title="Renamed"), first.ledger, now=2.0)
    assert plex.item(key).fields["summary"] == "Edited in Plex" and "summary" in out.kept
    assert plex.item(key).fields["title"] == "Renamed"


def test_bulk_first_sync_uses_batched_reads(plex: PlexEmulator, tmp_path: Path) -> None:
    scenes = [scene(i, f"/data/stash/bulk/{i}.mp4", screenshot_url=None) for i in range(1, 121)]
    for s in scenes:
        plex.add_item(s.files[0].path.replace("/data/stash", "/media/stash"))
    sync, _ = make(plex, tmp_path)
    plex.reset_log()
    sync.prefetch(scenes, now=1.0)
    for s in scenes:
        sync.sync(s, None, now=2.0)
    assert len(plex.requests) / len(scenes) <= 1.2
    assert plex.count("PUT") == len(scenes)


def test_errors_are_translated(plex: PlexEmulator, tmp_path: Path) -> None:
    plex.add_item("/media/stash/a/one.mp4")
    sync, _ = make(plex, tmp_path)
    plex.faults.error_burst(2, status=503)
    assert sync.sync(scene(), None, now=1.0).status is SyncStatus.WRITTEN  # retried by tenacity
    plex.faults.error_burst(10, status=503)
    with pytest.raises(TransientError):
        sync.sync(scene(title="x"), None, now=2.0)
    plex.faults.clear()
    plex.faults.rate_limit(1, retry_after=60)
    with pytest.raises(TransientError) as err:
        sync.sync(scene(title="y"), None, now=3.0)
    assert err.value.retry_after == 60
    plex.faults.clear()
    plex.faults.revoke_token()
    with pytest.raises(PlexAuthError):
        sync.sync(scene(title="z"), None, now=4.0)
    plex.faults.restore_token()
    plex.faults.down = True
    try:
        with pytest.raises(PlexUnavailable):
            sync.sync(scene(title="w"), None, now=5.0)
    finally:
        plex.faults.down = False


def test_short_retry_after_is_waited_out(plex: PlexEmulator, tmp_path: Path) -> None:
    plex.add_item("/media/stash/a/one.mp4")
    slept: list[float] = []
    conn = PlexConnection(plex.url, plex.token, data_dir=tmp_path, sleep=slept.append)
    sync = PlexSync(conn, settings(), Images())
    plex.faults.rate_limit(1, retry_after=2)
    assert sync.sync(scene(), None, now=1.0).status is SyncStatus.WRITTEN
    assert 2.0 in slept


def test_client_identifier_is_stable(plex: PlexEmulator, tmp_path: Path) -> None:
    a = PlexConnection(plex.url, plex.token, data_dir=tmp_path).identifier
    b = PlexConnection(plex.url, plex.token, data_dir=tmp_path).identifier
    assert a == b and len(a or "") == 36


def test_check_reports_sections(plex: PlexEmulator, tmp_path: Path) -> None:
    sync, _ = make(plex, tmp_path)
    report = sync.check()
    assert report["reachable"] and report["sections"][0]["title"] == "Stash"


def test_section_for_folder_and_scan_memory() -> None:
    secs = (Section("1", "A", "movie", ("/media",)), Section("2", "B", "movie", ("/media/stash",)))
    assert section_for_folder(secs, "/media/stash/x").key == "2"
    assert section_for_folder(secs, "/media/other").key == "1"
    assert section_for_folder(secs, "/mediax") is None
    memory = ScanMemory(window=60)
    assert memory.due("/m/x", 0)
    memory.mark("/m/x", 0)
    assert not memory.due("/m/x", 59) and memory.due("/m/x", 61) and memory.due("/m/y", 1)


def test_single_job_uses_file_filter_not_the_whole_index(plex: PlexEmulator, tmp_path: Path) -> None:
    for i in range(30):
        plex.add_item(f"/media/stash/many/{i}.mp4")
    key = plex.add_item("/media/stash/a/one.mp4")
    sync, _ = make(plex, tmp_path)
    plex.reset_log()
    assert sync.sync(scene(), None, now=1.0).plex_key == str(key)
    listings = [r for r in plex.requests if r.path.endswith("/all") and r.method == "GET"]
    assert [r.query.get("file") for r in listings] == ["one.mp4"]


def test_miss_is_remembered_only_for_seconds(plex: PlexEmulator, tmp_path: Path) -> None:
    sync, _ = make(plex, tmp_path, trigger_plex_scan=False)
    for now in (1.0, 2.0):
        with pytest.raises(PlexNotFound):
            sync.sync(scene(), None, now=now)
    assert plex.count("GET", "/library/sections/1/all") == 1  # second miss within MISS_TTL: cached
    key = plex.add_item("/media/stash/a/one.mp4")
    assert sync.sync(scene(), None, now=30.0).plex_key == str(key)  # re-read after the TTL


def test_shared_connection_is_one_per_server(tmp_path: Path) -> None:
    from plex.connection import shared_connection

    a = shared_connection(settings(plex_url="http://h:1"), tmp_path)
    assert shared_connection(settings(plex_url="http://h:1"), tmp_path) is a
    assert shared_connection(settings(plex_url="http://h:2"), tmp_path) is not a
    assert a.timeout == (5.0, 30.0)


def test_rating_rides_in_the_one_edit_and_reads_back_through_plexapi(plex: PlexEmulator, tmp_path: Path) -> None:
    key = plex.add_item("/media/stash/a/one.mp4")
    sync, _ = make(plex, tmp_path)
    plex.reset_log()
    first = sync.sync(scene(rating100=83), None, now=1.0)
    assert plex.count("PUT", "/library/sections/1/all") == 1 and plex.count(path="/:/rate") == 0
    assert plex.count("PUT") == 1  # the rating costs no request of its own
    item = sync.conn.server().fetchItem(key)
    assert item.userRating == 8.3 and "userRating" in plex.item(key).locks
    # unchanged: nothing resent; a Stash change: one edit, still no extra request
    plex.reset_log()
    again = sync.sync(scene(rating100=83), first.ledger, now=2.0)
    assert plex.count("PUT") == 0 and "userRating" not in " ".join(again.changes)
    sync.sync(scene(rating100=40), again.ledger, now=3.0)
    assert plex.count("PUT") == 1 and plex.item(key).fields["userRating"] == 4.0


def test_unrated_scene_leaves_a_plex_rating_alone(plex: PlexEmulator, tmp_path: Path) -> None:
    key = plex.add_item("/media/stash/a/one.mp4")
    sync, _ = make(plex, tmp_path)
    sync.conn.server().fetchItem(key).rate(9.0)  # a person rated it in Plex
    sync.sync(scene(rating100=None), None, now=1.0)
    assert plex.item(key).fields["userRating"] == 9.0


def test_preserve_keeps_a_rating_given_in_plex(plex: PlexEmulator, tmp_path: Path) -> None:
    key = plex.add_item("/media/stash/a/one.mp4")
    sync, _ = make(plex, tmp_path, preserve_plex_edits=True)
    first = sync.sync(scene(rating100=80), None, now=1.0)
    sync.conn.server().fetchItem(key).rate(3.0)
    out = sync.sync(scene(rating100=90, title="Renamed"), first.ledger, now=2.0)
    assert plex.item(key).fields["userRating"] == 3.0 and "userRating" in out.kept


def test_max_request_rate_spaces_every_plex_request(plex: PlexEmulator, tmp_path: Path) -> None:
    """The connection paces with plex.pacing's bucket (the one the worker uses for holds):
    back-to-back requests wait 1/rate each, recorded through the injected sleep."""
    now = [100.0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    conn = PlexConnection(plex.url, plex.token, max_request_rate=4, data_dir=tmp_path,
                          sleep=sleep, clock=lambda: now[0])
    for _ in range(3):
        conn.query("/library/sections")
    assert conn.requests_made == 4 and plex.count() == 4  # GET / first, then three
    assert sleeps == pytest.approx([0.25] * 3)
    now[0] += 10  # idle: the bucket refills, the next request goes at once
    conn.query("/library/sections")
    assert len(sleeps) == 3


def scan_paths(plex: PlexEmulator) -> list[str]:
    return [r.query.get("path", "") for r in plex.requests if r.path.endswith("/refresh")]


def test_scan_once_per_folder_per_burst(plex: PlexEmulator, tmp_path: Path) -> None:
    """Files Plex has not seen yet (its scan runs in the background and has not found them):
    each miss asks for its own folder, mapped to Plex's path, once within the window."""
    from plex.sections import SCAN_WINDOW

    sync, _ = make(plex, tmp_path)
    misses = [scene(1, "/data/stash/new/a.mp4"), scene(2, "/data/stash/new/b.mp4"),
              scene(3, "/data/stash/other/c.mp4"),
              scene(4, files=(SceneFile("/data/stash/two/d.mp4"), SceneFile("/data/stash/three/d.mkv")))]
    for s in misses:
        with pytest.raises(PlexNotFound):
            sync.sync(s, None, now=100.0)
    assert scan_paths(plex) == ["/media/stash/new", "/media/stash/other", "/media/stash/two", "/media/stash/three"]
    assert all(r.method == "GET" for r in plex.requests if r.path == "/library/sections/1/refresh")
    with pytest.raises(PlexNotFound):
        sync.sync(scene(5, "/data/stash/new/e.mp4"), None, now=100.0 + SCAN_WINDOW - 1)
    assert len(scan_paths(plex)) == 4  # same burst: not asked again
    with pytest.raises(PlexNotFound):
        sync.sync(scene(1, "/data/stash/new/a.mp4"), None, now=100.0 + SCAN_WINDOW + 1)
    assert scan_paths(plex)[4:] == ["/media/stash/new"]  # a later burst asks again


def test_scan_path_is_mapped_to_a_windows_plex(tmp_path: Path) -> None:
    with PlexEmulator(sections=(("Stash", "D:\\Media\\Stash"),)) as plex:
        plex.add_pending("D:\\Media\\Stash\\new\\a.mp4")
        sync, _ = make(plex, tmp_path, path_map="/data/stash=>D:\\Media\\Stash")
        with pytest.raises(PlexNotFound):
            sync.sync(scene(1, "/data/stash/new/a.mp4"), None, now=1.0)
        assert scan_paths(plex) == ["D:\\Media\\Stash\\new"]
        assert plex.item_by_file("D:\\Media\\Stash\\new\\a.mp4") is not None  # the scan found it
        out = sync.sync(scene(1, "/data/stash/new/a.mp4"), None, now=60.0)  # the retry, after MISS_TTL
        assert out.status is SyncStatus.WRITTEN and len(scan_paths(plex)) == 1


def test_scan_outside_every_configured_library_is_not_asked(plex: PlexEmulator, tmp_path: Path) -> None:
    sync, _ = make(plex, tmp_path, path_map="/data/stash=>/elsewhere")
    with pytest.raises(PlexNotFound):
        sync.sync(scene(), None, now=1.0)
    assert scan_paths(plex) == []


# --- TLS and how a failed connection is classified ---------------------------------------------


def test_the_certificate_setting_wins_over_requests_ca_bundle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """requests lets REQUESTS_CA_BUNDLE replace a Session's verify; ours goes with each request."""
    from base.errors import PlexConnectionSetupError
    from emulators.tls import issue

    certs = issue(tmp_path / "certs", ("127.0.0.1",), self_signed=True)
    other = issue(tmp_path / "other", ("127.0.0.1",), self_signed=True)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(other.ca))  # trusts a different certificate
    with PlexEmulator(tls=certs) as tls_plex:
        tls_plex.add_item("/media/stash/a/one.mp4")
        ok = PlexConnection(tls_plex.url, tls_plex.token, data_dir=tmp_path, tls=str(certs.ca))
        assert ok.server().machineIdentifier == tls_plex.machine_identifier
        off = PlexConnection(tls_plex.url, tls_plex.token, data_dir=tmp_path, tls=False)
        assert off.server().machineIdentifier == tls_plex.machine_identifier
        default = PlexConnection(tls_plex.url, tls_plex.token, data_dir=tmp_path, sleep=lambda s: None)
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(certs.ca))  # now the bundle trusts it...
        wrong = PlexConnection(tls_plex.url, tls_plex.token, data_dir=tmp_path, tls=str(other.ca))
        with pytest.raises(PlexConnectionSetupError, match="self-signed|does not verify"):
            wrong.server()  # ...but the CA file the user named does not: the setting wins
        assert default.server() is not None  # with no setting, requests' own choice applies


def test_a_proxys_502_is_an_outage_not_a_bad_request(plex: PlexEmulator, tmp_path: Path) -> None:
    from emulators.proxy import ReverseProxy

    with ReverseProxy(plex.url, "/plex") as proxy:
        conn = PlexConnection(proxy.url, plex.token, data_dir=tmp_path, sleep=lambda s: None)
        assert conn.server().machineIdentifier == plex.machine_identifier
        plex.faults.down = True
        try:
            with pytest.raises(PlexUnavailable, match=f"Plex at {proxy.url} is behind a proxy that answered 502"):
                conn.probe()
        finally:
            plex.faults.down = False
        conn.probe()
        assert proxy.seen[-1] == "/plex/identity"


def test_a_ca_file_that_is_not_there_is_a_setting_to_fix_not_an_outage(plex: PlexEmulator, tmp_path: Path) -> None:
    from base.errors import PlexConnectionSetupError

    conn = PlexConnection(plex.url, plex.token, data_dir=tmp_path, tls=str(tmp_path / "missing.pem"))
    with pytest.raises(PlexConnectionSetupError, match="'Plex CA file' is set to .*missing.pem, which is not a file"):
        conn.probe()
    assert plex.count() == 0


def test_the_rate_limit_and_a_retry_after_hold_bind_every_thread_of_the_connection(
        plex: PlexEmulator, tmp_path: Path) -> None:
    """The drain's writers share one connection: together they stay within
    `max_request_rate`, and a hold stops each of them (recorded sleeps, no real waiting)."""
    from concurrent.futures import ThreadPoolExecutor

    slept: list[float] = []
    conn = PlexConnection(plex.url, plex.token, data_dir=tmp_path, max_request_rate=10.0, sleep=slept.append)
    conn.probe()  # the server root, once
    with ThreadPoolExecutor(3) as pool:
        list(pool.map(lambda _: conn.query("/identity"), range(12)))
    # A full bucket lets one go at once; the other 11 were each given a later slot.
    assert len(slept) == 12 and all(s > 0 for s in slept[1:]), slept
    assert max(slept) >= 1.0  # reserved one after another: the twelfth waits about 1.1 s

    slept.clear()
    conn.hold(30.0)
    with ThreadPoolExecutor(3) as pool:
        list(pool.map(lambda _: conn.query("/identity"), range(3)))
    assert len(slept) == 3 and min(slept) >= 29.0, slept  # every thread waited out the hold
