"""Every retry loop's vocabulary: exponential backoff with jitter, as pure functions of the
attempt number and a random source, and each loop's numbers side by side below.

Why not tenacity's wait strategies: its jittered waits (`wait_random_exponential`,
`wait_exponential_jitter`) draw from the global `random` module, and every strategy reads a
`RetryCallState` built by its retry driver. Our decisions are made for a job stored in
SQLite, possibly by another process, with the random source passed in so a test can state
the exact delay. What is left to write is the envelope `min(cap, base * 2**(n-1))`; the
tests check it against `tenacity.wait_exponential` so the two cannot disagree.

Every delay lies in `[base, cap]`: the floor is what makes a retry storm impossible (the
same scene retried five times in two seconds).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Protocol


class RandomSource(Protocol):
    """What we need from a random generator: `random.Random` has it, and so can a test stub."""

    def random(self) -> float: ...


class Jitter(str, Enum):
    """How a delay is spread below its exponential ceiling."""

    #: Exactly the ceiling: for one breaker, where nothing else competes for the same moment.
    NONE = "none"
    #: Anywhere in [base, ceiling]: spreads best; for contention (429, 5xx) where many jobs
    #: failed together (the "full jitter" of AWS's note, floored at base instead of 0).
    FULL = "full"
    #: In [max(base, ceiling / 2), ceiling]: keeps the doubling visible while still spreading;
    #: for waiting on something slow, such as a Plex library scan.
    EQUAL = "equal"


@dataclass(frozen=True)
class Backoff:
    """Base and cap in seconds; the n-th retry waits about `base * 2**(n-1)`, never above cap."""

    base: float
    cap: float
    jitter: Jitter = Jitter.EQUAL

    def __post_init__(self) -> None:
        if not 0 < self.base <= self.cap:
            raise ValueError(f"backoff needs 0 < base <= cap, got base={self.base} cap={self.cap}")


def ceiling(backoff: Backoff, attempt: int) -> float:
    """The un-jittered delay before retry number `attempt` (1 is the first retry).

    The exponent is bounded before raising 2 to it, so attempt 10**6 is the cap, not an
    OverflowError.
    """
    exponent = max(0, attempt - 1)
    if exponent >= 63 or backoff.base * 2.0**exponent >= backoff.cap:
        return backoff.cap
    return backoff.base * 2.0**exponent


def bounds(backoff: Backoff, attempt: int) -> tuple[float, float]:
    """The interval a jittered delay is drawn from; both ends never decrease with `attempt`."""
    high = ceiling(backoff, attempt)
    if backoff.jitter is Jitter.FULL:
        return backoff.base, high
    if backoff.jitter is Jitter.EQUAL:
        return max(backoff.base, high / 2), high
    return high, high


def delay(backoff: Backoff, attempt: int, rng: RandomSource) -> float:
    """A delay drawn uniformly from `bounds`; a stub returning 0.0 or 0.999 pins either end."""
    low, high = bounds(backoff, attempt)
    fraction = min(max(rng.random(), 0.0), 1.0)
    return min(high, low + (high - low) * fraction)


# --- each loop's numbers, side by side ------------------------------------------------------

#: A server's Retry-After is honoured at three levels. Up to `RETRY_AFTER_IN_REQUEST` it is
#: waited out inside the request (`plex.connection`); beyond that the request fails, and
#: every later request of the drain pauses for it, at most `RETRY_AFTER_HOLD` ahead
#: (`plex.pacing`), so one 429 cannot freeze a Stash task for an hour; the job itself is
#: deferred by it, at most `RETRY_AFTER_DEFER` ahead (`worker.policy`).
RETRY_AFTER_IN_REQUEST = 5.0
RETRY_AFTER_HOLD = 60.0
RETRY_AFTER_DEFER = 600.0

#: A transient failure inside one Plex request: retried `REQUEST_RETRIES` times, 0.25 s then
#: 0.5 s apart unless the server said how long; one request, so nothing to spread.
REQUEST_RETRIES = 2
REQUEST_BACKOFF = Backoff(0.25, 0.5, Jitter.NONE)

#: SQLite busy between our own processes (hooks, the worker, a task): spread out, because
#: the contention is ours and spreading it is what lets every process through.
LOCK_RETRIES = 10
LOCK_BACKOFF = Backoff(0.02, 8.0, Jitter.EQUAL)

#: A performer/studio/tag change Stash could not list (Stash down): tried again this long
#: after, while the drain goes on with the jobs it has.
FANOUT_BACKOFF = Backoff(60.0, 60.0, Jitter.NONE)
