"""The hook's spawn decision as a table: one worker per burst, whichever hook gets there first."""

from __future__ import annotations

import pytest

from worker.launch import SPAWN_GRACE, should_spawn

T = 1_800_000_000.0


@pytest.mark.parametrize(("last_spawn", "now", "spawn"), [
    (None, T, True),  # never spawned
    (T, T, False),  # same instant
    (T, T + 3.0, False),  # a worker started 3 s ago may still be starting
    (T, T + SPAWN_GRACE - 0.01, False),
    (T, T + SPAWN_GRACE, True),  # long enough: that worker took the lock or died
    (T, T + 3600.0, True),
    # Two hooks started together: the one that read the earlier clock reached the lock
    # second and finds a stamp after its own `now`. Same burst: no second worker.
    (T + 0.8, T, False),
    (T + SPAWN_GRACE - 0.01, T, False),
    (T + SPAWN_GRACE, T, True),  # a stamp far in the future: the clock was set back
    (T + 86400.0, T, True),
])
def test_should_spawn(last_spawn: float | None, now: float, spawn: bool) -> None:
    assert should_spawn(last_spawn, now) is spawn
