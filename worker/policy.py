"""What happens to a job after an attempt: classify the outcome, then decide. Nothing here acts.

`classify(exc)` maps the small exception vocabulary of `plugin.errors` to an `ErrorClass`;
`decide(failure, attempts, policy, now, rng, ...)` returns one `Decision` value, which the
drain applies to the queue (complete, retry later, dead-letter) or to itself (stop). One
policy serves every path that processes jobs, so there is no second copy to drift.

The decision table (`n` = attempts counted after this failure, `limit` = max_retries):

| class      | attempt? | decision                                                                  |
|------------|----------|---------------------------------------------------------------------------|
| NOT_FOUND  | yes      | n < limit: retry, long backoff. n >= limit: dead-letter, or complete as    |
|            |          | skipped when skip_not_found                                               |
| AMBIGUOUS  | strict:  | dead-letter at once, listing the candidates                               |
|            | else yes | as NOT_FOUND, but at the limit always dead-letter with the candidates     |
| TRANSIENT  | yes      | n < limit: retry after Retry-After (capped) or a short backoff; else DLQ  |
| OUTAGE     | no       | retry when the breaker will allow a probe                                 |
| AUTH       | no       | stop the drain, keep the job as it is                                     |
| INVALID    | -        | dead-letter at once                                                       |
| DUPLICATE  | -        | dead-letter at once, naming the scene that owns the item                  |
| STASH_DOWN | no       | stop the drain, keep the job as it is                                     |
| CONFIG     | no       | stop the drain, keep the job as it is                                     |
| GONE       | -        | complete (the scene was deleted: nothing left to sync)                    |
| BUG        | yes      | n < min(3, limit): retry with backoff; else dead-letter with the traceback |

The why of each row sits next to its branch in `decide`.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from plugin.errors import (
    AmbiguousMatch,
    DuplicateItem,
    InvalidData,
    PlexAuthError,
    PlexNotFound,
    PlexUnavailable,
    SceneGone,
    SettingsError,
    Stash2PlexError,
    StashAuthError,
    StashUnavailable,
    TransientError,
)
from worker.backoff import Backoff, Jitter, RandomSource, delay
from worker.breaker import BreakerEvent


class ErrorClass(str, Enum):
    """What kind of failure an attempt ended in; stored with the job as `last_error_class`."""

    NOT_FOUND = "not_found"
    AMBIGUOUS = "ambiguous"
    TRANSIENT = "transient"
    OUTAGE = "outage"
    AUTH = "auth"
    INVALID = "invalid"
    DUPLICATE = "duplicate"
    STASH_DOWN = "stash_down"
    CONFIG = "config"
    GONE = "gone"
    BUG = "bug"


#: Words for a person reading the log or the dead-letter list.
LABELS: dict[ErrorClass, str] = {
    ErrorClass.NOT_FOUND: "not in Plex yet",
    ErrorClass.AMBIGUOUS: "several Plex items match",
    ErrorClass.TRANSIENT: "Plex request failed (temporary)",
    ErrorClass.OUTAGE: "Plex unreachable",
    ErrorClass.AUTH: "Plex rejected the token",
    ErrorClass.INVALID: "Plex rejected the data",
    ErrorClass.DUPLICATE: "its Plex item belongs to another scene",
    ErrorClass.STASH_DOWN: "Stash unreachable or rejected the plugin",
    ErrorClass.CONFIG: "a setting is missing or unusable",
    ErrorClass.GONE: "scene deleted in Stash",
    ErrorClass.BUG: "internal error in Stash2Plex",
}

# Most specific first: isinstance order matters once the vocabulary grows subclasses.
_CLASSES: tuple[tuple[type[Exception], ErrorClass], ...] = (
    (PlexNotFound, ErrorClass.NOT_FOUND),
    (AmbiguousMatch, ErrorClass.AMBIGUOUS),
    (TransientError, ErrorClass.TRANSIENT),
    (PlexUnavailable, ErrorClass.OUTAGE),
    (PlexAuthError, ErrorClass.AUTH),
    (InvalidData, ErrorClass.INVALID),
    (DuplicateItem, ErrorClass.DUPLICATE),
    (StashUnavailable, ErrorClass.STASH_DOWN),
    (StashAuthError, ErrorClass.STASH_DOWN),
    (SettingsError, ErrorClass.CONFIG),
    (SceneGone, ErrorClass.GONE),
)


def classify(exc: Exception) -> ErrorClass:
    """Anything the façades did not translate is a bug in the plugin, by construction.

    Not for `KeyboardInterrupt`/`SystemExit`: the drain lets those propagate unclassified.
    """
    for kind, error_class in _CLASSES:
        if isinstance(exc, kind):
            return error_class
    return ErrorClass.BUG


@dataclass(frozen=True)
class Failure:
    """A classified failure with what the decision and the dead-letter entry need from it."""

    error_class: ErrorClass
    message: str
    retry_after: float | None = None
    detail: str = ""

    @classmethod
    def from_exception(cls, exc: Exception) -> Failure:
        error_class = classify(exc)
        return cls(error_class, _message(exc), _retry_after(exc), _detail(error_class, exc))


def _message(exc: Exception) -> str:
    """Our own errors are written for the user; anything else needs its type to make sense."""
    text = str(exc).strip()
    if text and isinstance(exc, Stash2PlexError):
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _retry_after(exc: Exception) -> float | None:
    value = getattr(exc, "retry_after", None) if isinstance(exc, TransientError) else None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _detail(error_class: ErrorClass, exc: Exception) -> str:
    """What a person needs to act on a dead letter: the candidates, the paths, the traceback."""
    if error_class is ErrorClass.AMBIGUOUS:
        candidates = getattr(exc, "candidates", ()) or ()
        return "Candidates in Plex:\n" + "\n".join(f"  {c}" for c in candidates) if candidates else ""
    if error_class is ErrorClass.NOT_FOUND:
        paths = getattr(exc, "paths_tried", ()) or ()
        return "Paths tried in Plex:\n" + "\n".join(f"  {p}" for p in paths) if paths else ""
    if error_class is ErrorClass.BUG:
        return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return ""


# --- decisions ------------------------------------------------------------------------


class CompleteReason(str, Enum):
    """Why a job finished; the summary counts each separately."""

    SYNCED = "synced"
    UNCHANGED = "unchanged"
    SKIPPED_NOT_FOUND = "skipped_not_found"
    SCENE_GONE = "scene_gone"


@dataclass(frozen=True)
class Complete:
    """Finish the job: it will not run again (until a new event enqueues the scene)."""

    reason: CompleteReason
    message: str = ""


@dataclass(frozen=True)
class RetryAt:
    """Put the job back, due at `when` (always later than the `now` it was decided at)."""

    when: float
    consume_attempt: bool
    error_class: ErrorClass
    message: str


@dataclass(frozen=True)
class DeadLetter:
    """Move the job to the dead-letter list; `message` says why in one line, `detail` the rest."""

    error_class: ErrorClass
    message: str
    detail: str = ""


@dataclass(frozen=True)
class StopDrain:
    """Stop processing: every further job would fail the same way, so none is touched.

    `keep_job`: the job goes back exactly as it was taken, attempts and due time unchanged.
    """

    error_class: ErrorClass
    reason: str
    keep_job: bool = True


Decision = Complete | RetryAt | DeadLetter | StopDrain


class RetrySettings(Protocol):
    """The part of `plugin.settings.Settings` the policy reads."""

    @property
    def max_retries(self) -> int: ...
    @property
    def skip_not_found(self) -> bool: ...
    @property
    def strict_matching(self) -> bool: ...


@dataclass(frozen=True)
class RetryPolicy:
    """The knobs of `decide`; build it from the user's settings with `from_settings`."""

    max_retries: int = 5
    skip_not_found: bool = False
    strict_matching: bool = True
    #: Waiting for a Plex scan: minutes, not seconds.
    not_found_backoff: Backoff = Backoff(30.0, 600.0, Jitter.EQUAL)
    #: Timeouts, resets, 5xx, 429: short, and fully jittered since many jobs fail together.
    transient_backoff: Backoff = Backoff(5.0, 300.0, Jitter.FULL)
    #: A bug rarely fixes itself; the backoff only stops it from spinning.
    bug_backoff: Backoff = Backoff(15.0, 300.0, Jitter.EQUAL)
    bug_max_attempts: int = 3
    #: A server's Retry-After is honoured up to this many seconds.
    retry_after_cap: float = 600.0
    #: And no sooner than this, so Retry-After: 0 cannot make a job spin.
    min_delay: float = 1.0

    @classmethod
    def from_settings(cls, settings: RetrySettings) -> RetryPolicy:
        """Typed by what it reads, so a test can pass a three-field stand-in for `Settings`."""
        return cls(
            max_retries=max(1, int(settings.max_retries)),
            skip_not_found=bool(settings.skip_not_found),
            strict_matching=bool(settings.strict_matching),
        )


def decide(
    failure: Failure,
    attempts: int,
    policy: RetryPolicy,
    now: float,
    rng: RandomSource,
    breaker_open_until: float | None = None,
) -> Decision:
    """The one answer to "what happens after this failed attempt?".

    `attempts` is the job's count before this failure. `breaker_open_until` is the breaker's
    state *after* this outcome was fed to it (see `worker.breaker.transition`), so an outage
    that just opened the breaker reschedules the job to the probe time.
    """
    kind = failure.error_class
    used = attempts + 1  # attempts counted once this failure is recorded

    if kind is ErrorClass.GONE:
        # The scene was deleted in Stash: there is nothing left to sync, which is success.
        return Complete(CompleteReason.SCENE_GONE, failure.message)

    if kind in (ErrorClass.AUTH, ErrorClass.STASH_DOWN, ErrorClass.CONFIG):
        # Not about this job: with a bad Plex token, Stash down or a missing setting every
        # following job fails the same way. Stop once, say why once, and keep every job
        # intact so fixing the cause loses nothing and never uses up anyone's attempts.
        return StopDrain(kind, f"{LABELS[kind]}: {failure.message}")

    if kind is ErrorClass.INVALID:
        # Plex said 400, or the data cannot be written as it is: the same request will get the
        # same answer, so retrying only delays the moment a person sees it.
        return DeadLetter(kind, f"{LABELS[kind]}: {failure.message}", failure.detail)

    if kind is ErrorClass.DUPLICATE:
        # Another scene owns the item by the stated rule; no retry changes that until a person
        # removes one of the two files (then Retry Dead Letters) or a pass sees a new state.
        return DeadLetter(kind, f"{LABELS[kind]}: {failure.message}", failure.detail)

    if kind is ErrorClass.AMBIGUOUS and policy.strict_matching:
        # Strict matching: the user asked us never to guess; a person picks from the list.
        return DeadLetter(kind, f"{LABELS[kind]}: {failure.message}", failure.detail)

    if kind is ErrorClass.OUTAGE:
        # Plex down says nothing about this job: no attempt used, so a long outage can never
        # dead-letter a library. The breaker holds every job back until it allows a probe.
        return RetryAt(_outage_until(policy, now, rng, breaker_open_until), False, kind, failure.message)

    if kind in (ErrorClass.NOT_FOUND, ErrorClass.AMBIGUOUS):
        # Usually Plex has not scanned the file yet (or a scan will tell two items apart):
        # wait minutes, not seconds, and let max_retries bound the wait.
        if used < policy.max_retries:
            return _retry(policy.not_found_backoff, used, policy, now, rng, failure)
        if kind is ErrorClass.NOT_FOUND and policy.skip_not_found:
            # The user asked for files Plex never sees (not in any library) to be dropped quietly.
            return Complete(CompleteReason.SKIPPED_NOT_FOUND, _gave_up(failure, used))
        # skip_not_found speaks of files Plex does not have; an ambiguous file is there twice,
        # so it still needs a person to choose.
        return DeadLetter(kind, _gave_up(failure, used), failure.detail)

    if kind is ErrorClass.TRANSIENT:
        # Timeouts, resets, 5xx, 429: usually gone in seconds. The server's Retry-After knows
        # better than our backoff, so it wins, within a cap.
        if used >= policy.max_retries:
            return DeadLetter(kind, _gave_up(failure, used), failure.detail)
        if failure.retry_after is not None:
            wait = min(max(failure.retry_after, policy.min_delay), policy.retry_after_cap)
            return RetryAt(now + wait, True, kind, failure.message)
        return _retry(policy.transient_backoff, used, policy, now, rng, failure)

    # A bug: an exception nobody translated. Retrying a few times covers a race; more would
    # only hide it. Still backed off, so a bug can never spin (field report 000).
    if used >= min(policy.bug_max_attempts, policy.max_retries):
        return DeadLetter(ErrorClass.BUG, _gave_up(failure, used), failure.detail)
    return _retry(policy.bug_backoff, used, policy, now, rng, failure)


def _retry(
    backoff: Backoff, used: int, policy: RetryPolicy, now: float, rng: RandomSource, failure: Failure
) -> RetryAt:
    wait = max(delay(backoff, used, rng), policy.min_delay)
    return RetryAt(now + wait, True, failure.error_class, failure.message)


def _outage_until(
    policy: RetryPolicy, now: float, rng: RandomSource, breaker_open_until: float | None
) -> float:
    """The probe time if the breaker is open; else a short retry while it counts failures."""
    if breaker_open_until is not None and breaker_open_until > now:
        return breaker_open_until
    return now + max(delay(policy.transient_backoff, 1, rng), policy.min_delay)


def _gave_up(failure: Failure, used: int) -> str:
    plural = "s" if used != 1 else ""
    return f"{LABELS[failure.error_class]} after {used} attempt{plural}: {failure.message}"


def breaker_event(error_class: ErrorClass | None) -> BreakerEvent:
    """What an attempt's outcome tells the breaker; `None` is a success.

    Only an outage counts against Plex. Any answer from Plex, even an error, proves it is
    reachable. A scene deleted in Stash, Stash being down, a missing setting or a bug may
    never have reached Plex, so they say nothing (but release a probe they were granted).
    """
    if error_class is None:
        return BreakerEvent.SUCCESS
    if error_class is ErrorClass.OUTAGE:
        return BreakerEvent.OUTAGE
    if error_class in (ErrorClass.GONE, ErrorClass.STASH_DOWN, ErrorClass.CONFIG, ErrorClass.BUG):
        return BreakerEvent.NO_CONTACT
    return BreakerEvent.REACHABLE
