"""The collections' own writes, per drain batch: name, summary, poster, order, deletion.

A `CollectionBatch` lives for one drain run (or batch). Scene syncs tell it, before their
item edit, which collections they join and leave (`note`); it records which of those are
ours and due, in the collections table, so nothing is lost if the process dies before the
flush. `flush` then writes every due collection of ours once.

Requests (the budget of `bench/bench_plex_requests.py` and `tests/test_e2e_collections.py`):

* **listing**: `GET /library/sections/{id}/all?type=18` (what plexapi's
  `section.collections()` sends), paged. Read at most twice per batch and section: once
  before the first item edit that joins a collection we do not own yet (a name Plex does
  not list yet is one our edit creates, so ours), and once for the flush, since our edits
  created collections meanwhile. An unchanged library reads neither.
* per due collection, only what changed since we last wrote it (`plex.collection_plan`):
  one edit `PUT /library/sections/{id}/all?type=18&id=...` (name, summary, locks; none for a
  new poster alone, which Plex locks itself), one upload `POST /library/metadata/{id}/posters`
  for new image bytes, and for a group whose scenes' release dates do not follow their
  numbers (Plex's default order shows the rest right): one
  `PUT /library/metadata/{id}/prefs?collectionSort=2` while the sort is not custom, one
  read of its order `GET /library/collections/{id}/children` when the order we last wrote no
  longer describes it, and one `PUT .../items/{key}/move` per item out of place. The
  order reads and moves of up to `ORDERERS` collections go out side by side.
* deletion: one read of the children (only a collection with none is deleted, so an item a
  person added keeps it) and `DELETE /library/collections/{id}`.

Membership is not written here: it rides on each scene's item edit (`collection` tags).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import partial
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from base.errors import PlexAuthError, PlexConnectionSetupError, PlexUnavailable, TransientError
from plex import xmlread
from plex.collection_plan import (
    COLLECTION_TYPE,
    SORT_CUSTOM,
    CollectionPlan,
    Listed,
    Wanted,
    in_release_order,
    order_moves,
    plan_collection,
    poster_plan,
)
from plex.collection_specs import GROUP, CollectionSpec
from plex.connection import PlexConnection, query_string
from plex.images import FetchImage
from plex.records import LedgerEntry

if TYPE_CHECKING:
    from sync_queue.collections import CollectionRow, CollectionTable
    from sync_queue.ledger import LedgerTable, Member

PAGE_SIZE = 500
#: Collections whose items are put in order at once, beside the flush's own writes: at most
#: four requests in flight to Plex, as during the drain.
ORDERERS = 3
#: Failures that say nothing about one collection (Plex is down, the token or the connection
#: settings are wrong): the flush stops, using no collection's attempts.
STOPS_FLUSH = (PlexUnavailable, TransientError, PlexAuthError, PlexConnectionSetupError)


def wanted_fields(spec: CollectionSpec) -> dict[str, Any]:
    """What a row keeps of a spec besides its name (JSON types)."""
    return {"summary": spec.summary, "image_url": spec.image_url, "ordered": spec.ordered}


def member_order(members: Iterable[Member], kind: str, source_id: str) -> list[str]:
    """Our items in the collection in the order they should be in: a group's by scene_index
    (unnumbered scenes last, then by scene id), every other kind by scene id; each item once."""
    def place(m: Member) -> tuple[int, int, int]:
        index = m.group_index.get(source_id) if kind == GROUP else None
        return (1, 0, m.scene_id) if index is None else (0, int(index), m.scene_id)

    keys: list[str] = []
    for member in sorted(members, key=place):
        if member.plex_key not in keys:
            keys.append(member.plex_key)
    return keys


def release_dates(members: Iterable[Member], keys: Sequence[str]) -> list[str | None]:
    """Each item's release date as our last sync of it left it (None: not recorded)."""
    dates: dict[str, str | None] = {}
    for member in members:
        dates.setdefault(member.plex_key, member.released)
    return [dates.get(key) for key in keys]


def renamed(names: Iterable[str], renames: Mapping[str, str]) -> tuple[str, ...]:
    """An item's collection names as read, under the names our renames since gave them
    (`renames`: folded old name to new name). A rename in place moves every item Plex had
    in the collection, so a name read before it now stands for the new one."""
    return tuple(renames.get(n.casefold(), n) for n in names)


def read_collections(conn: PlexConnection, section: str) -> dict[str, Listed]:
    """A section's collections by folded title: `GET /library/sections/{id}/all?type=18`, paged."""
    found: dict[str, Listed] = {}
    start = 0
    while True:
        root = conn.query(f"/library/sections/{section}/all?type={COLLECTION_TYPE}", headers={
            "X-Plex-Container-Start": str(start), "X-Plex-Container-Size": str(PAGE_SIZE)})
        page = xmlread.collections(root)
        for entry in page:
            found.setdefault(entry.title.casefold(), entry)
        start += len(page)
        if not page or start >= xmlread.total_size(root, len(page)):
            return found


def read_children(conn: PlexConnection, rating_key: str) -> list[str]:
    """A collection's items in the order Plex lists them: `GET /library/collections/{id}/children`."""
    keys: list[str] = []
    while True:
        root = conn.query(f"/library/collections/{rating_key}/children", headers={
            "X-Plex-Container-Start": str(len(keys)), "X-Plex-Container-Size": str(PAGE_SIZE)})
        page = [str(v.get("ratingKey")) for v in root if v.get("ratingKey")]
        keys += page
        if not page or len(keys) >= xmlread.total_size(root, len(page)):
            return keys


@dataclass
class FlushResult:
    written: int = 0  # collections that got at least one write
    deleted: int = 0
    failed: int = 0
    requests: int = 0
    changes: list[str] = field(default_factory=list)
    stopped: str | None = None  # Plex stopped answering (or refused the token): the rest stays due


@dataclass(frozen=True)
class _Ordered:
    """A collection written but for its items' order, which `send` puts right; recorded as
    done (`written`, under Plex key `key`) only once Plex took every move."""

    row: CollectionRow
    key: str
    written: Mapping[str, Any]
    wrote: bool  # a write went out before the order
    changes: list[str]
    send: Callable[[], bool]


@dataclass
class CollectionBatch:
    """One drain batch's view of the collections (see module docstring)."""

    conn: PlexConnection
    table: CollectionTable
    ledger: LedgerTable
    fetch_image: FetchImage
    lock: bool
    #: Called before a rename goes to Plex: the drain lets the writes it has in flight land,
    #: since an edit planned with the old name and landing after the rename would make a
    #: second collection under it, or remove the item from a name Plex no longer has.
    before_rename: Callable[[], None] = lambda: None
    _listings: dict[str, dict[str, Listed]] = field(default_factory=dict)
    _stale: set[str] = field(default_factory=set)

    # -- reads ------------------------------------------------------------------------

    def listing(self, section: str, fresh: bool = False) -> dict[str, Listed]:
        """The section's collections by folded title, read once per batch; `fresh` reads it
        again if our edits changed it since (the flush needs the collections they made).
        Whether a name is ours needs no fresh read: a collection our edit made this batch
        was claimed, so only a person's could be missing, and they were listed before."""
        if section in self._listings and not (fresh and section in self._stale):
            return self._listings[section]
        self._listings[section] = read_collections(self.conn, section)
        self._stale.discard(section)
        return self._listings[section]

    def _listed_title(self, section: str, row: CollectionRow) -> str | None:
        """The folded title Plex lists our collection under (None: not made yet, or gone)."""
        if row.rating_key is None:
            return None
        return next((t for t, c in self.listing(section).items() if c.rating_key == row.rating_key), None)

    def owned_titles(self, section: str, names: Iterable[str], wanted: Iterable[str]) -> tuple[str, ...]:
        """Which of an item's collections are ours: by the name our table holds or held (a
        past name left on an item by an edit that landed after our rename), or, for one
        Stash no longer wants, by the name Plex lists our collection under (a rename that has
        not reached Plex yet). The listing is read only when such a name is in question."""
        names = list(names)
        mine = {r.title.casefold() for r in self.table.by_title(section, names)}
        mine |= {p for r in self.table.by_past_title(section, names) for p in r.past}
        keep = {w.casefold() for w in wanted}
        doubt = [n for n in names if n.casefold() not in mine and n.casefold() not in keep]
        if doubt:
            keys = {r.rating_key for r in self.table.all() if r.section == section and r.rating_key}
            listing = self.listing(section)
            mine |= {n.casefold() for n in doubt if (c := listing.get(n.casefold())) and c.rating_key in keys}
        return tuple(n for n in names if n.casefold() in mine)

    @staticmethod
    def _settled(flushed: FlushResult, old: str, new: str) -> None:
        """A rename's flush that Plex did not take: the scene's edit would tag its item with the
        new name, making a second collection and leaving the others in the old one, so the
        scene waits for the rename instead."""
        if flushed.failed or flushed.stopped:
            raise TransientError(f"the collection {old!r} is not renamed to {new!r} yet")

    def _relisted(self, section: str, rating_key: str | None, title: str) -> None:
        """Our rename reached Plex: the batch's listing shows the collection under its new name
        (a listing without it would let the next scene's edit make a second one)."""
        listed = self._listings.get(section, {})
        for old in [t for t, c in listed.items() if c.rating_key == rating_key]:
            listed[title.casefold()] = replace(listed.pop(old), title=title)

    # -- what scene syncs report ---------------------------------------------------------

    def note(self, section: str, specs: Sequence[CollectionSpec], before: Iterable[str],
             previous: LedgerEntry | None, now: float) -> dict[str, str]:
        """Before a scene's item edit: claim the collections it is about to create, mark ours
        that it joins, leaves or changes as due, and rename ours whose source was renamed
        (first, so the edit finds the item in it under the new name). Returns the renames
        made (folded old name to new name): every item read before them holds the new name."""
        if not section:
            return {}
        had = {t.casefold() for t in before}
        last = (previous.written.get("collection") if previous else None) or []
        last_index = previous.group_index if previous else {}
        joining = False
        renames: dict[str, str] = {}
        for spec in specs:
            wanted = wanted_fields(spec)
            row = self.table.get(section, spec.kind, spec.source_id)
            if row is not None and row.title != spec.title and not row.rating_key:
                # Claimed, never written: learn its key under the name it was made with, or a
                # rename could not find it (and the edit would make a second collection).
                self.before_rename()
                self._settled(self.flush(now, only=[row.key]), row.title, spec.title)
                row = self.table.get(section, spec.kind, spec.source_id)
            joins = spec.title.casefold() not in had
            joining |= joins
            if row is None:
                if joins and spec.title.casefold() not in self.listing(section):
                    self.table.claim(section, spec.kind, spec.source_id, spec.title, wanted, now)
                continue
            moved = spec.ordered and last_index.get(spec.source_id) != spec.scene_index
            listed = self._listed_title(section, row)
            if row.title != spec.title or listed not in (None, spec.title.casefold()):
                # The rename, before the edit moves the item: also one begun and cut off (the
                # row has the new name, Plex the old), else the edit would make a second one.
                self.before_rename()
                self.table.touch(section, spec.kind, spec.source_id, now, spec.title, wanted)
                self._settled(self.flush(now, only=[row.key]), row.title, spec.title)
                self._relisted(section, row.rating_key, spec.title)
                renames.update({old: spec.title for old in (row.title.casefold(), listed)
                                if old and old != spec.title.casefold()})
            elif joins or moved or row.wanted != wanted:
                self.table.touch(section, spec.kind, spec.source_id, now, spec.title, wanted)
        leaving = {t.casefold() for t in last} - {s.title.casefold() for s in specs}
        left_over = had - {s.title.casefold() for s in specs}  # a past name of ours: its flush clears it
        for row in self.table.by_title(section, leaving) + self.table.by_past_title(section, left_over):
            self.table.touch(row.section, row.kind, row.source_id, now)
        if joining or leaving:
            self._stale.add(section)
        return renames

    def redated(self, section: str, specs: Sequence[CollectionSpec], now: float) -> None:
        """The scene's item may show another release date after its edit: its ordered
        collections of ours are judged again, since one may rely on Plex's date order."""
        for spec in specs:
            if spec.ordered:
                self.table.touch(section, spec.kind, spec.source_id, now)

    # -- the flush -----------------------------------------------------------------------

    def flush(self, now: float, only: Sequence[tuple[str, str, str]] | None = None) -> FlushResult:
        """Write every due collection of ours (or just `only`). A Plex outage stops it, the
        rest staying due; any other failure is noted on its row, and retried on later flushes
        a bounded number of times."""
        result = FlushResult()
        before = self.conn.requests_made
        rows = [r for r in self.table.due() if only is None or r.key in only]
        by_section: dict[str, list[CollectionRow]] = {}
        for row in rows:
            by_section.setdefault(row.section, []).append(row)
        ordering: list[tuple[_Ordered, Future[bool]]] = []
        with ThreadPoolExecutor(ORDERERS, thread_name_prefix="stash2plex-order") as pool:
            try:
                for section, section_rows in by_section.items():
                    titles = {t for r in section_rows for t in (r.title, r.written.get("title")) if t}
                    members = self.ledger.collection_members(section, titles)
                    names = {r.title.casefold() for r in self.table.all() if r.section == section}
                    for row in section_rows:
                        try:
                            self._clear_past(row, self.listing(section, fresh=True), names, result)
                            ordered = self._flush_row(row, self.listing(section, fresh=True), members, now, result)
                        except STOPS_FLUSH:
                            raise
                        except Exception as exc:  # one collection Plex refuses must not hold the others
                            self._failed(row, exc, result)
                        else:
                            if ordered is not None:
                                ordering.append((ordered, pool.submit(ordered.send)))
                    # our writes (a rename, a deletion) change what the listing says
                    self._stale.add(section)
            except STOPS_FLUSH as exc:
                result.stopped = str(exc)
            finally:
                for ordered, sent in ordering:  # in the order planned, on this thread
                    self._ordered(ordered, sent, now, result)
        result.requests = self.conn.requests_made - before
        return result

    def _failed(self, row: CollectionRow, exc: Exception, result: FlushResult) -> None:
        result.failed += 1
        self.table.failed(row, f"{type(exc).__name__}: {exc}")

    def _ordered(self, ordered: _Ordered, sent: Future[bool], now: float, result: FlushResult) -> None:
        """A collection whose order went out beside the flush: recorded as done once Plex
        took every move; a failure is the row's own, or stops the flush (the row stays due)."""
        try:
            moved = sent.result()
        except STOPS_FLUSH as exc:
            result.stopped = result.stopped or str(exc)
            return
        except Exception as exc:
            self._failed(ordered.row, exc, result)
            return
        if ordered.wrote or moved:
            result.written += 1
            result.changes += ordered.changes
        self.table.done(ordered.row, ordered.key, ordered.written, now)

    def _clear_past(self, row: CollectionRow, listing: Mapping[str, Listed], names: Collection[str],
                    result: FlushResult) -> None:
        """Delete collections under a past name of this row that are not the row's own: an item
        edit planned before our rename and landing after it made them. No scene wants that
        name now (it is no collection's current name here), so each goes whole, taking its
        tag off its items."""
        for past in row.past:
            stray = listing.get(past)
            if past in names or stray is None or stray.rating_key == row.rating_key:
                continue
            self.conn.query(f"/library/collections/{stray.rating_key}", "DELETE", read=False)
            result.deleted += 1
            result.changes.append(f"{stray.title}: deleted (a former name of {row.title!r})")
            self._stale.add(row.section)

    def _merge_twin(self, row: CollectionRow, found: Listed, listing: Mapping[str, Listed],
                    keys: Sequence[str]) -> list[str]:
        """Our collection still has an old name while another, holding only items that our
        ledger puts under the new one, has the new name: our item edits made it (an edit that
        landed while the rename had not, from a process that died with it on the way). It is
        deleted and its items are returned, to join ours once it is renamed. A collection
        with any other item, or none, is a person's: left alone (the rename is refused)."""
        twin = listing.get(row.title.casefold())
        if twin is None or twin.rating_key == found.rating_key or found.title.casefold() == row.title.casefold():
            return []
        children = read_children(self.conn, twin.rating_key)
        if not children or not set(children) <= set(keys):
            return []
        self.conn.query(f"/library/collections/{twin.rating_key}", "DELETE", read=False)
        self._stale.add(row.section)
        return children

    def _flush_row(self, row: CollectionRow, listing: Mapping[str, Listed], members: Mapping[str, list[Member]],
                   now: float, result: FlushResult) -> _Ordered | None:
        """The row's writes, in the order Plex needs them, recorded as done; a collection
        whose items are to be put in order is returned instead, its order sent beside the
        next collections' writes (`_Ordered`): one move per item out of place, each a round
        trip, was most of a flush's time."""
        found = self._find(row, listing)
        titles = {t.casefold() for t in (row.title, row.written.get("title")) if t}
        mine = [m for t in titles for m in members.get(t, [])]
        keys = member_order(mine, row.kind, row.source_id)
        joining = self._merge_twin(row, found, listing, keys) if found is not None else []
        if found is None:
            # Not (or no longer) in Plex: with no member left there is nothing to do; with
            # members, a person deleted it, and Reconcile puts the scenes back.
            if keys:
                self.table.done(row, row.rating_key or "", row.written, now)
            else:
                self.table.forget(row)
            return None
        wanted = Wanted(row.title, row.wanted.get("summary"), row.wanted.get("image_url"),
                        bool(row.wanted.get("ordered")))
        plan = plan_collection(wanted, found, row.written, keys, owned=True, lock=self.lock,
                               release_ordered=in_release_order(release_dates(mine, keys)))
        key = found.rating_key
        if plan.delete:
            if not read_children(self.conn, key):
                self.conn.query(f"/library/collections/{key}", "DELETE", read=False)
                result.deleted += 1
                result.changes += list(plan.changes)
                self.table.forget(row)
            else:
                self.table.done(row, key, row.written, now)
            return None
        params, upload, written = dict(plan.params), None, dict(plan.written)
        if plan.fetch_poster and wanted.image_url:
            data = self.fetch_image(wanted.image_url)
            digest = hashlib.sha256(data).hexdigest() if data else None
            # The poster's lock rides on an edit sent anyway; alone it is not worth a request,
            # since Plex locks an uploaded poster itself.
            params, send, written = poster_plan(params, digest, written, wanted.image_url, self.lock and bool(params))
            upload = data if send else None
        wrote = False
        if params:
            query = query_string({**params, "id": key, "type": COLLECTION_TYPE})
            self.conn.query(f"/library/sections/{row.section}/all?{query}", "PUT", read=False)
            wrote = True
        if joining:
            self._add_items(key, joining)
            wrote, plan = True, replace(plan, read_order=plan.read_order or wanted.ordered)
        if upload is not None:
            self.conn.query(f"/library/metadata/{key}/posters", "POST", data=upload, read=False)
            wrote = True
        if plan.custom_sort:
            self.conn.query(f"/library/metadata/{key}/prefs?collectionSort={SORT_CUSTOM}", "PUT", read=False)
            wrote = True
        changes = [f"{row.title}: {c}" for c in plan.changes]
        if plan.read_order or plan.moves:
            return _Ordered(row, key, written, wrote, changes, partial(self._order, key, keys, plan))
        if wrote:
            result.written += 1
            result.changes += changes
        self.table.done(row, key, written, now)
        return None

    def _order(self, key: str, keys: Sequence[str], plan: CollectionPlan) -> bool:
        """The moves that put our items in order (read from Plex first when the order we last
        wrote no longer describes it); whether any was sent. Requests only: it runs beside."""
        moves = order_moves(read_children(self.conn, key), keys) if plan.read_order else plan.moves
        for move in moves:
            after = "" if move.after is None else f"?after={move.after}"
            self.conn.query(f"/library/collections/{key}/items/{move.key}/move{after}", "PUT", read=False)
        return bool(moves)

    def _add_items(self, rating_key: str, items: Sequence[str]) -> None:
        """`PUT /library/collections/{id}/items?uri=server://<machine>/...` (plexapi's addItems)."""
        machine = self.conn.server().machineIdentifier
        uri = f"server://{machine}/com.plexapp.plugins.library/library/metadata/{','.join(items)}"
        self.conn.query(f"/library/collections/{rating_key}/items?uri={quote(uri, safe='')}", "PUT", read=False)

    @staticmethod
    def _find(row: CollectionRow, listing: Mapping[str, Listed]) -> Listed | None:
        """Ours by its key when we know it, else by name (a collection our edit just made)."""
        if row.rating_key:
            by_key = next((c for c in listing.values() if c.rating_key == row.rating_key), None)
            if by_key is not None:
                return by_key
        for title in (row.title, row.written.get("title")):
            if title and title.casefold() in listing:
                return listing[title.casefold()]
        return None

