"""What one drain did, for Stash's log, the task's output and the stdout JSON.

A person reading it should learn in one look what was synced, what is waiting and until
when, what needs their attention (dead letters, by reason), and why the drain stopped if it
did. Every scene is counted once, under its latest outcome: a job deferred and later
synced in the same drain is synced, not also deferred.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from base.clock import absolute_utc, relative
from worker.policy import (
    LABELS,
    Complete,
    CompleteReason,
    Decision,
    ErrorClass,
    GiveUp,
    RetryAt,
    StopDrain,
)

#: The log shows this many deferred scenes, soonest first; `to_dict` has them all.
DEFERRED_SHOWN = 10


@dataclass(frozen=True)
class Deferred:
    next_retry_at: float
    error_class: ErrorClass
    message: str = ""


@dataclass
class DrainSummary:
    """Mutable on purpose: one per drain, fed once per job, never shared or stored."""

    synced: int = 0
    unchanged: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    deferred: dict[int, Deferred] = field(default_factory=dict)
    dead_lettered: dict[ErrorClass, list[int]] = field(default_factory=dict)
    stopped: str | None = None

    def record(self, scene_id: int, decision: Decision) -> None:
        """Count one job's outcome; the same values the drain applies to the queue."""
        self.deferred.pop(scene_id, None)
        if isinstance(decision, Complete):
            self._complete(decision.reason)
        elif isinstance(decision, RetryAt):
            self.deferred[scene_id] = Deferred(decision.when, decision.error_class, decision.message)
        elif isinstance(decision, GiveUp):
            self.dead_lettered.setdefault(decision.error_class, []).append(scene_id)
        elif isinstance(decision, StopDrain) and self.stopped is None:
            self.stopped = decision.reason  # said once: later stops add nothing new

    def _complete(self, reason: CompleteReason) -> None:
        if reason is CompleteReason.SYNCED:
            self.synced += 1
        elif reason is CompleteReason.UNCHANGED:
            self.unchanged += 1
        else:
            self.skipped[reason.value] = self.skipped.get(reason.value, 0) + 1

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())

    @property
    def dead_lettered_total(self) -> int:
        return sum(len(ids) for ids in self.dead_lettered.values())

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types only, for the stdout JSON Stash shows as the task's output."""
        return {
            "synced": self.synced,
            "unchanged": self.unchanged,
            "skipped": dict(sorted(self.skipped.items())),
            "deferred": [
                {"scene_id": scene_id, "next_retry_at": d.next_retry_at, "error_class": d.error_class.value}
                for scene_id, d in _soonest_first(self.deferred)
            ],
            "dead_lettered": {kind.value: list(ids) for kind, ids in sorted(self.dead_lettered.items())},
            "stopped": self.stopped,
        }


_SKIP_WORDS = {
    CompleteReason.SKIPPED_NOT_FOUND.value: "not in Plex, skipped as set",
    CompleteReason.SCENE_GONE.value: "deleted in Stash",
}


def held_for_probe(summary: DrainSummary, probe_at: float | None) -> None:
    """A job deferred before the breaker opened cannot run before the breaker's probe, so its
    next try is the later of the two: say that, not the earlier backoff it was given."""
    if probe_at is None:
        return
    for scene_id, d in summary.deferred.items():
        if d.next_retry_at < probe_at:
            summary.deferred[scene_id] = replace(d, next_retry_at=probe_at)


def format_summary(summary: DrainSummary, now: float) -> str:
    """One paragraph, then a line per deferred scene (soonest first) and per dead-letter reason."""
    counts = [
        f"{summary.synced} synced",
        f"{summary.unchanged} unchanged",
        f"{summary.skipped_total} skipped" + _breakdown(summary.skipped),
        f"{len(summary.deferred)} deferred",
        f"{summary.dead_lettered_total} dead-lettered",
    ]
    lines = ["Stash2Plex: " + ", ".join(counts) + "."]
    if summary.stopped:
        lines.append(f"Stopped early: {summary.stopped.rstrip('.')}. Remaining jobs are kept for the next run.")
    for kind, ids in sorted(summary.dead_lettered.items()):
        lines.append(f"Dead-lettered, {LABELS[kind]}: scenes {_ids(ids)}.")
    shown = _soonest_first(summary.deferred)[:DEFERRED_SHOWN]
    for scene_id, d in shown:
        lines.append(
            f"Deferred scene {scene_id} ({LABELS[d.error_class]}): next try {relative(d.next_retry_at - now)}"
            f" ({absolute_utc(d.next_retry_at)})."
        )
    if len(summary.deferred) > len(shown):
        lines.append(f"... and {len(summary.deferred) - len(shown)} more deferred.")
    return "\n".join(lines)


def _breakdown(skipped: dict[str, int]) -> str:
    if not skipped:
        return ""
    return " (" + ", ".join(f"{n} {_SKIP_WORDS.get(k, k)}" for k, n in sorted(skipped.items())) + ")"


def _soonest_first(deferred: dict[int, Deferred]) -> list[tuple[int, Deferred]]:
    return sorted(deferred.items(), key=lambda item: (item[1].next_retry_at, item[0]))


def _ids(ids: list[int], shown: int = 20) -> str:
    text = ", ".join(str(i) for i in ids[:shown])
    return text + (f" and {len(ids) - shown} more" if len(ids) > shown else "")

