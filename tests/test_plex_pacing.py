"""Pacing with a recorded sleep: no fixed pause, the rate limit spaces requests, Retry-After holds."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from plex.pacing import MAX_HOLD, Pacer, RateLimit, hold, take, wait_turn

T0 = 1_700_000_000.0


class Clock:
    """A clock that only moves when someone sleeps: the recorded sleeps are the assertion."""

    def __init__(self, now: float = T0) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def drive(limit: RateLimit, requests: int, pacer: Pacer | None = None, clock: Clock | None = None) -> Clock:
    clock = clock or Clock()
    pacer = pacer or Pacer()
    for _ in range(requests):
        pacer = wait_turn(pacer, limit, clock.now, clock.sleep)
    return clock


def test_unlimited_never_sleeps() -> None:
    assert drive(RateLimit(0), 1000).sleeps == []


def test_no_fixed_pause_when_requests_are_slower_than_the_rate() -> None:
    limit, pacer, sleeps = RateLimit(2.0), Pacer(), []
    for i in range(20):
        pacer = wait_turn(pacer, limit, T0 + i * 0.5, sleeps.append)
    assert sleeps == []


@pytest.mark.parametrize(
    ("rate", "burst", "expected"),
    [
        (2.0, 1.0, [0.5] * 5),
        (10.0, 1.0, [0.1] * 5),
        (0.5, 1.0, [2.0] * 5),
        (2.0, 3.0, [0.5] * 3),  # three go back to back, then the rate
    ],
)
def test_rate_spaces_back_to_back_requests(rate: float, burst: float, expected: list[float]) -> None:
    sleeps = drive(RateLimit(rate, burst), 6, pacer=Pacer()).sleeps
    assert sleeps == pytest.approx(expected)


def test_reservations_without_the_clock_moving_queue_up() -> None:
    pacer, waits = Pacer(), []
    for _ in range(4):
        pacer, wait = take(pacer, RateLimit(4.0), T0)
        waits.append(wait)
    assert waits == pytest.approx([0.0, 0.25, 0.5, 0.75])


def test_a_long_pause_refills_only_up_to_burst() -> None:
    limit, pacer = RateLimit(1.0, 2.0), Pacer()
    for _ in range(2):
        pacer, _wait = take(pacer, limit, T0)
    waits = []
    for _ in range(4):
        pacer, wait = take(pacer, limit, T0 + 3600)
        waits.append(wait)
    assert waits == pytest.approx([0.0, 0.0, 1.0, 2.0])


def test_clock_set_back_does_not_stall() -> None:
    limit, pacer = RateLimit(1.0), Pacer()
    pacer, _ = take(pacer, limit, T0)
    pacer, wait = take(pacer, limit, T0 - 3600)
    assert wait == pytest.approx(1.0)
    pacer, wait = take(pacer, limit, T0 - 3600 + 5)
    assert wait == 0.0


def test_retry_after_holds_every_request() -> None:
    clock = Clock()
    pacer = hold(Pacer(), T0 + 12.0, T0)
    pacer = wait_turn(pacer, RateLimit(0), clock.now, clock.sleep)
    pacer = wait_turn(pacer, RateLimit(0), clock.now, clock.sleep)
    assert clock.sleeps == [12.0]


@pytest.mark.parametrize(
    ("holds", "expected_wait"),
    [
        ([T0 + 10], 10.0),
        ([T0 + 10, T0 + 5], 10.0),  # a shorter hint never shortens a longer hold
        ([T0 + 5, T0 + 10], 10.0),
        ([T0 + 3600], MAX_HOLD),  # one 429 cannot freeze the drain for an hour
        ([T0 - 10], 0.0),
    ],
)
def test_hold_bounds(holds: list[float], expected_wait: float) -> None:
    pacer = Pacer()
    for until in holds:
        pacer = hold(pacer, until, T0)
    assert take(pacer, RateLimit(0), T0)[1] == expected_wait


def test_hold_and_rate_take_the_longer_wait() -> None:
    pacer = hold(Pacer(), T0 + 0.2, T0)
    assert take(pacer, RateLimit(1.0), T0)[1] == pytest.approx(0.2)
    pacer, _ = take(Pacer(), RateLimit(1.0), T0)
    assert take(hold(pacer, T0 + 0.2, T0), RateLimit(1.0), T0)[1] == pytest.approx(1.0)


def test_rate_limit_from_settings() -> None:
    class Stub:
        max_request_rate = 5.0

    class Zero:
        max_request_rate = 0

    assert RateLimit.from_settings(Stub()) == RateLimit(5.0)
    assert RateLimit.from_settings(Zero()) == RateLimit(0.0)


@given(st.floats(0.01, 1000), st.integers(1, 200))
def test_never_faster_than_the_rate(rate: float, requests: int) -> None:
    clock = drive(RateLimit(rate), requests)
    # The first request is free; every later one waits its 1/rate share.
    assert clock.now - T0 == pytest.approx((requests - 1) / rate, rel=1e-6, abs=1e-5)  # epoch floats: ulp ~ 2e-7
