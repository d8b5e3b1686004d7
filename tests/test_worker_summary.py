"""The drain summary: counting each scene once under its latest outcome, and reading well."""

from __future__ import annotations

import json

import pytest

from base.clock import absolute_utc, relative
from worker.policy import Complete, CompleteReason, ErrorClass, GiveUp, RetryAt, StopDrain
from worker.summary import (
    DEFERRED_SHOWN,
    Deferred,
    DrainSummary,
    format_summary,
    held_for_probe,
)

NOW = 1_772_359_200.0  # 2026-03-01 10:00:00 UTC
SYNCED = Complete(CompleteReason.SYNCED)
E = ErrorClass


def later(seconds: float, kind: ErrorClass = E.NOT_FOUND) -> RetryAt:
    return RetryAt(NOW + seconds, True, kind, "PlexNotFound: no item")


def sample() -> DrainSummary:
    summary = DrainSummary()
    for scene_id in (1, 2, 3):
        summary.record(scene_id, SYNCED)
    summary.record(4, Complete(CompleteReason.UNCHANGED))
    summary.record(5, Complete(CompleteReason.SKIPPED_NOT_FOUND))
    summary.record(6, Complete(CompleteReason.SCENE_GONE))
    summary.record(7, later(270))
    summary.record(8, later(30, E.TRANSIENT))
    summary.record(9, GiveUp(E.INVALID, "Plex rejected the data: 400"))
    summary.record(10, GiveUp(E.AMBIGUOUS, "several Plex items match"))
    summary.record(11, GiveUp(E.INVALID, "Plex rejected the data: 400"))
    return summary


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (-30, "now"), (0, "now"), (0.9, "now"), (1, "in 1s"), (45, "in 45s"), (60, "in 1m"),
        (270, "in 4m 30s"), (3600, "in 1h"), (3601, "in 1h"), (3660, "in 1h 1m"),
        (86400 + 3600 + 61, "in 1d 1h"),
    ],
)
def test_relative(seconds: float, text: str) -> None:
    assert relative(seconds) == text


def test_absolute_is_utc() -> None:
    assert absolute_utc(NOW + 270) == "2026-03-01 10:04:30 UTC"


def test_counts() -> None:
    summary = sample()
    assert (summary.synced, summary.unchanged, summary.skipped_total) == (3, 1, 2)
    assert summary.skipped == {"skipped_not_found": 1, "scene_gone": 1}
    assert set(summary.deferred) == {7, 8}
    assert summary.dead_lettered == {E.INVALID: [9, 11], E.AMBIGUOUS: [10]}
    assert summary.stopped is None


def test_a_scene_is_counted_once_under_its_latest_outcome() -> None:
    summary = DrainSummary()
    summary.record(7, later(30))
    summary.record(7, SYNCED)
    assert summary.deferred == {} and summary.synced == 1
    summary.record(8, later(30))
    summary.record(8, later(90))
    assert summary.deferred[8].next_retry_at == NOW + 90


def test_the_first_stop_reason_is_kept() -> None:
    summary = DrainSummary()
    summary.record(1, StopDrain(E.AUTH, "Plex rejected the token: 401"))
    summary.record(2, StopDrain(E.STASH_DOWN, "Stash unreachable"))
    assert summary.stopped == "Plex rejected the token: 401"


def test_format_summary() -> None:
    text = format_summary(sample(), NOW)
    assert text.splitlines() == [
        "Stash2Plex: 3 synced, 1 unchanged, 2 skipped (1 deleted in Stash, 1 not in Plex, skipped as set),"
        " 2 deferred, 3 dead-lettered.",
        "Dead-lettered, several Plex items match: scenes 10.",
        "Dead-lettered, Plex rejected the data: scenes 9, 11.",
        "Deferred scene 8 (Plex request failed (temporary)): next try in 30s (2026-03-01 10:00:30 UTC).",
        "Deferred scene 7 (not in Plex yet): next try in 4m 30s (2026-03-01 10:04:30 UTC).",
    ]


def test_format_says_why_it_stopped() -> None:
    summary = DrainSummary(synced=2)
    summary.record(3, StopDrain(E.AUTH, "Plex rejected the token: PlexAuthError: 401"))
    text = format_summary(summary, NOW)
    assert "Stopped early: Plex rejected the token: PlexAuthError: 401." in text
    assert "Remaining jobs are kept" in text


def test_an_empty_drain_reads_as_nothing_done() -> None:
    assert format_summary(DrainSummary(), NOW) == (
        "Stash2Plex: 0 synced, 0 unchanged, 0 skipped, 0 deferred, 0 dead-lettered."
    )


def test_a_long_deferred_list_is_cut_in_the_log_but_not_in_the_json() -> None:
    summary = DrainSummary()
    for scene_id in range(100):
        summary.record(scene_id, later(1000 - scene_id))
    lines = format_summary(summary, NOW).splitlines()
    deferred = [line for line in lines if line.startswith("Deferred scene")]
    assert len(deferred) == DEFERRED_SHOWN
    assert deferred[0].startswith("Deferred scene 99 ")  # soonest first
    assert lines[-1] == f"... and {100 - DEFERRED_SHOWN} more deferred."
    assert len(summary.to_dict()["deferred"]) == 100


def test_to_dict_is_plain_json() -> None:
    data = json.loads(json.dumps(sample().to_dict()))
    assert data == {
        "synced": 3,
        "unchanged": 1,
        "skipped": {"scene_gone": 1, "skipped_not_found": 1},
        "deferred": [
            {"scene_id": 8, "next_retry_at": NOW + 30, "error_class": "transient"},
            {"scene_id": 7, "next_retry_at": NOW + 270, "error_class": "not_found"},
        ],
        "dead_lettered": {"ambiguous": [10], "invalid": [9, 11]},
        "stopped": None,
    }


def test_jobs_deferred_before_the_breaker_opened_wait_for_its_probe() -> None:
    summary = DrainSummary()
    summary.deferred[1] = Deferred(NOW + 3, E.OUTAGE, "refused")
    summary.deferred[2] = Deferred(NOW + 600, E.NOT_FOUND, "not scanned")
    held_for_probe(summary, NOW + 30)
    assert summary.deferred[1].next_retry_at == NOW + 30
    assert summary.deferred[2].next_retry_at == NOW + 600  # later than the probe already
    held_for_probe(summary, None)  # breaker closed: nothing moves
    assert summary.deferred[1].next_retry_at == NOW + 30
