"""The Plex circuit breaker: a frozen state record and a pure transition `(state, event, now)`.

While Plex is down, no request should reach it: not one per job, not one per process. After
`threshold` consecutive outages the breaker opens for an interval that doubles with every
failed probe (2 s up to 1 min by default). When the interval is over, exactly one caller
is granted a probe; granting is itself a transition, so once its new state is stored a
second caller is refused. The probe's outcome closes the breaker or re-opens it for longer.

The state is saved (a row in the shared SQLite file, written by `sync_queue`) so the next
process, spawned by the next hook, respects an open breaker instead of starting over. Times
are epoch seconds for that reason; `allows_request` also copes with a clock set back.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, replace
from enum import Enum

from base.backoff import Backoff, Jitter, ceiling

SCHEMA_VERSION = 1


class BreakerState(str, Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class BreakerEvent(str, Enum):
    """What happened; `worker.policy.breaker_event` maps an attempt's outcome to one of these."""

    OUTAGE = "outage"  # Plex could not be reached at all
    SUCCESS = "success"  # the attempt reached Plex and succeeded
    REACHABLE = "reachable"  # Plex answered, with an error: it is up, so same as SUCCESS
    NO_CONTACT = "no_contact"  # the attempt ended without talking to Plex: says nothing
    PROBE_GRANTED = "probe_granted"  # one caller may now send the probe


@dataclass(frozen=True)
class BreakerConfig:
    threshold: int = 3
    #: Open for 2 s, doubling with each failed probe up to 1 min: the probe is one cheap
    #: request (`/identity`), so probing often costs Plex nothing, and once Plex answers the
    #: jobs it holds go within seconds. No jitter: one breaker per plugin, so nothing
    #: competes for the probe moment.
    open_interval: Backoff = Backoff(2.0, 60.0, Jitter.NONE)
    #: A probe whose process died (Stash kills hooks with SIGKILL) is given up after this
    #: long, so a stored `probe_in_flight` cannot hold the breaker half-open forever.
    probe_lease: float = 120.0


@dataclass(frozen=True)
class Breaker:
    """The breaker's whole state; `trips` counts openings since it was last closed."""

    state: BreakerState = BreakerState.CLOSED
    consecutive_failures: int = 0
    opened_at: float | None = None
    open_until: float | None = None
    probe_in_flight: bool = False
    probe_granted_at: float | None = None
    trips: int = 0

    def to_json(self) -> str:
        data = asdict(self)
        data["state"] = self.state.value
        return json.dumps({"version": SCHEMA_VERSION, **data}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Breaker:
        """Raises ValueError for anything that is not a breaker of a version we understand."""
        try:
            data = json.loads(text)
        except (TypeError, json.JSONDecodeError) as exc:
            raise ValueError(f"breaker state is not JSON: {exc}") from None
        if not isinstance(data, dict) or data.get("version") != SCHEMA_VERSION:
            raise ValueError(f"breaker state has no version {SCHEMA_VERSION}: {text[:80]!r}")
        try:
            return cls(
                state=BreakerState(data["state"]),
                consecutive_failures=int(data["consecutive_failures"]),
                opened_at=_optional_time(data.get("opened_at")),
                open_until=_optional_time(data.get("open_until")),
                probe_in_flight=bool(data.get("probe_in_flight", False)),
                probe_granted_at=_optional_time(data.get("probe_granted_at")),
                trips=int(data.get("trips", 0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"breaker state is malformed: {exc}") from None

    @classmethod
    def load(cls, text: str | None) -> Breaker:
        """A saved state, or a closed breaker when there is none or it cannot be read.

        Losing a saved state costs at most `threshold` requests to a Plex that is down; refusing
        to start over a bad row would stop syncing for good.
        """
        if not text:
            return cls()
        try:
            return cls.from_json(text)
        except ValueError:
            return cls()


def _optional_time(value: object) -> float | None:
    if value is None:
        return None
    number = float(value)  # type: ignore[arg-type]
    if not math.isfinite(number):
        raise ValueError(f"not a time: {value!r}")
    return number


def probe_due(breaker: Breaker, now: float, config: BreakerConfig = BreakerConfig()) -> bool:
    """May a probe be granted now? Open and its time has come, or a granted probe's lease ran out.

    An `open_until` further ahead than the longest interval means the clock was set back
    since it was stored: the interval is treated as over rather than waited out.
    """
    if breaker.state is BreakerState.OPEN:
        until = breaker.open_until if breaker.open_until is not None else now
        return now >= until or until - now > config.open_interval.cap
    if breaker.state is BreakerState.HALF_OPEN:
        if not breaker.probe_in_flight:
            return True
        granted = breaker.probe_granted_at if breaker.probe_granted_at is not None else now
        return now - granted >= config.probe_lease or granted - now > config.probe_lease
    return False


def allows_request(breaker: Breaker, now: float, config: BreakerConfig = BreakerConfig()) -> bool:
    """Would a request be let through? A probe still has to be taken with `admit`."""
    return breaker.state is BreakerState.CLOSED or probe_due(breaker, now, config)


def admit(breaker: Breaker, now: float, config: BreakerConfig = BreakerConfig()) -> tuple[Breaker, bool]:
    """Ask to send a request: the new state to store, and whether the request may go.

    In half-open the first caller's new state has the probe in flight, so a second caller
    working from that state is refused.
    """
    if breaker.state is BreakerState.CLOSED:
        return breaker, True
    if probe_due(breaker, now, config):
        return transition(breaker, BreakerEvent.PROBE_GRANTED, now, config), True
    return breaker, False


def next_probe_at(breaker: Breaker) -> float | None:
    """When a job held back by an open breaker should next be due (`None` if not open)."""
    return breaker.open_until if breaker.state is BreakerState.OPEN else None


def transition(
    breaker: Breaker, event: BreakerEvent, now: float, config: BreakerConfig = BreakerConfig()
) -> Breaker:
    """The breaker after `event` at `now`. Total: an event that does not apply changes nothing."""
    if event in (BreakerEvent.SUCCESS, BreakerEvent.REACHABLE):
        # Any answer from Plex proves it is up, even a late one while open.
        return Breaker()
    if event is BreakerEvent.OUTAGE:
        return _on_outage(breaker, now, config)
    if event is BreakerEvent.PROBE_GRANTED:
        if not probe_due(breaker, now, config):
            return breaker
        return replace(breaker, state=BreakerState.HALF_OPEN, probe_in_flight=True, probe_granted_at=now)
    # NO_CONTACT: nothing learned about Plex; a probe that never reached it is handed back.
    if breaker.state is BreakerState.HALF_OPEN:
        return replace(breaker, probe_in_flight=False, probe_granted_at=None)
    return breaker


def _on_outage(breaker: Breaker, now: float, config: BreakerConfig) -> Breaker:
    failures = breaker.consecutive_failures + 1
    if breaker.state is BreakerState.HALF_OPEN:
        return _open(breaker, failures, breaker.trips + 1, now, config)  # the probe failed
    if breaker.state is BreakerState.OPEN:
        # A request sent before it opened (or by another process) failed too: no news.
        return replace(breaker, consecutive_failures=failures)
    if failures >= config.threshold:
        return _open(breaker, failures, 1, now, config)
    return replace(breaker, consecutive_failures=failures)


def _open(breaker: Breaker, failures: int, trips: int, now: float, config: BreakerConfig) -> Breaker:
    return Breaker(
        state=BreakerState.OPEN,
        consecutive_failures=failures,
        opened_at=now,
        open_until=now + ceiling(config.open_interval, trips),
        trips=trips,
    )
