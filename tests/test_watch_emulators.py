"""The emulated servers' viewing side, through the real clients over HTTP.

Plex: the play history plexapi's `PlexServer.history()` pages through, the accounts list,
and items' viewOffset/viewCount/lastViewedAt (left out when zero, as Plex does). Stash:
`sceneAddPlay`, `sceneSaveActivity` and the history fields as Stash's schema defines them,
through stashapi; the write documents the import builds are valid against real Stash.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from graphql import build_schema, parse, validate

from emulators.plex_server import PlexEmulator
from emulators.stash_library import StashLibrary
from emulators.stash_server import StashEmulator
from plex import history
from plex.connection import PlexConnection
from stash import plays as stash_plays
from stash.times import stash_stamp

os.environ["PLEXAPI_PLEXAPI_AUTORELOAD"] = "false"
ROOT = Path(__file__).resolve().parent.parent
REAL_SCHEMA_DIR = ROOT.parent / "shared" / "stash-graphql-schema"
T = 1_700_000_000


@pytest.fixture
def plex() -> Iterator[PlexEmulator]:
    with PlexEmulator() as server:
        yield server


def plexapi_server(plex: PlexEmulator) -> Any:
    from plexapi.server import PlexServer

    return PlexServer(plex.url, plex.token)


def test_plexapi_history_pages_through_every_play(plex: PlexEmulator) -> None:
    key = plex.add_item("/media/stash/a.mp4", title="A")
    for i in range(250):
        plex.play(key, T + 60 * i)
    plex.reset_log()
    rows = plexapi_server(plex).history()
    assert len(rows) == 250
    assert [int(r.viewedAt.timestamp()) for r in rows[:2]] == [T + 60 * 249, T + 60 * 248]  # newest first
    assert {r.ratingKey for r in rows} == {key} and {r.accountID for r in rows} == {1}
    # plexapi's container size is 100: three pages, each with the paging headers honoured.
    assert plex.count("GET", "/status/sessions/history/all") == 3


def test_history_filters_account_time_and_keeps_deleted_items(plex: PlexEmulator) -> None:
    a = plex.add_item("/media/stash/a.mp4", title="A")
    b = plex.add_item("/media/stash/b.mp4", title="B")
    bob = plex.add_account("bob")
    plex.play(a, T)
    plex.play(b, T + 100, account=bob)
    plex.play(b, T + 200)
    server = plexapi_server(plex)
    assert [r.ratingKey for r in server.history(accountID=bob)] == [b]
    after = datetime.fromtimestamp(T + 100, timezone.utc)
    assert [int(r.viewedAt.timestamp()) for r in server.history(mindate=after)] == [T + 200]
    plex.remove_item(a)
    rows = server.history(accountID=1)
    assert sorted(str(r.ratingKey) for r in rows) == sorted(["None", str(b)])  # the deleted item's row stays
    assert {(a_.id, a_.name) for a_ in server.systemAccounts()} >= {(1, "owner"), (bob, "bob")}


def test_item_viewing_attributes_are_left_out_when_zero(plex: PlexEmulator) -> None:
    fresh = plex.add_item("/media/stash/a.mp4", title="A")
    watched = plex.add_item("/media/stash/b.mp4", title="B")
    partial = plex.add_item("/media/stash/c.mp4", title="C")
    plex.play(watched, T)
    plex.progress(partial, 95_000, T + 50)
    conn = PlexConnection(plex.url, plex.token)
    root = conn.query(f"/library/metadata/{fresh},{watched},{partial}")
    attrs = {int(v.get("ratingKey")): v.attrib for v in root}
    assert not {"viewOffset", "viewCount", "lastViewedAt"} & set(attrs[fresh])
    assert attrs[watched]["viewCount"] == "1" and attrs[watched]["lastViewedAt"] == str(T)
    assert "viewOffset" not in attrs[watched]  # a finished play clears it
    assert attrs[partial]["viewOffset"] == "95000" and "viewCount" not in attrs[partial]
    item = plexapi_server(plex).fetchItem(partial)
    assert item.viewOffset == 95_000 and item.viewCount == 0


def test_our_reader_pages_from_a_cursor_oldest_first(plex: PlexEmulator) -> None:
    key = plex.add_item("/media/stash/a.mp4", title="A")
    other = plex.add_item("/media/stash/b.mp4", title="B")
    for i in range(25):
        plex.play(key, T + i)
    plex.progress(other, 1000, T + 500)
    conn = PlexConnection(plex.url, plex.token)
    pages = list(history.history_pages(conn, T + 4, 1, page_size=10))
    assert [len(p) for p in pages] == [10, 10]
    assert [e.viewed_at for p in pages for e in p] == list(range(T + 5, T + 25))
    viewed = list(history.viewed_since(conn, "1", T + 20))
    assert [(v.rating_key, v.view_offset_ms, v.last_viewed_at) for v in viewed] == [
        (str(key), 0, T + 24), (str(other), 1000, T + 500)]
    assert viewed[0].files == ("/media/stash/a.mp4",)
    assert history.accounts(conn)[1] == "owner"


@pytest.fixture
def stash() -> Iterator[StashEmulator]:
    lib = StashLibrary()
    lib.add_scene(files=["/data/stash/a.mp4"], title="A")
    lib.add_scene(files=["/data/stash/b.mp4"], title="B")
    with StashEmulator(lib) as server:
        yield server


def stashapi(server: StashEmulator) -> Any:
    from stashapi.stashapp import StashInterface

    return StashInterface(server.connection())


def test_scene_add_play_and_the_history_fields_through_stashapi(stash: StashEmulator) -> None:
    api = stashapi(stash)
    out = api.call_GQL("mutation($id: ID!, $t: [Timestamp!]) { sceneAddPlay(id: $id, times: $t) { count history } }",
                       {"id": "1", "t": ["2023-11-14T22:13:20Z", "2023-11-14T22:13:20+01:00"]})
    assert out["sceneAddPlay"]["count"] == 2
    scene = api.call_GQL("query { findScene(id: 1) { play_count play_history last_played_at resume_time "
                         "play_duration } }")["findScene"]
    assert scene["play_count"] == 2
    assert [stash_plays.epoch(t) for t in scene["play_history"]] == [T - 3600, T]
    assert stash_plays.epoch(scene["last_played_at"]) == T
    assert scene["resume_time"] == 0 and scene["play_duration"] == 0
    empty = api.call_GQL("query { findScene(id: 2) { play_count play_history last_played_at } }")["findScene"]
    assert empty == {"play_count": 0, "play_history": [], "last_played_at": None}


def test_scene_save_activity_sets_resume_and_adds_duration(stash: StashEmulator) -> None:
    api = stashapi(stash)
    assert api.call_GQL("mutation { sceneSaveActivity(id: 1, resume_time: 95.5, playDuration: 30) }")[
        "sceneSaveActivity"] is True
    api.call_GQL("mutation { sceneSaveActivity(id: 1, playDuration: 10) }")
    scene = stash.library.scenes[1]
    assert (scene.resume_time, scene.play_duration, scene.play_history) == (95.5, 40.0, [])


def test_a_play_without_times_is_now_and_a_bad_time_is_refused(stash: StashEmulator) -> None:
    stash.clock = lambda: float(T)
    api = stashapi(stash)
    api.call_GQL("mutation { sceneAddPlay(id: 2) { count } }")
    assert stash.library.scenes[2].play_history == [float(T)]
    with pytest.raises(Exception, match="query failed"):  # stashapi's error for GraphQL errors
        api.call_GQL('mutation { sceneAddPlay(id: 2, times: ["yesterday"]) { count } }')
    assert stash.library.scenes[2].play_history == [float(T)]


def test_batched_writes_reach_every_scene(stash: StashEmulator) -> None:
    from stash.client import StashClient

    client = StashClient(stash.connection(), _SilentLog())
    sent = stash_plays.add_plays_many(client, {1: [T, T + 60], 2: [T + 120]})
    assert sent == 1
    assert stash.library.scenes[1].play_history == [T, T + 60]
    assert stash.library.scenes[2].play_history == [T + 120]
    stash_plays.save_resumes(client, {1: 12.0, 2: 0.0})
    assert (stash.library.scenes[1].resume_time, stash.library.scenes[2].resume_time) == (12.0, 0.0)
    found = stash_plays.activities(client, [1, 2, 99])
    assert set(found) == {1, 2} and found[1].plays == (T, T + 60) and found[1].resume_time == 12.0
    assert stash_plays.scene_by_path(client, "/data/stash/b.mp4") == 2
    assert stash_plays.scene_by_path(client, "/data/stash/nope.mp4") is None


def test_batched_write_documents_are_valid_against_real_stash() -> None:
    if not (REAL_SCHEMA_DIR / "schema.graphql").is_file():
        pytest.skip(f"Stash's real schema is not at {REAL_SCHEMA_DIR}")
    parts = [(REAL_SCHEMA_DIR / "schema.graphql").read_text(encoding="utf-8")]
    parts += [p.read_text(encoding="utf-8") for p in sorted((REAL_SCHEMA_DIR / "types").glob("*.graphql"))]
    real = build_schema("\n".join(parts))
    documents = [
        stash_plays._aliased("S2PAddPlays", "sceneAddPlay",
                             [{"id": "1", "times": [stash_stamp(T)]}, {"id": "2", "times": ["<4h"]}]),
        stash_plays._aliased("S2PSaveResumes", "sceneSaveActivity", [{"id": "1", "resume_time": 1.0},
                                                                     {"id": "2", "resume_time": 0.0}]),
    ]
    for document in documents:
        assert [e.message for e in validate(real, parse(document))] == []


class _SilentLog:
    def __getattr__(self, _name: str) -> Any:
        return lambda *a, **k: None
