"""The emulated Stash's play history and resume point, as Stash's scene mutations keep them.

* `sceneAddPlay(id, times)` appends one view date per time, kept at second precision,
  and answers the count and the whole history; with no times it records one play now.
  It never merges equal times: two plays in the same second are two plays.
* `sceneSaveActivity(id, resume_time, playDuration)` sets the resume point when given and
  adds the duration to the total when given; it touches nothing else (not `updated_at`).
* `play_count` is the number of view dates, `last_played_at` the newest, or null.

A `Timestamp` is RFC 3339 text, or `<4h` / `>5m` for that long before / after now.
"""

from __future__ import annotations

import bisect
import re
from datetime import datetime

from emulators.stash_library import Scene

_RELATIVE = re.compile(r"^([<>])(\d+)([smhd])$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class BadTimestamp(ValueError):
    """Text Stash's Timestamp scalar does not accept."""


def parse_timestamp(text: str, now: float) -> float:
    """Epoch seconds of a Timestamp input, truncated to the second as Stash stores it."""
    relative = _RELATIVE.match(text.strip())
    if relative:
        sign, amount, unit = relative.groups()
        delta = int(amount) * _UNIT[unit]
        return float(int(now - delta if sign == "<" else now + delta))
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise BadTimestamp(f"{text!r} is not RFC3339 or a relative time") from None
    if moment.tzinfo is None:
        raise BadTimestamp(f"{text!r} has no time zone")
    return float(int(moment.timestamp()))


def add_plays(scene: Scene, times: list[float]) -> None:
    for when in times:
        bisect.insort(scene.play_history, when)
    scene.play_count = len(scene.play_history)


def save_activity(scene: Scene, resume_time: float | None, play_duration: float | None) -> None:
    if resume_time is not None:
        scene.resume_time = float(resume_time)
    if play_duration is not None:
        scene.play_duration += float(play_duration)


def last_played_at(scene: Scene) -> float | None:
    return scene.play_history[-1] if scene.play_history else None
