"""Collections in Reconcile and Dry Run: what drifted in Plex, and what a sync would change.

Reconcile checks the collections we own (`sync_queue.collections`) against the section's
collections listing (a reconcile reads, it does not write):

* **missing**: Plex no longer lists it (a person deleted it, and with it the items' tags):
  the row is dropped and its scenes are queued, so their next edits make it again, ours;
* **drifted**: its name, summary, poster or order is not what we wrote (edited in Plex):
  what we recorded for that part is forgotten and the row is due, so the next drain's flush
  writes it again. A collection a person made is never checked: it is theirs.

A group collection's order is read (`GET .../children`) only where it could have drifted
unseen. The listing shows its sort, so a sort someone changed needs no read. One in a
custom order we set can be re-ordered by hand without a trace, so Reconcile All reads
each of those; the narrower scopes (recent, 7 days) do not. One that relies on Plex's
release-date order changes only with its items' dates, which the section listing that
Reconcile reads anyway shows: where a member's date is not the one our ledger recorded,
its order is read, and those scenes are queued so their ledger learns the date.

The dry run tallies the collections Stash's scenes ask for, page by page, and judges each
once at the end with the flush's own plan (`plex.collection_plan`), reading the order of
ours so "order" is said only when a move would be sent.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence, Set
from dataclasses import dataclass, field
from typing import Any

from base.settings import Settings
from plex.collection_plan import (
    RELEASED,
    SORT_CUSTOM,
    SORT_RELEASE,
    Listed,
    Wanted,
    in_release_order,
    order_moves,
    plan_collection,
)
from plex.collection_specs import CollectionSpec, scene_collections
from plex.collections import member_order, read_children, read_collections
from plex.connection import PlexConnection
from plex.desired import desired_state
from reconciliation.gaps import Snapshot, shows
from stash.records import Scene
from sync_queue.collections import CollectionRow
from sync_queue.jobs import JobQueue
from sync_queue.ledger import Member

MISSING = "missing"
#: Parts of a collection and the `written` keys forgotten when they drifted.
DRIFT_KEYS: dict[str, tuple[str, ...]] = {
    "name": ("title",), "summary": ("summary",), "poster": ("poster_source", "poster_hash"), "order": ("order",),
}

ReadOrder = Callable[[str], list[str]]


def find(listing: Mapping[str, Listed], rating_key: str | None, title: str) -> Listed | None:
    if rating_key:
        hit = next((c for c in listing.values() if c.rating_key == rating_key), None)
        if hit is not None:
            return hit
    return listing.get(title.casefold())


def drifted(row: CollectionRow, listed: Listed | None, members: Sequence[str],
            order: Sequence[str] | None) -> tuple[str, ...]:
    """Which parts of our collection differ from what we last wrote (`DRIFT_KEYS`), or
    (`MISSING`,) when Plex does not list it; `order` is its order as Plex lists it (None:
    not read). Pure."""
    if listed is None:
        return (MISSING,) if row.rating_key else ()
    parts = []
    if row.written.get("title") and listed.title != row.written["title"]:
        parts.append("name")
    if row.written.get("summary") is not None and listed.summary != row.written["summary"]:
        parts.append("summary")
    if row.written.get("poster_hash") and not listed.has_own_poster:
        parts.append("poster")
    if row.wanted.get("ordered") and len(members) > 1 and row.written.get("order") and (
            listed.sort != expected_sort(row) or (order is not None and order_moves(order, members))):
        parts.append("order")
    return tuple(parts)


def unseen_drift(row: CollectionRow, listed: Listed, keys: Sequence[str], full: bool, redated: Set[str]) -> bool:
    """Whether the order of our listed collection could have drifted where the listing does
    not show it (see the module docstring), so that only reading it can tell."""
    if not row.wanted.get("ordered") or len(keys) < 2 or listed.sort != expected_sort(row):
        return False
    return full if listed.sort == SORT_CUSTOM else bool(redated.intersection(keys))


def expected_sort(row: CollectionRow) -> int:
    """The sort our order relies on: Plex's release-date order, or the custom one we set
    (also for a row recorded before the flush kept which)."""
    return int(row.written.get("sort", SORT_CUSTOM))


@dataclass
class CollectionCheck:
    """What Reconcile found in the collections we own."""

    checked: int = 0
    drifted: dict[str, list[str]] = field(default_factory=dict)  # title -> parts
    missing: list[str] = field(default_factory=list)
    queued: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"checked": self.checked, "drifted": self.drifted, "missing": self.missing, "queued": self.queued}

    def line(self) -> str:
        text = (f"Stash2Plex reconcile: {self.checked} collection(s) of ours checked, {len(self.drifted)} drifted, "
                f"{len(self.missing)} missing")
        shown = [f"{t} ({', '.join(p)})" for t, p in list(self.drifted.items())[:5]] + self.missing[:5]
        return text + (": " + "; ".join(shown) if shown else "") + "."


def check_owned(rows: Iterable[CollectionRow], listings: Mapping[str, Mapping[str, Listed]],
                members: Mapping[tuple[str, str, str], Sequence[Member]], read_order: ReadOrder,
                full: bool = True, redated: Set[str] = frozenset(),
                ) -> tuple[CollectionCheck, list[tuple[CollectionRow, tuple[str, ...]]]]:
    """Judge every row; returns the report and each row with what drifted. I/O only through
    `read_order`, for listed ordered collections in the sort we expect whose order could
    have drifted unseen: a custom one when the scope is `full`, one relying on release dates
    when one of its items is `redated` (Plex shows another date than our ledger recorded)."""
    check = CollectionCheck()
    found: list[tuple[CollectionRow, tuple[str, ...]]] = []
    for row in rows:
        check.checked += 1
        listed = find(listings.get(row.section, {}), row.rating_key, row.title)
        keys = member_order(members.get(row.key, ()), row.kind, row.source_id)
        order = read_order(listed.rating_key) if listed and unseen_drift(row, listed, keys, full, redated) else None
        parts = drifted(row, listed, keys, order)
        if parts == (MISSING,):
            check.missing.append(row.title)
        elif parts:
            check.drifted[row.title] = list(parts)
        if parts:
            found.append((row, parts))
    return check, found


# --- the dry run ---------------------------------------------------------------------------------


@dataclass
class Tally:
    """The collections Stash's scenes ask for, gathered page by page: each one's spec (the
    last scene's: they agree) and its members' Plex items with their place."""

    specs: dict[tuple[str, str], CollectionSpec] = field(default_factory=dict)
    members: dict[tuple[str, str], list[tuple[int | None, int, str]]] = field(default_factory=dict)
    released: dict[str, str | None] = field(default_factory=dict)  # Plex key -> its date after the sync

    def add(self, scene: Scene, plex_key: str | None, settings: Settings, recorded: str | None = None) -> None:
        """`recorded` is the item's release date our last sync left (the ledger's): it stays
        when the sync would not write Stash's."""
        specs = scene_collections(scene, settings)
        for spec in specs:
            self.specs[spec.key] = spec
            if plex_key:
                self.members.setdefault(spec.key, []).append((spec.scene_index, scene.id, plex_key))
        if plex_key and any(spec.ordered for spec in specs):
            wanted = desired_state(scene, settings).originally_available_at
            self.released.setdefault(plex_key, recorded if wanted is None else wanted)

    def keys(self, key: tuple[str, str], ordered: bool) -> list[str]:
        placed = sorted(self.members.get(key, []), key=lambda m: (m[0] is None, m[0] or 0, m[1]) if ordered
                        else (False, 0, m[1]))
        out: list[str] = []
        for _index, _sid, plex_key in placed:
            if plex_key not in out:
                out.append(plex_key)
        return out


@dataclass(frozen=True)
class CollectionPreview:
    title: str
    kind: str
    status: str  # "create", "changes", "unchanged", "delete", "theirs"
    changes: tuple[str, ...] = ()
    items: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"title": self.title, "kind": self.kind, "status": self.status, "changes": list(self.changes),
                "items": self.items}

    def line(self) -> str:
        if self.status == "create":
            return f"collection {self.title!r} ({self.kind}): would be created with {self.items} item(s)" + (
                f"; {'; '.join(self.changes)}" if self.changes else "")
        if self.status == "delete":
            return f"collection {self.title!r} ({self.kind}): would be deleted (none of its scenes is left)"
        return f"collection {self.title!r} ({self.kind}): " + "; ".join(self.changes)


def preview(tally: Tally, listings: Mapping[str, Mapping[str, Listed]], rows: Sequence[CollectionRow],
            read_order: ReadOrder, lock: bool) -> list[CollectionPreview]:
    """What the next flush would do to each collection, after the scenes' edits. Pure but
    for `read_order` (the order of ours, read only where a move could be due)."""
    out: list[CollectionPreview] = []
    ours = {(r.kind, r.source_id): r for r in rows}
    every = {title: listed for listing in listings.values() for title, listed in listing.items()}
    for key, spec in tally.specs.items():
        keys = tally.keys(key, spec.ordered)
        row = ours.pop(key, None)
        wanted = Wanted(spec.title, spec.summary, spec.image_url, spec.ordered)
        listed = find(listings.get(row.section, {}), row.rating_key, row.title) if row else every.get(
            spec.title.casefold())
        if row is None and listed is not None:
            out.append(CollectionPreview(spec.title, spec.kind, "theirs", items=len(keys)))
            continue
        if listed is None:
            listed = Listed("", "" if row is None else row.title)
        plan = plan_collection(wanted, listed, row.written if row else {}, keys, owned=True, lock=lock,
                               release_ordered=in_release_order([tally.released.get(k) for k in keys]))
        changes = [c for c in plan.changes if not c.startswith("collection order")]
        if not listed.rating_key and spec.ordered and len(keys) > 1:
            by_date = plan.written.get("sort") == SORT_RELEASE
            changes.append("collection order: scene order" + (" (Plex's release-date order)" if by_date else ""))
        elif plan.read_order or plan.moves:
            moves = order_moves(read_order(listed.rating_key), keys)
            if moves or plan.custom_sort:
                changes.append(f"collection order: {len(moves)} item(s) moved into scene order")
        status = "create" if not listed.rating_key else "changes" if changes else "unchanged"
        out.append(CollectionPreview(spec.title, spec.kind, status, tuple(changes), len(keys)))
    for row in ours.values():  # ours, and no scene asks for it any more
        if find(listings.get(row.section, {}), row.rating_key, row.title) is not None:
            out.append(CollectionPreview(row.title, row.kind, "delete"))
    return out


# --- I/O: Reconcile's pass over our collections --------------------------------------------------


def reconcile_collections(queue: JobQueue, conn: PlexConnection, now: float,
                          snaps: Mapping[str, Snapshot] | None = None, full: bool = True) -> CollectionCheck:
    """Check every collection we own (see module docstring): one listing per section that
    holds one, an order read only where the order could have drifted unseen (`snaps`, the
    section listing's items, show their dates; `full`: the whole library's scope); missing
    ones' scenes are queued, drifted parts are written again by the next drain's flush."""
    rows = queue.collections.all()
    if not rows:
        return CollectionCheck()
    sections = sorted({r.section for r in rows})
    listings = {s: read_collections(conn, s) for s in sections}
    members: dict[tuple[str, str, str], list[Member]] = {}
    for section in sections:
        mine = [r for r in rows if r.section == section]
        by_title = queue.ledger.collection_members(section, {t for r in mine for t in _titles(r)})
        for row in mine:
            members[row.key] = [m for t in _titles(row) for m in by_title.get(t.casefold(), [])]
    redated = redated_members(rows, members, snaps or {})
    check, found = check_owned(rows, listings, members, lambda key: read_children(conn, key), full,
                               {m.plex_key for m in redated})
    if redated:
        check.queued += queue.enqueue_many(sorted({m.scene_id for m in redated}),
                                           "reconcile: release date changed in Plex", now, urgent=False)
    for row, parts in found:
        if parts == (MISSING,):
            queue.collections.forget(row)
            ids = sorted({m.scene_id for m in members[row.key]})
            check.queued += queue.enqueue_many(ids, f"reconcile: collection {row.title!r} missing in Plex", now,
                                               urgent=False)
        else:
            queue.collections.unwritten(row, [k for p in parts for k in DRIFT_KEYS[p]], now)
    return check


def redated_members(rows: Iterable[CollectionRow], members: Mapping[tuple[str, str, str], Sequence[Member]],
                    snaps: Mapping[str, Snapshot]) -> list[Member]:
    """Members of our collections that rely on Plex's release-date order whose item the
    listing shows with another date than our ledger recorded. Pure."""
    out = []
    for row in rows:
        if row.written.get("sort") == SORT_RELEASE:
            for member in members.get(row.key, ()):
                snap = snaps.get(member.plex_key)
                if snap is not None and not shows(snap, RELEASED, member.released):
                    out.append(member)
    return out


def _titles(row: CollectionRow) -> set[str]:
    return {t for t in (row.title, row.written.get("title")) if t}
