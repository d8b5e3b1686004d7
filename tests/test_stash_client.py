"""Our Stash façade (stash/client.py) against the emulated Stash, over loopback HTTP.

The façade's promise (docs/DESIGN.md, Errors): whatever stashapi or requests raise, callers
see one of `StashAuthError`, `StashUnavailable` or `SceneGone`, with a message a user can
act on, and GraphQL answers arrive as `stash.records`. These tests hold it to that with
the failure modes real Stash has (§2.2): 401 for bad or expired auth, 422 for a document
this Stash does not accept, 200 with `errors` for a locked database, 500, refused
connections.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator

import pytest

from base.errors import SceneGone, Stash2PlexError, StashAuthError, StashRejectedQuery, StashUnavailable
from base.protocol import StashLog
from emulators.stash_library import StashLibrary, generate_library, png_bytes
from emulators.stash_server import StashEmulator
from stash import client as stash_client
from stash.client import StashClient

USER, PASSWORD, KEY = "admin", "hunter2-pass", "client-test-api-key-9876543210"


@pytest.fixture
def library() -> StashLibrary:
    return generate_library(150, seed=23)


@pytest.fixture
def stash(library: StashLibrary) -> Iterator[StashEmulator]:
    with StashEmulator(library, username=USER, password=PASSWORD, api_key=KEY) as server:
        yield server


def client(conn: dict, log: io.StringIO | None = None) -> StashClient:
    return StashClient(conn, StashLog(stream=log if log is not None else io.StringIO(), debug_enabled=True))


# --- connection and auth ------------------------------------------------------------------


def test_connects_with_the_session_cookie_stash_sends(stash: StashEmulator) -> None:
    c = client(stash.connection())
    assert c.url == stash.url
    assert c.find_scene(1).id == 1
    # construction (version, api key, introspection), then our own named query
    assert [r.operation_name for r in stash.requests][:2] == ["StashVersion", "getApiKey"]
    assert stash.requests[-1].operation_name == "S2PFindScene"


def test_the_connection_is_built_once_per_client(stash: StashEmulator) -> None:
    c = client(stash.connection())
    c.find_scene(1)
    c.find_scene(2)
    c.count_scenes()
    assert stash.count("StashVersion") == 1 and stash.count("getApiKey") == 1
    assert stash.count("S2PFindScene") == 2 and stash.count("S2PCountScenes") == 1


def test_host_0000_means_loopback(stash: StashEmulator) -> None:
    conn = dict(stash.connection(), Host="0.0.0.0")
    assert client(conn).find_scene(3).id == 3


@pytest.mark.parametrize("conn_change", [
    {"SessionCookie": None},  # a locked Stash and no credentials at all
    {"SessionCookie": None, "ApiKey": "wrong-key"},
])
def test_refused_credentials_are_one_auth_error(stash: StashEmulator, conn_change: dict) -> None:
    log = io.StringIO()
    with pytest.raises(StashAuthError) as caught:
        client(dict(stash.connection(), **conn_change), log).find_scene(1)
    message = str(caught.value)
    assert "401" in message and stash.url in message
    assert "query failed" not in message  # stashapi's own wording stays behind the façade
    assert "wrong-key" not in message and "wrong-key" not in log.getvalue()


def test_a_wrong_key_is_refused_by_an_open_stash_too(library: StashLibrary) -> None:
    with StashEmulator(library) as server:
        assert client(server.connection()).find_scene(1).id == 1
        with pytest.raises(StashAuthError):
            client(dict(server.connection(), ApiKey="nope")).find_scene(1)


def test_an_expired_session_without_an_api_key_is_an_auth_error(library: StashLibrary) -> None:
    """No API key configured in Stash: force_api_key has nothing to switch to, the cookie is all."""
    now = [1_700_000_000.0]
    with StashEmulator(library, username=USER, password=PASSWORD, api_key="", session_max_age=3600,
                       clock=lambda: now[0]) as server:
        c = client(server.connection())
        assert c.find_scene(1).id == 1
        now[0] += 3601
        with pytest.raises(StashAuthError, match="session may have expired"):
            c.find_scene(1)
        assert server.requests[-1].status == 401


def test_with_an_api_key_in_stash_a_worker_outlives_its_session(library: StashLibrary) -> None:
    now = [1_700_000_000.0]
    with StashEmulator(library, username=USER, password=PASSWORD, api_key=KEY, session_max_age=3600,
                       clock=lambda: now[0]) as server:
        c = client(server.connection())
        c.find_scene(1)
        now[0] += 7 * 86400
        assert c.find_scene(2).id == 2
        assert server.requests[-1].status == 200


def test_stash_down_is_unavailable_and_recovers(stash: StashEmulator) -> None:
    conn = stash.connection()
    stash.faults.down = True
    with pytest.raises(StashUnavailable, match="Cannot reach Stash") as caught:
        client(conn).find_scene(1)
    assert stash.url in str(caught.value)
    stash.faults.down = False
    c = client(conn)
    assert c.find_scene(1).id == 1
    stash.faults.down = True  # goes away under a client that is already connected
    with pytest.raises(StashUnavailable, match="Cannot reach Stash"):
        c.find_scene(2)
    stash.faults.down = False
    assert c.find_scene(2).id == 2


def test_http_500_is_unavailable(stash: StashEmulator) -> None:
    c = client(stash.connection())
    c.find_scene(1)
    stash.faults.http_500_next(1)
    with pytest.raises(StashUnavailable, match="500"):
        c.find_scene(1)
    assert c.find_scene(1).id == 1


def test_a_500_during_construction_is_unavailable(stash: StashEmulator) -> None:
    stash.faults.http_500_next(1)
    with pytest.raises(StashUnavailable, match="500"):
        client(stash.connection()).find_scene(1)


def test_a_locked_database_is_unavailable_not_a_bug(stash: StashEmulator) -> None:
    """Stash answers 200 with `errors` (data partly null); stashapi raises a bare Exception
    whose text starts with "200". That is Stash failing for a while, not a plugin bug."""
    c = client(stash.connection())
    c.find_scene(1)
    stash.faults.fail_next(1)
    with pytest.raises(StashUnavailable) as caught:
        c.find_scene(1)
    assert "database is locked" in str(caught.value)
    stash.faults.fail_next(1, message="sql: connection is already closed")
    with pytest.raises(StashUnavailable, match="connection is already closed"):
        list(c.iter_scenes())
    assert c.find_scene(1).id == 1


def test_a_document_this_stash_rejects_names_the_version_and_field_not_unavailable(stash: StashEmulator) -> None:
    """An older Stash answers 422 to a field it lacks: that is no outage, and updating Stash is
    the fix, so the message names the version and the field."""
    c = client(stash.connection())
    with pytest.raises(StashRejectedQuery, match="422") as caught:
        c.gql("query S2PBroken { findScene(id: 1) { no_such_field } }")
    assert isinstance(caught.value, Stash2PlexError) and not isinstance(caught.value, StashUnavailable)
    text = str(caught.value)
    assert "the field 'no_such_field'" in text  # says which part of our document this Stash lacks
    assert f"Stash {c._interface().version} at {stash.url}" in text and "update Stash" in text
    assert "unavailable" not in text.lower() and "cannot reach" not in text.lower()


# --- scenes ---------------------------------------------------------------------------------


def test_find_scene_maps_every_field(stash: StashEmulator, library: StashLibrary) -> None:
    library.studios[2].parent_id = 1
    library.performers[1].image = None
    library.performers[2].image = png_bytes(77)
    library.update_scene(9, title="Café — 東京 😀", date="2021-07", studio_id=2, performer_ids=[1, 2],
                         tag_ids=[3, 1], groups=[(1, 4)], rating100=80, organized=True,
                         files=["/data/stash/b/primary.mp4", "/data/stash/a/second.mp4"],
                         urls=["https://example.com/9"], now=1_700_000_000)
    scene = client(stash.connection()).find_scene(9)
    assert scene.title == "Café — 東京 😀" and scene.date == "2021-07"  # partial date kept as Stash has it
    assert [f.path for f in scene.files] == ["/data/stash/b/primary.mp4", "/data/stash/a/second.mp4"]
    assert scene.files[0].size == library.scenes[9].files[0].size and scene.files[0].duration > 0
    assert scene.studio is not None and scene.studio.name == library.studios[2].name
    assert scene.studio.parent_name == library.studios[1].name
    assert [p.name for p in scene.performers] == [library.performers[1].name, library.performers[2].name]
    assert scene.performers[0].image_url is None  # Stash's placeholder is not an image of theirs
    assert scene.performers[1].image_url and scene.performers[1].image_url.startswith(f"{stash.url}/performer/2/image")
    assert scene.tags == (library.tags[3].name, library.tags[1].name) and scene.tag_ids == ("3", "1")
    assert scene.groups == (library.groups[1].name,)
    assert scene.rating100 == 80 and scene.organized is True and scene.urls == ("https://example.com/9",)
    assert scene.screenshot_url == f"{stash.url}/scene/9/screenshot?t=1700000000"
    assert scene.updated_at == "2023-11-14T22:13:20Z"
    assert scene.created_at == library.stamp(library.scenes[9].created_at)


def test_a_bare_scene_has_no_metadata(stash: StashEmulator, library: StashLibrary) -> None:
    """Right after a scan: a file, nothing else. Empty strings count as missing, like None."""
    new_id = library.add_scene(files=["/data/stash/new/clip.mp4"], title="", details="")
    scene = client(stash.connection()).find_scene(new_id)
    assert scene.title is None and scene.details is None and scene.studio is None
    assert scene.performers == () and scene.tags == () and scene.date is None
    assert scene.has_metadata is False


def test_a_deleted_scene_is_gone(stash: StashEmulator, library: StashLibrary) -> None:
    c = client(stash.connection())
    library.remove_scene(5)
    with pytest.raises(SceneGone, match="5"):
        c.find_scene(5)
    with pytest.raises(SceneGone):
        c.find_scene(10**9)


def test_iter_scenes_walks_everything_by_id_in_bounded_pages(stash: StashEmulator, library: StashLibrary) -> None:
    c = client(stash.connection())
    c.find_scene(1)
    stash.reset_log()
    ids = [s.id for s in c.iter_scenes(page_size=40)]
    assert ids == sorted(library.scenes)
    pages = [r.variables for r in stash.requests if r.operation_name == "S2PFindScenes"]
    assert len(pages) == 4  # 40 + 40 + 40 + 30: the short page ends the walk
    assert all(p["filter"]["per_page"] == 40 and p["filter"]["page"] == 1 for p in pages)
    assert [p["scene_filter"]["id"]["value"] for p in pages] == [0, 40, 80, 120]


def _listing_pages(stash: StashEmulator) -> list[int]:
    return [r.variables["scene_filter"]["id"]["value"] for r in stash.requests if r.operation_name == "S2PFindScenes"]


def test_a_whole_library_listing_asks_for_the_next_page_while_the_caller_handles_this_one(
        stash: StashEmulator, library: StashLibrary) -> None:
    c = client(stash.connection())
    c.find_scene(1)
    stash.reset_log()
    listing = c.iter_listing(page_size=40, ahead=True)
    first, _raw = next(listing)
    deadline = time.monotonic() + 60  # a ceiling for a hang: the condition is what is waited for
    while stash.count("S2PFindScenes") < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _listing_pages(stash) == [0, 40]  # asked for while the first page is still in hand
    assert [first.id, *(scene.id for scene, _raw in listing)] == sorted(library.scenes)
    assert _listing_pages(stash) == [0, 40, 80, 120]  # still one request per page, none twice


def test_a_page_read_ahead_that_fails_fails_where_the_caller_reaches_it(stash: StashEmulator,
                                                                        library: StashLibrary) -> None:
    c = client(stash.connection())
    c.find_scene(1)
    stash.faults.fail_next(1, after=1)
    listing = c.iter_listing(page_size=40, ahead=True)
    assert [next(listing)[0].id for _ in range(40)] == sorted(library.scenes)[:40]
    with pytest.raises(StashUnavailable, match="database is locked"):
        next(listing)


def test_iter_scenes_on_an_exact_multiple_asks_once_more(stash: StashEmulator, library: StashLibrary) -> None:
    c = client(stash.connection())
    c.find_scene(1)
    stash.reset_log()
    assert len(list(c.iter_scenes(page_size=50))) == 150
    assert stash.count("S2PFindScenes") == 4  # the last, empty page proves there is no more


def test_iter_scenes_resumes_after_an_id_and_keeps_pages_stable(stash: StashEmulator,
                                                                library: StashLibrary) -> None:
    c = client(stash.connection())
    assert [s.id for s in c.iter_scenes(after_id=140, page_size=4)] == list(range(141, 151))
    walked = []
    for scene in c.iter_scenes(page_size=20):
        walked.append(scene.id)
        if scene.id == 30:  # scenes arrive and leave while we walk
            library.add_scene(files=["/data/stash/late.mp4"])
            library.remove_scene(10)
            library.remove_scene(70)
    assert len(walked) == len(set(walked))
    assert 70 not in walked and 10 in walked and 151 in walked


def test_iter_scenes_with_an_updated_at_filter(stash: StashEmulator, library: StashLibrary) -> None:
    since = library.stamp(library.scenes[100].updated_at)
    criterion = {"updated_at": {"value": since, "modifier": "GREATER_THAN"}}
    c = client(stash.connection())
    got = [s.id for s in c.iter_scenes(criterion, page_size=7)]
    expected = sorted(s.id for s in library.scenes.values() if library.stamp(s.updated_at) > since)
    assert got == expected and 0 < len(got) < 150
    assert c.count_scenes(criterion) == len(expected)
    assert c.count_scenes() == 150


# --- settings -------------------------------------------------------------------------------


def test_plugin_settings_are_found_by_id_ignoring_case(stash: StashEmulator) -> None:
    c = client(stash.connection())
    assert c.plugin_settings() == {}  # never saved
    stash.set_plugin_settings("stash2plex", {"plex_url": "http://old:32400"})  # Stash before v0.26
    assert c.plugin_settings() == {"plex_url": "http://old:32400"}
    stash.plugin_settings.clear()
    stash.set_plugin_settings("Stash2Plex", {"plex_url": "http://new:32400", "max_tags": 9})
    stash.set_plugin_settings("OtherPlugin", {"plex_url": "http://not-ours"})
    assert c.plugin_settings() == {"plex_url": "http://new:32400", "max_tags": 9}
    assert stash.requests[-1].variables == {"include": ["Stash2Plex", "stash2plex"]}


def test_find_scenes_reads_a_batch_in_one_request_and_only_checks_listed_scenes(
        stash: StashEmulator, library: StashLibrary) -> None:
    c = client(stash.connection())
    listing = {scene.id: raw for scene, raw in c.iter_listing(page_size=200) if scene.id <= 40}
    library.remove_scene(7)
    library.update_scene(9, title="Saved after the listing")
    stash.reset_log()
    found = c.find_scenes(range(1, 41), listed=listing)
    ops = [r.operation_name for r in stash.requests]
    assert ops == ["S2PSceneStamps", "S2PScenesById"]  # every stamp at once, then the one changed scene
    assert stash.requests[1].variables["ids"] == ["9"]
    assert isinstance(found[7], SceneGone)
    assert found[9].title == "Saved after the listing"  # type: ignore[union-attr]
    assert found[1] == c.find_scene(1)  # a listed scene, as a fresh read would give it

    # A studio renamed after the listing leaves its scenes' updated_at alone: read again.
    studio_id = next(s.studio_id for s in library.scenes.values() if s.studio_id and s.id <= 40)
    with stash.write_lock:
        library.studios[studio_id].name = "Renamed after the listing"
        library.revision += 1
    again = c.find_scenes(range(1, 41), listed=listing)
    shown = {sid: sc.studio.name for sid, sc in again.items() if not isinstance(sc, Exception) and sc.studio
             and library.scenes[sid].studio_id == studio_id}
    assert shown and set(shown.values()) == {"Renamed after the listing"}

    stash.reset_log()
    fresh = c.find_scenes([3, 10**9, 3])  # no listing: one full read; a missing id is gone
    assert [r.operation_name for r in stash.requests] == ["S2PScenesById"]
    assert fresh[3] == c.find_scene(3) and isinstance(fresh[10**9], SceneGone) and len(fresh) == 2


def test_a_listed_scene_comes_back_as_the_listings_own_object_only_while_the_answer_is_the_same(
        stash: StashEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """The drain's scene is the object the listing made (so what was worked out for it is
    not worked out again, `plex.scene_state`) when the job carries that same answer, here
    after the trip through the queue's JSON; an answer that differs in any field (an older
    listing's, with the same stamps) is the job's own, parsed as before; and only the last
    `LISTED_KEPT` scenes are kept."""
    c = client(stash.connection())
    listed = {scene.id: (scene, raw) for scene, raw in c.iter_listing(page_size=50) if scene.id <= 10}
    carried = {sid: json.loads(json.dumps(raw)) for sid, (_scene, raw) in listed.items()}
    older = dict(carried[4], title="An older listing's title")
    found = c.find_scenes(range(1, 11), listed={**carried, 4: older})
    assert all(found[sid] is listed[sid][0] for sid in range(1, 11) if sid != 4)
    assert found[4] is not listed[4][0] and found[4].title == "An older listing's title"  # type: ignore[union-attr]
    monkeypatch.setattr(stash_client, "LISTED_KEPT", 20)
    for _scene, _raw in c.iter_listing(page_size=200):
        pass
    assert list(c._listed) == list(range(131, 151))  # the last 20 of 150
    again = c.find_scenes([1], listed={1: carried[1]})
    assert again[1] is not listed[1][0] and again[1] == listed[1][0]
