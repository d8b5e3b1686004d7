"""The chaos soak's schedule (`bench.chaos_plan`): the same seed gives the same run, and a
run only does what a real Stash and Plex could do, with every kind of trouble in it."""

from __future__ import annotations

import pytest

from bench.chaos_plan import BURST, NEEDS_STASH, TASK_MODES, WINDOWS, Action, counts, plan

SCENES = list(range(1, 241))
ENTITIES = {"performer": list(range(1, 10)), "studio": [1, 2, 3], "tag": list(range(1, 13))}
SEEDS = range(12)


def schedule(seed: int, seconds: float = 60.0) -> list[Action]:
    return plan(seed, seconds, SCENES, ENTITIES)


def test_a_seed_gives_one_schedule_and_another_seed_another() -> None:
    assert schedule(5) == schedule(5)
    assert schedule(5) != schedule(6)


@pytest.mark.parametrize("seed", SEEDS)
def test_actions_are_in_time_order_within_the_run(seed: int) -> None:
    actions = schedule(seed)
    assert [a.at for a in actions] == sorted(a.at for a in actions)
    assert all(0 <= a.at <= 60.0 + 3.1 for a in actions)  # a save may wait for Stash's last restart


@pytest.mark.parametrize("seed", SEEDS)
def test_every_kind_of_trouble_is_in_a_one_minute_run(seed: int) -> None:
    c = counts(schedule(seed))
    for kind in ("save", "rename", "delete", "task", "kill", "plex_errors", "plex_429", *WINDOWS):
        assert c.get(kind, 0) >= 1, (kind, c)
    tasks = [a for a in schedule(seed) if a.kind == "task"]
    assert {a.mode for a in tasks} == set(TASK_MODES)
    assert {a.mode for a in tasks if a.cancel_after is not None} == set(TASK_MODES)


@pytest.mark.parametrize("seed", SEEDS)
def test_each_window_closes_and_windows_of_one_switch_never_overlap(seed: int) -> None:
    actions = schedule(seed)
    for on, off in WINDOWS.items():
        state = False
        for a in actions:
            if a.kind == on:
                assert not state, f"{on} twice at {a.at}"
                state = True
            elif a.kind == off:
                assert state, f"{off} without {on} at {a.at}"
                state = False
        assert not state, f"{on} left on"


@pytest.mark.parametrize("seed", SEEDS)
def test_nothing_that_needs_stash_happens_while_it_is_down(seed: int) -> None:
    down = False
    for a in schedule(seed):
        if a.kind in ("stash_down", "stash_up"):
            down = a.kind == "stash_down"
        assert not (down and a.kind in NEEDS_STASH), a


@pytest.mark.parametrize("seed", SEEDS)
def test_a_deleted_scene_is_never_saved_again(seed: int) -> None:
    gone: set[int] = set()
    for a in schedule(seed, 300.0):
        if a.kind == "delete":
            assert a.scenes[0] not in gone
            gone.add(a.scenes[0])
        elif a.kind == "save":
            assert gone.isdisjoint(a.scenes), a
    assert len(SCENES) - len(gone) >= BURST


@pytest.mark.parametrize("seed", SEEDS)
def test_two_hundred_hooks_at_once_in_every_run_and_more_in_long_ones(seed: int) -> None:
    def bursts(seconds: float) -> int:
        return sum(1 for a in schedule(seed, seconds) if a.kind == "save" and len(a.scenes) == BURST)

    assert bursts(60.0) == 1
    assert bursts(900.0) >= 2


def test_a_ten_minute_run_kills_well_over_a_hundred_times() -> None:
    for seed in SEEDS:
        assert counts(schedule(seed, 600.0))["kill"] >= 150
