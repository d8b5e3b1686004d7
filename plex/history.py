"""Reading what was watched in Plex: play history pages, accounts, and items' viewing state.

The history is the endpoint plexapi's `PlexServer.history()` reads,
`/status/sessions/history/all`, paged with `X-Plex-Container-Start/Size`. We ask for it
oldest first (`sort=viewedAt:asc`) from a cursor (`viewedAt>`), so a new play lands after
everything already read and a daily run reads only what is new. One row per finished play;
a row of a deleted item has no `ratingKey`.

Accounts: the server owner, whose token the plugin uses, is local account 1 (what plexapi's
`MyPlexAccount.history()` asks for); `/accounts` names the managed users. Viewing state on
items (`viewOffset`, `viewCount`, `lastViewedAt`) is always the token's own account's, and
Plex leaves each out when it is zero or unset.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from base.errors import PlexNotFound
from plex.connection import PlexConnection
from plex.xmlread import total_size

HISTORY_PAGE = 1000
METADATA_BATCH = 50


@dataclass(frozen=True)
class HistoryEntry:
    """One finished play: its idempotent key, the item (None once deleted), who and when."""

    key: str
    rating_key: str | None
    account_id: int | None
    viewed_at: int
    section_id: str
    title: str = ""


@dataclass(frozen=True)
class ItemViewing:
    """An item's viewing state for the token's account, and its files (for path matching)."""

    rating_key: str
    section_id: str
    view_count: int
    last_viewed_at: int | None
    view_offset_ms: int
    duration_ms: int
    files: tuple[str, ...]


def _int(value: str | None) -> int | None:
    try:
        return int(float(value)) if value not in (None, "") else None
    except ValueError:
        return None


def history_entries(root: Any) -> list[HistoryEntry]:
    """The rows of one history page; a row without a time is not a play we can place."""
    out = []
    for row in root:
        viewed_at = _int(row.get("viewedAt"))
        if viewed_at is None:
            continue
        rating_key = row.get("ratingKey") or None
        account = _int(row.get("accountID"))
        key = row.get("historyKey") or f"{account}:{rating_key}:{viewed_at}"
        out.append(HistoryEntry(key, rating_key, account, viewed_at, str(row.get("librarySectionID") or ""),
                                row.get("title") or ""))
    return out


def item_viewings(root: Any) -> list[ItemViewing]:
    """Items of a listing or metadata answer with their viewing attributes (missing = 0)."""
    section = str(root.get("librarySectionID") or "")
    out = []
    for video in root:
        if video.tag != "Video" or not video.get("ratingKey"):
            continue
        out.append(ItemViewing(
            rating_key=str(video.get("ratingKey")),
            section_id=str(video.get("librarySectionID") or section),
            view_count=_int(video.get("viewCount")) or 0,
            last_viewed_at=_int(video.get("lastViewedAt")),
            view_offset_ms=_int(video.get("viewOffset")) or 0,
            duration_ms=_int(video.get("duration")) or 0,
            files=tuple(p.get("file") for p in video.iter("Part") if p.get("file")),
        ))
    return out


def history_path(after: int, account_id: int | None) -> str:
    params: dict[str, Any] = {"sort": "viewedAt:asc", "viewedAt>": after}
    if account_id is not None:
        params["accountID"] = account_id
    return "/status/sessions/history/all?" + urlencode(params, safe=">:")


def _pages(conn: PlexConnection, path: str, what: str, page_size: int) -> Iterator[tuple[Any, int, int]]:
    """(page root, rows read so far, rows in all) for each page of a paged listing, paged
    with plexapi's container headers until the listing's total is read."""
    start = 0
    while True:
        root = conn.query(path, headers={"X-Plex-Container-Start": str(start),
                                         "X-Plex-Container-Size": str(page_size)}, what=what)
        rows = len(root)
        start += rows
        total = total_size(root, rows)
        yield root, start, total
        if not rows or start >= total:
            return


def history_pages(conn: PlexConnection, after: int, account_id: int | None, page_size: int = HISTORY_PAGE,
                  on_page: Callable[[int, int], None] = lambda done, total: None) -> Iterator[list[HistoryEntry]]:
    """Pages of plays after `after` (epoch s), oldest first, until the history ends;
    `on_page(rows read, rows in all)` after each page, for a progress bar.

    Offsets are taken against one fixed filter, so plays added while we read only append.
    """
    for root, done, total in _pages(conn, history_path(after, account_id), "the play history", page_size):
        entries = history_entries(root)
        if entries:
            yield entries
        on_page(done, total)


def accounts(conn: PlexConnection) -> dict[int, str]:
    """Local account id -> name (`/accounts`); id 0 is Plex's nameless system account."""
    root = conn.query("/accounts", what="the server's accounts")
    return {int(a.get("id")): a.get("name", "") for a in root if a.tag == "Account" and a.get("id", "").isdigit()}


def viewings(conn: PlexConnection, rating_keys: Sequence[str]) -> dict[str, ItemViewing]:
    """Full items by key, a batch per request (`/library/metadata/1,2,3`); gone ones are absent."""
    out: dict[str, ItemViewing] = {}
    keys = sorted(set(rating_keys), key=lambda k: (len(k), k))
    for start in range(0, len(keys), METADATA_BATCH):
        chunk = keys[start:start + METADATA_BATCH]
        try:
            root = conn.query("/library/metadata/" + ",".join(chunk), what="watched items")
        except PlexNotFound:  # every key of the batch is gone
            continue
        out.update({v.rating_key: v for v in item_viewings(root)})
    return out


def viewed_since(conn: PlexConnection, section_key: str, after: int,
                 page_size: int = HISTORY_PAGE) -> Iterator[ItemViewing]:
    """Items of a movie section the token's account viewed after `after` (`lastViewedAt>>=`)."""
    path = f"/library/sections/{section_key}/all?" + urlencode({"type": 1, "lastViewedAt>>": after}, safe=">")
    for root, _done, _total in _pages(conn, path, "recently viewed items", page_size):
        yield from item_viewings(root)
