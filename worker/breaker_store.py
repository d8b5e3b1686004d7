"""Which Plex a stored breaker is about: a breaker opened while `plex_url` or the token was
wrong must not hold the jobs once the user fixed it. Pure: text in, text or state out.
"""

from __future__ import annotations

import json

from worker.breaker import Breaker
from worker.halt import token_fingerprint


def plex_target(url: str, token: str) -> str:
    """Names the Plex a breaker is about, without storing the token."""
    return token_fingerprint(f"{url}\n{token}")


def breaker_for(text: str | None, target: str) -> Breaker:
    """The stored breaker if it is about `target`; a closed one if it was opened for another
    address or token. A breaker stored without a target (older versions) applies to any."""
    if text and target:
        try:
            stored = json.loads(text).get("target")
        except (ValueError, AttributeError):
            stored = None
        if stored not in (None, target):
            return Breaker()
    return Breaker.load(text)


def stored_breaker(breaker: Breaker, target: str) -> str:
    if not target:
        return breaker.to_json()
    return json.dumps({**json.loads(breaker.to_json()), "target": target}, sort_keys=True)
