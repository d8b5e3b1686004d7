"""Exponential backoff with jitter, as pure functions of the attempt number and a random source.

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
