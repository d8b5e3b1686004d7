"""The circuit breaker as pure transitions: open on consecutive outages, one probe, persistence."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.breaker import (
    Breaker,
    BreakerConfig,
    BreakerEvent,
    BreakerState,
    admit,
    allows_request,
    next_probe_at,
    transition,
)

T0 = 1_700_000_000.0
EV = BreakerEvent


def run(events: list[tuple[BreakerEvent, float]], start: Breaker | None = None) -> Breaker:
    breaker = start or Breaker()
    for event, at in events:
        breaker = transition(breaker, event, at)
    return breaker


def opened(at: float = T0) -> Breaker:
    return run([(EV.OUTAGE, at), (EV.OUTAGE, at), (EV.OUTAGE, at)])


@pytest.mark.parametrize(
    ("events", "state", "failures"),
    [
        ([], BreakerState.CLOSED, 0),
        ([EV.OUTAGE], BreakerState.CLOSED, 1),
        ([EV.OUTAGE, EV.OUTAGE], BreakerState.CLOSED, 2),
        ([EV.OUTAGE, EV.OUTAGE, EV.OUTAGE], BreakerState.OPEN, 3),
        ([EV.OUTAGE, EV.OUTAGE, EV.SUCCESS, EV.OUTAGE], BreakerState.CLOSED, 1),  # not consecutive
        ([EV.OUTAGE, EV.OUTAGE, EV.REACHABLE, EV.OUTAGE], BreakerState.CLOSED, 1),
        ([EV.OUTAGE, EV.OUTAGE, EV.NO_CONTACT, EV.OUTAGE], BreakerState.OPEN, 3),  # no news
        ([EV.OUTAGE, EV.OUTAGE, EV.OUTAGE, EV.OUTAGE], BreakerState.OPEN, 4),
        ([EV.OUTAGE, EV.OUTAGE, EV.OUTAGE, EV.REACHABLE], BreakerState.CLOSED, 0),  # late answer
        ([EV.PROBE_GRANTED], BreakerState.CLOSED, 0),  # nothing to probe
    ],
)
def test_consecutive_outages_open_it(events: list[BreakerEvent], state: BreakerState, failures: int) -> None:
    breaker = run([(event, T0) for event in events])
    assert (breaker.state, breaker.consecutive_failures) == (state, failures)


def test_threshold_is_configurable() -> None:
    config = BreakerConfig(threshold=1)
    assert transition(Breaker(), EV.OUTAGE, T0, config).state is BreakerState.OPEN


def test_open_refuses_until_its_interval_is_over() -> None:
    breaker = opened()
    assert breaker.open_until == T0 + 2.0 and next_probe_at(breaker) == T0 + 2.0
    for at in (T0, T0 + 1, T0 + 1.999):
        assert not allows_request(breaker, at)
        assert admit(breaker, at) == (breaker, False)
    assert allows_request(breaker, T0 + 2.0)


def test_exactly_one_probe_in_half_open() -> None:
    breaker = opened()
    first, granted = admit(breaker, T0 + 31)
    assert granted and first.state is BreakerState.HALF_OPEN and first.probe_in_flight
    # A second caller, in this process or in the next one reading the stored state, is refused.
    second, granted_again = admit(first, T0 + 31.5)
    assert not granted_again and second == first
    stored = Breaker.from_json(first.to_json())
    assert admit(stored, T0 + 32) == (stored, False)
    assert not allows_request(first, T0 + 32)


def test_granting_a_probe_too_early_changes_nothing() -> None:
    breaker = opened()
    assert transition(breaker, EV.PROBE_GRANTED, T0 + 1) == breaker


@pytest.mark.parametrize("event", [EV.SUCCESS, EV.REACHABLE])
def test_probe_success_closes(event: BreakerEvent) -> None:
    probing, _ = admit(opened(), T0 + 30)
    closed = transition(probing, event, T0 + 31)
    assert closed == Breaker()
    assert allows_request(closed, T0 + 31)


def test_failed_probes_reopen_for_longer_up_to_a_minute() -> None:
    """Every few seconds at first, so a short outage costs seconds; about a minute at most,
    since a probe is one cheap request."""
    breaker, at, intervals = opened(), T0, []
    for _ in range(8):
        intervals.append(breaker.open_until - at)
        at = breaker.open_until
        breaker, granted = admit(breaker, at)
        assert granted
        breaker = transition(breaker, EV.OUTAGE, at)
        assert breaker.state is BreakerState.OPEN and not breaker.probe_in_flight
    assert intervals == [2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]


def test_a_probe_that_never_reached_plex_is_handed_back() -> None:
    probing, _ = admit(opened(), T0 + 30)
    released = transition(probing, EV.NO_CONTACT, T0 + 31)
    assert released.state is BreakerState.HALF_OPEN and not released.probe_in_flight
    again, granted = admit(released, T0 + 31)
    assert granted and again.probe_in_flight


def test_a_probe_whose_process_died_expires() -> None:
    config = BreakerConfig(probe_lease=120.0)
    probing, _ = admit(opened(), T0 + 30, config)
    assert not admit(probing, T0 + 149, config)[1]
    assert admit(probing, T0 + 150, config)[1]


def test_a_clock_set_back_does_not_hold_the_breaker_open() -> None:
    breaker = opened(T0)
    assert not allows_request(breaker, T0 - 50)  # within the longest interval: wait
    assert allows_request(breaker, T0 - 3600)  # further than any interval: the clock moved


def test_outage_while_open_keeps_the_probe_time() -> None:
    breaker = opened()
    later = transition(breaker, EV.OUTAGE, T0 + 10)
    assert later.open_until == breaker.open_until and later.state is BreakerState.OPEN


# --- persistence ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "breaker",
    [
        Breaker(),
        Breaker(BreakerState.CLOSED, consecutive_failures=2),
        opened(),
        admit(opened(), T0 + 30)[0],
    ],
)
def test_json_round_trip(breaker: Breaker) -> None:
    text = breaker.to_json()
    assert json.loads(text)["version"] == 1
    assert Breaker.from_json(text) == breaker


@given(st.lists(st.tuples(st.sampled_from(list(BreakerEvent)), st.floats(0, 60)), max_size=30))
def test_any_reachable_state_round_trips(steps: list[tuple[BreakerEvent, float]]) -> None:
    breaker, at = Breaker(), T0
    for event, gap in steps:
        at += gap
        breaker = transition(breaker, event, at)
        assert Breaker.from_json(breaker.to_json()) == breaker


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[]",
        '{"state": "open"}',  # no version
        '{"version": 2, "state": "open", "consecutive_failures": 3}',  # from a newer plugin
        '{"version": 1, "state": "ajar", "consecutive_failures": 0}',
        '{"version": 1, "state": "open"}',
        '{"version": 1, "state": "open", "consecutive_failures": 3, "open_until": "soon"}',
        '{"version": 1, "state": "open", "consecutive_failures": 3, "open_until": 1e999}',
    ],
)
def test_from_json_rejects_what_it_cannot_trust(text: str) -> None:
    with pytest.raises(ValueError):
        Breaker.from_json(text)
    assert Breaker.load(text) == Breaker()


def test_load_without_a_row_is_closed() -> None:
    assert Breaker.load(None) == Breaker() and Breaker.load("") == Breaker()
    assert Breaker.load(opened().to_json()) == opened()
