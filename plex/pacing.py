"""How long to wait before the next request to Plex: a token bucket, a pure function of time.

The one place request pacing is decided. Two callers act on it, each with its own
`Pacer` state: `plex.connection` spaces every HTTP request to `max_request_rate`, and the
worker's drain waits out a server's Retry-After (`hold`) before its next job. It lives in
`plex/` because the connection may not import `worker`; the worker imports it from here.

The drain never sleeps a fixed amount between jobs (a fixed sleep only slows a healthy
sync and does nothing for a struggling server). Waiting comes from three places only: the
breaker (jobs held back until it allows a probe), a server's Retry-After, and the user's
`max_request_rate`. The last two live here; the caller sleeps through an injected `sleep`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

from base.backoff import RETRY_AFTER_HOLD


class RateSettings(Protocol):
    @property
    def max_request_rate(self) -> float: ...


@dataclass(frozen=True)
class RateLimit:
    """`rate` requests per second (0: unlimited); `burst` requests may go back to back."""

    rate: float = 0.0
    burst: float = 1.0

    @classmethod
    def from_settings(cls, settings: RateSettings) -> RateLimit:
        return cls.per_second(settings.max_request_rate)

    @classmethod
    def per_second(cls, rate: float) -> RateLimit:
        """A configured rate as a limit: anything but a positive finite number is unlimited."""
        rate = float(rate)
        return cls(rate if math.isfinite(rate) and rate > 0 else 0.0)


@dataclass(frozen=True)
class Pacer:
    """The bucket: `tokens` left at `updated_at` (negative: requests already promised a slot).

    A fresh `Pacer()` is full, so the first request of a drain never waits.
    """

    tokens: float = math.inf
    updated_at: float | None = None
    hold_until: float | None = None


#: Longest a server's Retry-After may pause the whole drain (see `base.backoff`).
MAX_HOLD = RETRY_AFTER_HOLD


def take(pacer: Pacer, limit: RateLimit, now: float) -> tuple[Pacer, float]:
    """Reserve the next request: the new state, and how long to wait before sending it.

    The reservation is made at once (the bucket goes into debt), so calls made without the
    clock moving are spaced `1 / rate` apart rather than all let through.
    """
    held = 0.0 if pacer.hold_until is None else max(0.0, pacer.hold_until - now)
    if limit.rate <= 0:
        return pacer, held
    elapsed = 0.0 if pacer.updated_at is None else max(0.0, now - pacer.updated_at)
    tokens = min(limit.burst, pacer.tokens + elapsed * limit.rate)
    wait = 0.0 if tokens >= 1.0 else (1.0 - tokens) / limit.rate
    # `updated_at = now` even if the clock went back, so refill resumes from the new reading.
    return replace(pacer, tokens=tokens - 1.0, updated_at=now), max(wait, held)


def hold(pacer: Pacer, until: float, now: float, max_hold: float = MAX_HOLD) -> Pacer:
    """Pause every request until `until` (a server's Retry-After), at most `max_hold` ahead."""
    bounded = min(until, now + max_hold)
    if pacer.hold_until is not None and pacer.hold_until - now <= max_hold:
        bounded = max(bounded, pacer.hold_until)
    return replace(pacer, hold_until=bounded)


def wait_turn(pacer: Pacer, limit: RateLimit, now: float, sleep: Callable[[float], None]) -> Pacer:
    """Take a slot and sleep until it comes: the one place pacing acts, through `sleep`.

    `sleep` is injected so a test records it (`sleep=waits.append`) and shutdown can wake it.
    """
    pacer, wait = take(pacer, limit, now)
    if wait > 0:
        sleep(wait)
    return pacer
