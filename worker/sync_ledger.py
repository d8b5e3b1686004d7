"""The sync ledger between the queue, which stores it, and `plex/`, which reads and writes it.

A sync is given what the last one wrote (`previous_sync`: the record kept in the row's
`written`, without the item key once Plex lost the item) and stores what it wrote plus the
Stash ids the scene showed (`record_sync`, which clears its locks in flight). Before its
write goes out, the locks it may set are noted (`note_in_flight`). `LedgerClaims` answers
`plex.sync.ClaimSource` from the ledger: which other scene holds a Plex item, and which
locks a scene's unrecorded write may have set.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Protocol

from plex.claims import Claim
from plex.diff import locks_we_set
from plex.records import LedgerEntry, LocksInFlight, SyncOutcome
from reconciliation.fanout import scene_refs
from stash.records import Scene
from sync_queue.jobs import JobQueue
from sync_queue.ledger import LEDGER_REFS

if TYPE_CHECKING:
    from plex.sync import PreparedSync


class FileOwners(Protocol):
    def scene_with_file(self, path: str) -> int | None: ...


def previous_sync(queue: JobQueue, scene_id: int) -> LedgerEntry | None:
    """What the last sync wrote, as plex/ expects it; a lost item keeps `written`, not its key."""
    entry = queue.ledger.get(scene_id)
    if entry is None:
        return None
    record = LedgerEntry.from_any(entry.written)
    if record is not None and entry.lost:
        record = replace(record, plex_key=None)
    return record


def record_sync(queue: JobQueue, scene_id: int, outcome: SyncOutcome, now: float,
                scene: Scene | None = None) -> None:
    """Store what the sync wrote, plus the Stash ids it showed (`LEDGER_REFS`): once a
    performer, studio or tag is deleted, only these tell which scenes showed it."""
    ledger = outcome.ledger
    written = ledger.to_dict()
    if scene is not None:
        written[LEDGER_REFS] = scene_refs(scene)
    queue.ledger.put(scene_id, ledger.state_hash or "", outcome.plex_key, ledger.poster_hash,
                     ledger.art_hash, written, now)


def note_in_flight(queue: JobQueue, scene_id: int, prepared: PreparedSync, now: float) -> None:
    """Before the write is handed on: the locks it may set, committed, unless already noted."""
    flight = prepared.in_flight
    if flight != prepared.noted:
        queue.ledger.note_in_flight(scene_id, flight.plex_key if flight else "", flight.locks if flight else (), now)


#: Reason on the job of a scene whose Plex item another scene took over.
ITEM_CLAIMED = "item_claimed"


@dataclass
class LedgerClaims:
    """`plex.sync.ClaimSource` over our ledger and Stash: who else holds an item."""

    queue: JobQueue | None  # None: no ledger yet (a dry run before the first sync)
    stash: FileOwners

    def rival(self, plex_key: str, scene_id: int) -> Claim | None:
        """The holder's locks are those its ledger row records, and those its unrecorded
        writes may have set on this item."""
        entry = self.queue.ledger.holder(plex_key, scene_id) if self.queue is not None else None
        if entry is None:
            return None
        record = LedgerEntry.from_any(entry.written)
        flight = self.in_flight(entry.scene_id)
        pending = flight.locks if flight is not None and flight.plex_key == plex_key else frozenset()
        return Claim(entry.scene_id, record.plex_file if record else None, locks_we_set(record) | pending)

    def in_flight(self, scene_id: int) -> LocksInFlight | None:
        noted = self.queue.ledger.in_flight(scene_id) if self.queue is not None else None
        return LocksInFlight(*noted) if noted is not None else None

    def scene_with_file(self, stash_path: str) -> int | None:
        return self.stash.scene_with_file(stash_path)
