"""Stash's `Time` scalar as text and back: what filters send and what answers carry.

gqlgen writes RFC 3339 with any offset and up to nine fractional digits, which Python 3.10's
`fromisoformat` cannot read; Stash stores whole seconds, so the fraction is dropped.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone

_FRACTION = re.compile(r"\.\d+(?=Z|[+-]\d\d:\d\d$|$)")


def stash_stamp(when: float) -> str:
    """Epoch seconds as the UTC text Stash accepts, whole seconds."""
    return datetime.fromtimestamp(when, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_stamp(text: str) -> float | None:
    """Stash's RFC 3339 `Time` text (any offset, maybe fractional seconds) as epoch seconds."""
    if not text:
        return None
    whole = _FRACTION.sub("", text.strip()).replace("Z", "+00:00")
    try:
        return datetime.fromisoformat(whole).timestamp()
    except ValueError:
        return None
