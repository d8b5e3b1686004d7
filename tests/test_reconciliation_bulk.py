"""Pure parts of Sync All / Sync Recent: the ledger hash, Stash's time text, the recent window."""

from __future__ import annotations

from base.settings import load_settings
from plex.desired import desired_state
from plex.diff import state_hash
from reconciliation.bulk import (
    ZONE_SLACK,
    changed_within,
    parse_stamp,
    recent_filter,
    scene_state,
    stash_stamp,
)
from stash.records import Scene


def settings(**raw: object):
    return load_settings({"plex_url": "x", "plex_token": "t", **raw}, warn=lambda m: None)


def test_scene_state_is_the_hash_a_sync_stores_and_follows_the_settings() -> None:
    scene = Scene(id=1, title="A", tags=("x",))
    s = settings()
    assert scene_state(scene, s) == state_hash(desired_state(scene, s), lock=True, preserve=False)
    assert scene_state(scene, settings(sync_tags=False)) != scene_state(scene, s)
    assert scene_state(scene, settings(lock_synced_fields=False)) != scene_state(scene, s)
    assert scene_state(Scene(id=1, title="B", tags=("x",)), s) != scene_state(scene, s)


def test_parse_stamp_reads_every_offset_stash_may_store() -> None:
    assert parse_stamp("2024-05-01T12:00:00Z") == parse_stamp("2024-05-01T14:00:00+02:00")
    assert parse_stamp("2024-05-01T12:00:00.123456789Z") == parse_stamp("2024-05-01T12:00:00Z")
    assert parse_stamp("2024-05-01T12:00:00.5+02:00") == parse_stamp("2024-05-01T10:00:00Z")
    assert parse_stamp("") is None and parse_stamp("yesterday") is None
    assert stash_stamp(parse_stamp("2024-05-01T12:00:00Z")) == "2024-05-01T12:00:00Z"


def test_recent_asks_wider_than_the_window_then_keeps_only_the_window() -> None:
    now = parse_stamp("2024-05-02T12:00:00Z")
    value = recent_filter(now, 86400)["updated_at"]["value"]
    assert value == stash_stamp(now - 86400 - ZONE_SLACK)
    inside = Scene(id=1, updated_at="2024-05-02T01:00:00+09:00")  # 2024-05-01T16:00Z
    outside = Scene(id=2, updated_at="2024-05-01T11:59:59Z")
    unknown = Scene(id=3)
    kept = [s.id for s in changed_within([inside, outside, unknown], now - 86400)]
    assert kept == [1, 3]
