"""Times as people read them: in the logs, Queue Status and Health Check.

Pure: every function takes the time it formats; none reads the clock.
"""

from __future__ import annotations

from datetime import datetime, timezone

_UNITS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))


def relative(seconds: float) -> str:
    """'in 4m 30s': the two largest units, since a person plans by the larger one."""
    total = int(seconds)
    if total < 1:
        return "now"
    for index, (unit, size) in enumerate(_UNITS):
        if total >= size:
            text = f"in {total // size}{unit}"
            if index + 1 < len(_UNITS):
                next_unit, next_size = _UNITS[index + 1]
                rest = total % size // next_size
                text += f" {rest}{next_unit}" if rest else ""
            return text
    return "now"  # unreachable: total >= 1 matches seconds


def absolute_utc(when: float) -> str:
    """UTC, not local time: the worker log, Stash's log and a bug report then agree."""
    return datetime.fromtimestamp(when, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
