"""When auto-reconcile is due: `worker.background.reconcile_due`, a pure table."""

from __future__ import annotations

import pytest

from base.settings import RECONCILE_INTERVALS
from worker.background import reconcile_due

T = 1_700_000_000.0
HOUR = RECONCILE_INTERVALS["hourly"]


@pytest.mark.parametrize(("last", "interval", "now", "due"), [
    (None, None, T, False),  # never
    (T - 10 * 86400, None, T, False),
    (None, HOUR, T, True),  # never ran
    (T - HOUR, HOUR, T, True),  # exactly one interval ago
    (T - HOUR + 1, HOUR, T, False),
    (T, HOUR, T, False),  # just ran
    (T + 600, HOUR, T, True),  # a record from the future: the clock was set back
    (T - 86400 + 60, RECONCILE_INTERVALS["daily"], T, False),
    (T - 8 * 86400, RECONCILE_INTERVALS["weekly"], T, True),
])
def test_reconcile_due(last: float | None, interval: float | None, now: float, due: bool) -> None:
    assert reconcile_due(last, interval, now) is due
