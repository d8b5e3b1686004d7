"""Plain records that cross `plex/`'s edges: what Plex holds, what the ledger keeps, what a sync did.

No plexapi object ever leaves the I/O modules: an item is read once into `CurrentState`
and decisions only see that (plexapi objects reload themselves over HTTP when an empty
attribute is read, which would break the request budget silently).

`LedgerEntry` is the contract with `sync_queue`'s sync ledger: the worker stores
`outcome.ledger.to_dict()` (JSON types only) for the scene and gives it back, as the dict
or the record, on the next sync. Unknown keys are ignored so either side can add fields.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from enum import Enum
from typing import Any

from plex.desired import Actor


@dataclass(frozen=True)
class CurrentState:
    """One Plex item as read: the one record every decision about an item reads.

    Read from a full reload (`/library/metadata/{key}`, `listing` False) it is complete: every
    tag list in full, locks included. Read from a section listing (`/all`, `listing` True)
    the scalars are complete but each tag list is cut short (Plex lists only the first few
    tags of each kind) and `locked` is empty because a listing shows no locks, not because
    none are set; only judgements a prefix can prove may use it (`reconciliation.gaps`).
    Attribute names are `plex.fields.FIELDS`' `attr`.
    """

    rating_key: str
    section_id: str = ""
    title: str = ""
    title_sort: str = ""
    studio: str = ""
    summary: str = ""
    tagline: str = ""
    originally_available_at: str = ""
    rating: float | None = None
    genres: tuple[str, ...] = ()
    actors: tuple[Actor, ...] = ()
    collections: tuple[str, ...] = ()
    locked: frozenset[str] = frozenset()
    thumb: str = ""
    art: str = ""
    files: tuple[str, ...] = ()
    primary_file: str = ""  # the first Part that is not an optimised version
    listing: bool = False


@dataclass(frozen=True)
class LedgerEntry:
    """What we remember about a scene's last successful sync.

    `written` holds, per Plex field, the Stash value we last synced (the middle of the
    three-way comparison behind `preserve_plex_edits`, and the set of collections that are
    ours to remove). `*_source` is the image URL we last downloaded, `*_hash` the sha256 of
    the bytes we uploaded: an unchanged URL costs no download, unchanged bytes no upload.
    """

    plex_key: str | None = None
    plex_file: str | None = None  # the item's Part this scene holds (its claim, see plex.claims)
    state_hash: str | None = None
    written: Mapping[str, Any] = field(default_factory=dict)
    poster_source: str | None = None
    poster_hash: str | None = None
    art_source: str | None = None
    art_hash: str | None = None
    locks: tuple[str, ...] | None = None  # Plex locks we set; None: recorded before we kept them
    user_locked: tuple[str, ...] = ()  # fields left alone because someone else locked them
    section_id: str | None = None  # the item's library section: a collection lives in one
    #: The scene's place in each Stash group it is in (group id -> scene_index, None when
    #: unnumbered): what the group's collection is ordered by, read back by the collection flush.
    group_index: Mapping[str, int | None] = field(default_factory=dict)
    #: The item's release date (`originallyAvailableAt`, "" for none) as our last sync left
    #: it; None: recorded before we kept it. A group collection whose members' dates follow
    #: their scene numbers relies on Plex's release-date order (`plex.collection_plan`).
    released: str | None = None

    def to_dict(self) -> dict[str, Any]:
        # Field by field, not `asdict`: its deep copy of `written` cost a millisecond a sync.
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["written"] = dict(self.written)
        out["locks"] = None if self.locks is None else list(self.locks)
        out["user_locked"] = list(self.user_locked)
        out["group_index"] = dict(self.group_index)
        return out

    @classmethod
    def from_any(cls, value: LedgerEntry | Mapping[str, Any] | None) -> LedgerEntry | None:
        """Accept the record, its dict form (possibly from an older version), or nothing."""
        if value is None or isinstance(value, LedgerEntry):
            return value
        known = {f for f in cls.__dataclass_fields__}
        data = {k: v for k, v in value.items() if k in known}
        data["written"] = dict(data.get("written") or {})
        if data.get("locks") is not None:
            data["locks"] = tuple(data["locks"])
        data["user_locked"] = tuple(data.get("user_locked") or ())
        data["group_index"] = dict(data.get("group_index") or {})
        if data.get("plex_key") is not None:
            data["plex_key"] = str(data["plex_key"])
        return cls(**data)


@dataclass(frozen=True)
class LocksInFlight:
    """Locks a write of ours may have set on an item that no ledger row records yet: noted
    before the write goes out (`plex.diff.locks_in_flight`), so a process killed after
    Plex took the edit and before its ledger row was written still counts them as its own."""

    plex_key: str
    locks: frozenset[str]


class SyncStatus(str, Enum):
    WRITTEN = "written"  # at least one request changed the item
    UNCHANGED = "unchanged"  # Plex already showed the desired state
    SKIPPED = "skipped"  # the ledger proved nothing changed: Plex was not asked at all


@dataclass(frozen=True)
class SyncOutcome:
    """What one sync did, and what the ledger should now hold."""

    status: SyncStatus
    plex_key: str
    ledger: LedgerEntry
    changes: tuple[str, ...] = ()  # human-readable "field: before -> after" lines
    kept: tuple[str, ...] = ()  # fields where a Plex edit was preserved
    kept_locked: tuple[str, ...] = ()  # fields left alone: someone else locked them in Plex
    images_uploaded: tuple[str, ...] = ()  # "poster", "art"
    requests: int = 0  # Plex requests this sync made (for summaries and the benchmark)
    displaced: int | None = None  # a scene whose claim on this item the sync took over
