"""Task arguments as Stash passes them (text from `defaultArgs`), checked once.

A bad argument is one clear line in Stash's log; nothing runs with a guess.
"""

from __future__ import annotations

import math
from typing import Any

from base.errors import Stash2PlexError


class BadTaskArgument(Stash2PlexError):
    """A task argument (days, error class) that cannot be used."""


def number(raw: Any, name: str) -> float:
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise BadTaskArgument(f"Task argument '{name}' must be a number, got {raw!r}.") from None
    if not math.isfinite(value) or value < 0:
        raise BadTaskArgument(f"Task argument '{name}' must be a number of at least 0, got {raw!r}.")
    return value


def parse_limit(raw: Any) -> int | None:
    """The `limit` task argument: empty, 0 or "all" is every scene; else a positive whole number."""
    text = "" if raw is None else str(raw).strip().lower()
    if text in ("", "0", "all"):
        return None
    try:
        value = float(text)
    except ValueError:
        raise BadTaskArgument(f"Task argument 'limit' must be a number of scenes, got {raw!r}.") from None
    if not math.isfinite(value) or value < 0 or value != int(value):
        raise BadTaskArgument(f"Task argument 'limit' must be a whole number of scenes, got {raw!r}.")
    return int(value) or None  # "0.0" or "00" mean every scene, as "0" does
