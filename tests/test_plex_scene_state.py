"""`plex.scene_state`: a scene's desired state and ledger hash, worked out once per scene object."""

from __future__ import annotations

import pytest

from base.settings import load_settings
from plex import scene_state
from plex.desired import desired_state
from plex.scene_state import ledger_hash, state_and_hash
from stash.records import Performer, Scene


def settings(**raw: object):
    return load_settings({"plex_url": "x", "plex_token": "t", **raw}, warn=lambda m: None)


def test_the_same_scene_object_is_worked_out_once_and_an_equal_one_or_other_settings_again(
        monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def counted(scene: Scene, s: object) -> object:
        calls.append(scene.id)
        return desired_state(scene, s)  # type: ignore[arg-type]

    monkeypatch.setattr(scene_state, "desired_state", counted)
    s = settings()
    scene = Scene(id=1, title="A", tags=("x",), performers=(Performer(id="p1", name="Ann"),))
    first = state_and_hash(scene, s)
    assert state_and_hash(scene, s) is not None and calls == [1]
    assert state_and_hash(scene, s) == first == (desired_state(scene, s), ledger_hash(desired_state(scene, s), s, scene))
    twin = Scene(id=1, title="A", tags=("x",), performers=(Performer(id="p1", name="Ann"),))
    assert state_and_hash(twin, s) == first and calls == [1, 1]  # equal, but not the object the listing made
    other = settings(sync_tags=False)
    assert state_and_hash(scene, other)[1] != first[1] and calls == [1, 1, 1]


def test_only_the_last_kept_scenes_are_held(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scene_state, "KEPT", 3)
    s = settings()
    scenes = [Scene(id=i, title=f"T{i}") for i in range(10)]
    for scene in scenes:
        state_and_hash(scene, s)
    assert [kept[0] for kept in scene_state._kept.values()][-3:] == scenes[-3:]
    assert len(scene_state._kept) == 3
