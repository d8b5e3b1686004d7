"""Pacing for the drain: the token bucket and Retry-After hold live in `plex.pacing`.

One concept in one place: the Plex connection spaces each request with the same bucket,
and `plex/` may not import `worker`, so the code is there and this name stays for the
worker's imports.
"""

from plex.pacing import MAX_HOLD, Pacer, RateLimit, RateSettings, hold, take, wait_turn

__all__ = ["MAX_HOLD", "Pacer", "RateLimit", "RateSettings", "hold", "take", "wait_turn"]
