"""`emulators.listen`: a restarted emulator waits for its fixed port, and only for that."""

from __future__ import annotations

import errno

import pytest

from emulators.listen import PATIENCE_S, listen


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def busy_then(ok_after: int, error: int = errno.EADDRINUSE):
    calls = []

    def make() -> str:
        calls.append(1)
        if len(calls) <= ok_after:
            raise OSError(error, "nope")
        return "server"

    return make, calls


def test_a_fixed_port_still_in_use_is_tried_again_until_free() -> None:
    clock = Clock()
    make, calls = busy_then(3)
    assert listen(make, 23456, sleep=clock.sleep, clock=clock) == "server"
    assert len(calls) == 4


def test_it_gives_up_after_its_patience() -> None:
    clock = Clock()
    make, _ = busy_then(10**9)
    with pytest.raises(OSError):
        listen(make, 23456, sleep=clock.sleep, clock=clock)
    assert PATIENCE_S < clock.now < PATIENCE_S + 1


@pytest.mark.parametrize(("port", "error"), [(0, errno.EADDRINUSE), (23456, errno.EACCES)])
def test_any_port_or_another_error_fails_at_once(port: int, error: int) -> None:
    clock = Clock()
    make, calls = busy_then(1, error)
    with pytest.raises(OSError):
        listen(make, port, sleep=clock.sleep, clock=clock)
    assert len(calls) == 1
