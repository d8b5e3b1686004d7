"""What one collection needs: rename, summary, poster, order, or deletion. Pure.

Inputs are plain records: what the scenes ask of the collection (`Wanted`), the collection as
the section listing showed it (`Listed`, or None when Plex has none by that key or name),
what we last wrote to it (`written`, from our record of the collections we own), and our
members in the order they should be in.

Rules:

* **Ownership.** Only a collection this plugin created is ever edited, re-ordered or deleted
  (`owned`). A collection a person made in Plex gets our items through the items' own tags
  and nothing else: no name, summary, poster, order or deletion.
* **Only when changed.** The name, summary and poster are compared with what we last wrote
  (the ledger of collections), not with Plex's answer, so an unchanged library sends nothing.
  The name is the exception: it is compared with the listing, because a renamed group must
  rename the collection that holds its poster and order (and not start a new one).
* **One edit** carries name, summary and their locks, as an item's edit does. An uploaded
  poster needs no lock of ours: Plex locks an uploaded image itself, so a collection whose
  only news is its poster costs the upload alone.
* **Order.** Plex lists a collection by release date, oldest first, until its sort is changed
  (`collectionSort` 0, the default). When our members, in the order they should be in, are
  also in strictly increasing release-date order (every one dated, no two on one day:
  `in_release_order`, the usual case for a series), that default already shows them right
  and nothing is sent. Otherwise it is a custom sort (`collectionSort=2`, sent once when the
  listing shows another sort) and the fewest moves: the items already in order relative to
  each other (a longest increasing run) stay, each other one moves behind its predecessor
  (`order_moves`). `written["sort"]` records which of the two the collection relies on, so
  Reconcile knows which sort to expect.
* **Deletion** when none of our members is left (the caller checks Plex lists no other).
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

#: `collectionSort` values (Plex: release date, alphabetical, custom).
SORT_RELEASE, SORT_ALPHA, SORT_CUSTOM = 0, 1, 2
COLLECTION_TYPE = 18  # plexapi's searchType("collection")
RELEASED = "originallyAvailableAt"  # the item field Plex's release-date order sorts by


@dataclass(frozen=True)
class Listed:
    """A collection as the section listing shows it."""

    rating_key: str
    title: str
    summary: str = ""
    thumb: str = ""
    child_count: int = 0
    sort: int = SORT_RELEASE

    @property
    def has_own_poster(self) -> bool:
        """Plex draws a composite of the members' posters until one is uploaded."""
        return bool(self.thumb) and "/composite/" not in self.thumb


@dataclass(frozen=True)
class Wanted:
    """What the collection should show; None fields are not managed."""

    title: str
    summary: str | None = None
    image_url: str | None = None
    ordered: bool = False


@dataclass(frozen=True)
class Move:
    """`PUT /library/collections/{id}/items/{key}/move[?after=...]`; `after` None is first place."""

    key: str
    after: str | None


@dataclass(frozen=True)
class CollectionPlan:
    params: Mapping[str, Any] = field(default_factory=dict)  # the collection's edit, without id/type
    fetch_poster: bool = False  # download the image: it is not the one we last uploaded
    custom_sort: bool = False  # send collectionSort=2 before any move
    read_order: bool = False  # read the collection's order (after the sort), then `order_moves`
    moves: tuple[Move, ...] = ()
    delete: bool = False
    changes: tuple[str, ...] = ()
    written: Mapping[str, Any] = field(default_factory=dict)


def in_release_order(dates: Sequence[str | None]) -> bool:
    """Whether Plex's release-date order shows items with these dates (in the order they
    should be in) in that order: every one dated, each strictly after the one before. Days
    compare as ISO text (`YYYY-MM-DD`, what Plex's `originallyAvailableAt` holds)."""
    return all(dates) and all(str(a) < str(b) for a, b in zip(dates, dates[1:], strict=False))


def _show(text: str | None, limit: int = 40) -> str:
    text = repr(text or "")
    return text if len(text) <= limit else text[: limit - 1] + "\u2026'"


def order_moves(current: Sequence[str], desired: Sequence[str]) -> tuple[Move, ...]:
    """The fewest moves that put `desired`'s keys in its order, given their order now.

    Keys not in `current` (a member Plex has not listed yet) are placed like the others;
    keys of `current` that are not desired (a person's items in our collection) are
    ignored: moves are relative to our own keys."""
    position = {k: i for i, k in enumerate(current)}
    ranks = [position.get(k, -1) for k in desired]
    keep = _longest_increasing(ranks)
    moves: list[Move] = []
    for i, key in enumerate(desired):
        if i not in keep:
            moves.append(Move(key, desired[i - 1] if i else None))
    return tuple(moves)


def _longest_increasing(ranks: Sequence[int]) -> set[int]:
    """Indices of one longest strictly increasing run of `ranks` (ranks < 0 never kept)."""
    tails: list[int] = []  # rank at the end of the best run of each length
    tail_at: list[int] = []  # its index
    back: dict[int, int | None] = {}
    for i, rank in enumerate(ranks):
        if rank < 0:
            continue
        at = bisect.bisect_left(tails, rank)
        back[i] = tail_at[at - 1] if at else None
        if at == len(tails):
            tails.append(rank)
            tail_at.append(i)
        else:
            tails[at], tail_at[at] = rank, i
    kept: set[int] = set()
    index = tail_at[-1] if tail_at else None
    while index is not None:
        kept.add(index)
        index = back[index]
    return kept


def plan_collection(
    wanted: Wanted,
    listed: Listed,
    written: Mapping[str, Any],
    members: Sequence[str],
    *,
    owned: bool,
    lock: bool,
    release_ordered: bool = False,
) -> CollectionPlan:
    """The writes that bring `listed` to `wanted` (see the module docstring).

    `members` are our items in the collection, in the order they should be in;
    `release_ordered` says their release dates are in that order too (`in_release_order`).
    When the order we last wrote no longer describes the collection (`read_order`), the
    caller reads its order after the sort is custom and asks `order_moves` for the moves."""
    if not owned:
        return CollectionPlan(written=dict(written))
    if not members:
        return CollectionPlan(delete=True, changes=(f"delete empty collection {_show(listed.title)}",))
    params: dict[str, Any] = {}
    changes: list[str] = []
    out: dict[str, Any] = dict(written)
    if listed.title != wanted.title:
        params["title.value"] = wanted.title
        changes.append(f"collection name: {_show(listed.title)} -> {_show(wanted.title)}")
    out["title"] = wanted.title
    if wanted.summary is not None:
        if (written.get("summary") or "") != wanted.summary:
            params["summary.value"] = wanted.summary
            changes.append(f"collection summary: {_show(written.get('summary'))} -> {_show(wanted.summary)}")
        out["summary"] = wanted.summary
    if lock:
        params.update({f"{name.split('.')[0]}.locked": 1 for name in list(params)})
    fetch = bool(wanted.image_url) and wanted.image_url != written.get("poster_source")
    if fetch:
        changes.append("collection poster: new image")
    custom = read = False
    moves: tuple[Move, ...] = ()
    if wanted.ordered and len(members) > 1:
        if listed.sort == SORT_RELEASE and release_ordered:
            out["sort"] = SORT_RELEASE  # Plex's default order already is scene order
        else:
            last = [str(k) for k in written.get("order") or ()]
            custom = listed.sort != SORT_CUSTOM
            read = custom or set(last) != set(members) or listed.child_count != len(members)
            moves = () if read else order_moves(last, members)
            if read or moves:
                changes.append("collection order: items put in scene order")
            out["sort"] = SORT_CUSTOM
        out["order"] = list(members)
    return CollectionPlan(params, fetch, custom, read, moves, False, tuple(changes), out)


def poster_plan(params: Mapping[str, Any], sha256: str | None, written: Mapping[str, Any], source: str | None,
                lock: bool) -> tuple[dict[str, Any], bool, dict[str, Any]]:
    """After the download: upload only new bytes, with the poster's lock in the edit when
    `lock` (Plex locks an upload itself, so the caller asks for it only where an edit is sent
    anyway). Returns the edit's params, whether to upload, and what the record keeps."""
    params = dict(params)
    out = dict(written)
    if sha256 is None:  # Stash has no such image now: Plex keeps what it shows
        return params, False, out
    out["poster_source"] = source
    if sha256 == written.get("poster_hash"):
        return params, False, out
    out["poster_hash"] = sha256
    if lock:
        params["thumb.locked"] = 1
    return params, True, out
