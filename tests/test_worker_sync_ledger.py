"""worker.sync_ledger: the locks in flight between the Plex side and the queue that stores them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from plex.claims import Ownership
from plex.desired import DesiredState
from plex.records import CurrentState, LedgerEntry, LocksInFlight, SyncOutcome, SyncStatus
from plex.sync import PreparedSync
from sync_queue.jobs import JobQueue
from worker.sync_ledger import LedgerClaims, note_in_flight, record_sync

T0 = 1_700_000_000.0


class NoStash:
    def scene_with_file(self, path: str) -> int | None:
        raise AssertionError("the ledger answers these")


@pytest.fixture
def q(tmp_path: Path) -> Iterator[JobQueue]:
    queue = JobQueue(tmp_path)
    yield queue
    queue.close()


def prepared(flight: LocksInFlight | None, noted: LocksInFlight | None) -> PreparedSync:
    return PreparedSync(None, CurrentState("77"), "", Ownership(1), DesiredState(), "h", 0, {},
                        in_flight=flight, noted=noted)


def transactions(q: JobQueue) -> list[str]:
    """Every write transaction the queue's connection opens from now on."""
    seen: list[str] = []
    q._conn.set_trace_callback(lambda sql: seen.append(sql) if sql.startswith("BEGIN") else None)
    return seen


def test_locks_in_flight_are_noted_only_when_they_differ_from_those_noted(q: JobQueue) -> None:
    title = LocksInFlight("77", frozenset({"title"}))
    opened = transactions(q)
    note_in_flight(q, 1, prepared(None, None), T0)  # nothing to note: not even a transaction
    assert opened == []
    note_in_flight(q, 1, prepared(title, None), T0)
    assert len(opened) == 1 and LedgerClaims(q, NoStash()).in_flight(1) == title
    note_in_flight(q, 1, prepared(title, title), T0)  # noted already
    assert len(opened) == 1
    note_in_flight(q, 1, prepared(None, title), T0)  # none landed, none to set: the row goes
    assert len(opened) == 2 and LedgerClaims(q, NoStash()).in_flight(1) is None
    assert LedgerClaims(None, NoStash()).in_flight(1) is None  # no database yet


def test_recording_the_sync_clears_them(q: JobQueue) -> None:
    note_in_flight(q, 1, prepared(LocksInFlight("77", frozenset({"title"})), None), T0)
    entry = LedgerEntry(plex_key="77", locks=("title",))
    record_sync(q, 1, SyncOutcome(SyncStatus.WRITTEN, "77", entry), T0)
    assert LedgerClaims(q, NoStash()).in_flight(1) is None
    assert q.ledger.get(1).written["locks"] == ["title"]


def test_a_displaced_holder_hands_over_its_locks_in_flight_on_that_item(q: JobQueue) -> None:
    q.ledger.put(3, "h", "77", None, None, LedgerEntry(plex_key="77", plex_file="/m/a.mp4", locks=("genre",))
                 .to_dict(), T0)
    claims = LedgerClaims(q, NoStash())
    assert claims.rival("77", 1).locks == {"genre"}
    q.ledger.note_in_flight(3, "77", ["title"], T0)
    assert claims.rival("77", 1).locks == {"genre", "title"}
    q.ledger.note_in_flight(3, "80", ["title"], T0)  # its write went to another item
    assert claims.rival("77", 1).locks == {"genre"}
