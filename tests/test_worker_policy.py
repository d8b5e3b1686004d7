"""The retry policy as tables: classify, the decision for every class at the attempt
boundaries, and properties of backoff and decide over many inputs."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tenacity import RetryCallState, wait_exponential

from plugin.errors import (
    AmbiguousMatch,
    InvalidData,
    PlexAuthError,
    PlexNotFound,
    PlexUnavailable,
    SceneGone,
    SettingsError,
    Stash2PlexError,
    StashAuthError,
    StashUnavailable,
    TransientError,
)
from worker.backoff import Backoff, Jitter, bounds, ceiling, delay
from worker.breaker import BreakerEvent
from worker.policy import (
    Complete,
    CompleteReason,
    DeadLetter,
    ErrorClass,
    Failure,
    RetryAt,
    RetryPolicy,
    StopDrain,
    breaker_event,
    classify,
    decide,
)

NOW = 1_700_000_000.0
E = ErrorClass


class Fixed:
    """A random source that always returns the same fraction: pins a delay to one end."""

    def __init__(self, value: float) -> None:
        self.value = value

    def random(self) -> float:
        return self.value


LOW, HIGH = Fixed(0.0), Fixed(0.999999)


# --- classify -------------------------------------------------------------------------


class SubclassOfNotFound(PlexNotFound):
    pass


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (PlexNotFound("no item"), E.NOT_FOUND),
        (SubclassOfNotFound("no item"), E.NOT_FOUND),
        (AmbiguousMatch("two", ("a", "b")), E.AMBIGUOUS),
        (TransientError("timeout"), E.TRANSIENT),
        (TransientError("429", retry_after=12), E.TRANSIENT),
        (PlexUnavailable("refused"), E.OUTAGE),
        (PlexAuthError("401"), E.AUTH),
        (InvalidData("400"), E.INVALID),
        (StashUnavailable("down"), E.STASH_DOWN),
        (StashAuthError("401"), E.STASH_DOWN),
        (SettingsError("plex_url"), E.CONFIG),
        (SceneGone("deleted"), E.GONE),
        (Stash2PlexError("untranslated"), E.BUG),
        (KeyError("title"), E.BUG),
        (ConnectionResetError("raw, not translated by the façade"), E.BUG),
    ],
)
def test_classify(exc: Exception, expected: ErrorClass) -> None:
    assert classify(exc) is expected


def test_failure_carries_retry_after_candidates_paths_and_traceback() -> None:
    assert Failure.from_exception(TransientError("429", retry_after=7)).retry_after == 7.0
    assert Failure.from_exception(TransientError("timeout")).retry_after is None
    ambiguous = Failure.from_exception(AmbiguousMatch("two items", ("/a/x.mp4", "/b/x.mp4")))
    assert "/a/x.mp4" in ambiguous.detail and "/b/x.mp4" in ambiguous.detail
    missing = Failure.from_exception(PlexNotFound("none", ("/media/x.mp4",)))
    assert "/media/x.mp4" in missing.detail
    try:
        {}["title"]
    except KeyError as exc:
        bug = Failure.from_exception(exc)
    assert bug.error_class is E.BUG
    assert "Traceback" in bug.detail and "KeyError" in bug.detail
    assert bug.message == "KeyError: 'title'"


# --- decide: the table ----------------------------------------------------------------


def failure(kind: ErrorClass, retry_after: float | None = None) -> Failure:
    return Failure(kind, f"{kind.value} happened", retry_after, f"detail of {kind.value}")


def policy(max_retries: int = 5, skip: bool = False, strict: bool = True) -> RetryPolicy:
    return RetryPolicy(max_retries=max_retries, skip_not_found=skip, strict_matching=strict)


# (class, attempts before, max_retries, skip_not_found, strict, expected kind, consume_attempt)
RETRY, DLQ, DONE, STOP = RetryAt, DeadLetter, Complete, StopDrain
TABLE = [
    # not in Plex yet: retries up to the limit, then dead letter or skipped
    (E.NOT_FOUND, 0, 5, False, True, RETRY, True),
    (E.NOT_FOUND, 3, 5, False, True, RETRY, True),
    (E.NOT_FOUND, 4, 5, False, True, DLQ, None),
    (E.NOT_FOUND, 4, 5, True, True, DONE, None),
    (E.NOT_FOUND, 3, 5, True, True, RETRY, True),
    (E.NOT_FOUND, 9, 5, False, True, DLQ, None),  # max_retries lowered since: still stops
    (E.NOT_FOUND, 0, 1, False, True, DLQ, None),
    (E.NOT_FOUND, 0, 1, True, False, DONE, None),
    # ambiguous: strict dead-letters at once; otherwise waits like not-found, never skipped
    (E.AMBIGUOUS, 0, 5, False, True, DLQ, None),
    (E.AMBIGUOUS, 0, 5, True, True, DLQ, None),
    (E.AMBIGUOUS, 0, 5, False, False, RETRY, True),
    (E.AMBIGUOUS, 3, 5, True, False, RETRY, True),
    (E.AMBIGUOUS, 4, 5, False, False, DLQ, None),
    (E.AMBIGUOUS, 4, 5, True, False, DLQ, None),
    # transient
    (E.TRANSIENT, 0, 5, False, True, RETRY, True),
    (E.TRANSIENT, 3, 5, True, False, RETRY, True),
    (E.TRANSIENT, 4, 5, False, True, DLQ, None),
    (E.TRANSIENT, 4, 5, True, True, DLQ, None),
    # outage: never an attempt, whatever the count
    (E.OUTAGE, 0, 5, False, True, RETRY, False),
    (E.OUTAGE, 4, 5, False, True, RETRY, False),
    (E.OUTAGE, 49, 5, True, False, RETRY, False),
    # the whole drain stops, the job is kept
    (E.AUTH, 0, 5, False, True, STOP, None),
    (E.AUTH, 4, 5, True, False, STOP, None),
    (E.STASH_DOWN, 0, 5, False, True, STOP, None),
    (E.STASH_DOWN, 4, 5, True, False, STOP, None),
    (E.CONFIG, 4, 5, False, True, STOP, None),
    # invalid data: dead letter at once
    (E.INVALID, 0, 5, False, True, DLQ, None),
    (E.INVALID, 0, 5, True, False, DLQ, None),
    # the item belongs to another scene: dead letter at once, whatever the settings
    (E.DUPLICATE, 0, 5, False, True, DLQ, None),
    (E.DUPLICATE, 0, 5, True, False, DLQ, None),
    # scene gone: finished
    (E.GONE, 0, 5, False, True, DONE, None),
    (E.GONE, 4, 5, True, False, DONE, None),
    # bug: min(3, max_retries) attempts
    (E.BUG, 0, 5, False, True, RETRY, True),
    (E.BUG, 1, 5, False, True, RETRY, True),
    (E.BUG, 2, 5, False, True, DLQ, None),
    (E.BUG, 0, 2, False, True, RETRY, True),
    (E.BUG, 1, 2, False, True, DLQ, None),
    (E.BUG, 0, 1, True, False, DLQ, None),
]


@pytest.mark.parametrize(("kind", "attempts", "max_retries", "skip", "strict", "expected", "consume"), TABLE)
def test_decision_table(
    kind: ErrorClass, attempts: int, max_retries: int, skip: bool, strict: bool, expected: type, consume: bool | None
) -> None:
    decision = decide(failure(kind), attempts, policy(max_retries, skip, strict), NOW, random.Random(1))
    assert type(decision) is expected
    if isinstance(decision, RetryAt):
        assert decision.consume_attempt is consume
        assert decision.error_class is kind
        assert decision.when > NOW
    if isinstance(decision, DeadLetter):
        assert decision.error_class is kind
        assert decision.detail == f"detail of {kind.value}"
    if isinstance(decision, StopDrain):
        assert decision.keep_job and decision.error_class is kind
        assert f"{kind.value} happened" in decision.reason


def test_table_covers_every_class() -> None:
    assert {row[0] for row in TABLE} == set(ErrorClass)


def test_complete_reasons() -> None:
    gone = decide(failure(E.GONE), 0, policy(), NOW, LOW)
    skipped = decide(failure(E.NOT_FOUND), 4, policy(skip=True), NOW, LOW)
    assert gone == Complete(CompleteReason.SCENE_GONE, "gone happened")
    assert isinstance(skipped, Complete) and skipped.reason is CompleteReason.SKIPPED_NOT_FOUND


def test_dead_letter_message_says_why_and_how_many_attempts() -> None:
    decision = decide(failure(E.NOT_FOUND), 4, policy(), NOW, LOW)
    assert isinstance(decision, DeadLetter)
    assert decision.message == "not in Plex yet after 5 attempts: not_found happened"


@pytest.mark.parametrize(
    ("kind", "attempts", "rng", "expected_delay"),
    [
        (E.NOT_FOUND, 0, LOW, 30.0),  # first retry: exactly the base
        (E.NOT_FOUND, 0, HIGH, 30.0),
        (E.NOT_FOUND, 1, LOW, 30.0),  # equal jitter: [max(30, 60/2), 60]
        (E.NOT_FOUND, 1, HIGH, 60.0),
        (E.NOT_FOUND, 2, LOW, 60.0),
        (E.NOT_FOUND, 2, HIGH, 120.0),
        (E.NOT_FOUND, 10, LOW, 300.0),  # capped at 10 min
        (E.NOT_FOUND, 10, HIGH, 600.0),
        (E.TRANSIENT, 0, LOW, 5.0),
        (E.TRANSIENT, 2, LOW, 5.0),  # full jitter: [5, 20]
        (E.TRANSIENT, 2, HIGH, 20.0),
        (E.TRANSIENT, 30, HIGH, 300.0),  # capped at 5 min
        (E.BUG, 0, LOW, 15.0),
        (E.BUG, 1, HIGH, 30.0),
    ],
)
def test_backoff_per_class(kind: ErrorClass, attempts: int, rng: Fixed, expected_delay: float) -> None:
    decision = decide(failure(kind), attempts, policy(max_retries=50), NOW, rng)
    assert isinstance(decision, RetryAt)
    assert decision.when - NOW == pytest.approx(expected_delay, abs=1e-3)


@pytest.mark.parametrize(
    ("retry_after", "expected_delay"),
    [(12.0, 12.0), (0.0, 1.0), (-5.0, 1.0), (3600.0, 600.0), (250.5, 250.5)],
)
def test_retry_after_wins_within_bounds(retry_after: float, expected_delay: float) -> None:
    decision = decide(failure(E.TRANSIENT, retry_after), 2, policy(), NOW, HIGH)
    assert isinstance(decision, RetryAt)
    assert decision.when - NOW == expected_delay
    assert decision.consume_attempt


def test_retry_after_does_not_outlive_max_retries() -> None:
    assert isinstance(decide(failure(E.TRANSIENT, 5.0), 4, policy(), NOW, LOW), DeadLetter)


@pytest.mark.parametrize(
    ("open_until", "rng", "expected_delay"),
    [
        (NOW + 30.0, LOW, 30.0),  # breaker open: due exactly when it allows a probe
        (NOW + 600.0, HIGH, 600.0),
        (None, LOW, 5.0),  # breaker still counting: a short retry
        (NOW - 10.0, LOW, 5.0),  # a stale open_until never schedules into the past
        (NOW, HIGH, 5.0),
    ],
)
def test_outage_waits_for_the_breaker(open_until: float | None, rng: Fixed, expected_delay: float) -> None:
    decision = decide(failure(E.OUTAGE), 3, policy(), NOW, rng, breaker_open_until=open_until)
    assert isinstance(decision, RetryAt)
    assert decision.when - NOW == pytest.approx(expected_delay, abs=1e-3)
    assert not decision.consume_attempt


def test_policy_from_settings() -> None:
    class Stub:
        max_retries = 7
        skip_not_found = True
        strict_matching = False

    built = RetryPolicy.from_settings(Stub())
    assert (built.max_retries, built.skip_not_found, built.strict_matching) == (7, True, False)


@pytest.mark.parametrize(
    ("kind", "event"),
    [
        (None, BreakerEvent.SUCCESS),
        (E.OUTAGE, BreakerEvent.OUTAGE),
        (E.TRANSIENT, BreakerEvent.REACHABLE),
        (E.NOT_FOUND, BreakerEvent.REACHABLE),
        (E.AMBIGUOUS, BreakerEvent.REACHABLE),
        (E.AUTH, BreakerEvent.REACHABLE),
        (E.INVALID, BreakerEvent.REACHABLE),
        (E.GONE, BreakerEvent.NO_CONTACT),
        (E.STASH_DOWN, BreakerEvent.NO_CONTACT),
        (E.CONFIG, BreakerEvent.NO_CONTACT),
        (E.BUG, BreakerEvent.NO_CONTACT),
    ],
)
def test_breaker_event(kind: ErrorClass | None, event: BreakerEvent) -> None:
    assert breaker_event(kind) is event


# --- backoff --------------------------------------------------------------------------


@pytest.mark.parametrize("backoff", [Backoff(30, 600), Backoff(5, 300), Backoff(1.5, 7), Backoff(2, 2)])
def test_ceiling_agrees_with_tenacity_wait_exponential(backoff: Backoff) -> None:
    reference = wait_exponential(multiplier=backoff.base, max=backoff.cap)
    state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
    for attempt in (*range(1, 40), 1000, 10**6):
        state.attempt_number = attempt
        assert ceiling(backoff, attempt) == reference(state)


def test_backoff_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        Backoff(0, 10)
    with pytest.raises(ValueError):
        Backoff(10, 5)


backoffs = st.builds(
    lambda base, factor, jitter: Backoff(base, base * factor, jitter),
    st.floats(0.01, 1000), st.floats(1, 1000), st.sampled_from(list(Jitter)),
)


@given(backoffs, st.integers(-5, 10_000), st.floats(0, 1, exclude_max=True))
def test_backoff_within_base_and_cap(backoff: Backoff, attempt: int, fraction: float) -> None:
    assert backoff.base <= delay(backoff, attempt, Fixed(fraction)) <= backoff.cap


@given(backoffs, st.integers(1, 200))
def test_backoff_never_decreases_in_expectation(backoff: Backoff, attempt: int) -> None:
    low, high = bounds(backoff, attempt)
    next_low, next_high = bounds(backoff, attempt + 1)
    assert low <= next_low and high <= next_high
    assert (low + high) / 2 <= (next_low + next_high) / 2


# --- decide: properties ---------------------------------------------------------------


policies = st.builds(
    RetryPolicy, max_retries=st.integers(1, 50), skip_not_found=st.booleans(), strict_matching=st.booleans()
)
failures = st.builds(
    Failure,
    st.sampled_from(list(ErrorClass)),
    st.just("boom"),
    st.one_of(st.none(), st.floats(-10, 10**6, allow_nan=False)),
)
times = st.floats(0, 4e9, allow_nan=False)


@given(failures, st.integers(0, 100), policies, times, st.integers(0, 2**32),
       st.one_of(st.none(), st.floats(0, 4e9, allow_nan=False)))
def test_a_retry_is_never_due_now_or_earlier(
    fail: Failure, attempts: int, pol: RetryPolicy, now: float, seed: int, open_until: float | None
) -> None:
    decision = decide(fail, attempts, pol, now, random.Random(seed), open_until)
    if isinstance(decision, RetryAt):
        assert decision.when > now


@given(st.integers(0, 100), policies, times, st.integers(0, 2**32),
       st.one_of(st.none(), st.floats(0, 4e9, allow_nan=False)))
def test_an_outage_never_consumes_an_attempt(
    attempts: int, pol: RetryPolicy, now: float, seed: int, open_until: float | None
) -> None:
    decision = decide(failure(E.OUTAGE), attempts, pol, now, random.Random(seed), open_until)
    assert isinstance(decision, RetryAt) and not decision.consume_attempt


@given(policies, st.integers(0, 2**32))
def test_not_found_ends_exactly_at_max_retries(pol: RetryPolicy, seed: int) -> None:
    """Replays a job's life: each retry consumes one attempt, until the policy gives up."""
    rng, now, attempts = random.Random(seed), NOW, 0
    while True:
        decision = decide(failure(E.NOT_FOUND), attempts, pol, now, rng)
        if not isinstance(decision, RetryAt):
            break
        assert decision.consume_attempt and decision.when >= now + 30.0
        attempts, now = attempts + 1, decision.when
    assert attempts + 1 == pol.max_retries
    if pol.skip_not_found:
        assert decision == Complete(CompleteReason.SKIPPED_NOT_FOUND, decision.message)
    else:
        assert isinstance(decision, DeadLetter) and decision.error_class is E.NOT_FOUND


@given(policies, st.integers(0, 2**32))
def test_a_bug_never_gets_more_than_three_attempts(pol: RetryPolicy, seed: int) -> None:
    rng, attempts = random.Random(seed), 0
    while isinstance(decision := decide(failure(E.BUG), attempts, pol, NOW, rng), RetryAt):
        assert decision.when - NOW >= 15.0
        attempts += 1
    assert isinstance(decision, DeadLetter)
    assert attempts + 1 == min(3, pol.max_retries)
