"""A processing halt (a bad Plex token): said once, kept until the token changes.

Every later job would get the same 401, so the drain records the halt and no worker a hook
starts asks Plex again with this token. The token itself is never stored, only enough of
its hash to tell a changed token from the same one.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def token_fingerprint(token: str) -> str:
    """Enough to tell a changed token from the same one, without storing the token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()[:16]


def halt_record(reason: str, token: str, now: float) -> str:
    return json.dumps({"reason": reason, "token": token_fingerprint(token), "since": now})


def halt_applies(record: str | None, token: str) -> dict[str, Any] | None:
    """The stored halt if it still applies to this token; a new token lifts it."""
    if not record:
        return None
    try:
        data = json.loads(record)
    except json.JSONDecodeError:
        return None
    if not isinstance(data, dict) or data.get("token") != token_fingerprint(token):
        return None
    return data
