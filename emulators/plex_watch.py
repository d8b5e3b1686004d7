"""The emulated Plex server's viewing state: accounts, the play history and per-item progress.

Real Plex keeps one history row per finished play (`/status/sessions/history/all`, what
plexapi's `PlexServer.history()` pages through) with the account that watched, and per
account and item a view count, the last time it was viewed and a resume offset. Item
listings and `/library/metadata` show the requesting account's own state; the server
owner's token is account 1 (plexapi's `MyPlexAccount.history()` asks the owner's server
for `accountID=1`). Attributes that are zero or unset are left out, as Plex leaves them
out, so a reader must treat a missing `viewOffset` as 0.

Beliefs (unverified against a real server): `viewedAt>` filters strictly after the given
epoch second; a progress report (timeline) also moves `lastViewedAt`; a finished play
clears the resume offset. Nothing here reads the clock: callers pass `at`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from xml.etree import ElementTree as ET

OWNER_ID = 1


@dataclass(frozen=True)
class Play:
    """One history row: a finished play of an item by an account."""

    history_id: int
    rating_key: int | None  # None once the item was deleted (Plex keeps the row)
    account_id: int
    viewed_at: int
    section: int
    title: str
    device_id: int = 1


@dataclass
class ItemWatch:
    view_count: int = 0
    last_viewed_at: int | None = None
    view_offset: int = 0  # milliseconds


@dataclass
class WatchState:
    """Accounts, history rows (in insertion order) and per (account, item) progress."""

    accounts: dict[int, str] = field(default_factory=lambda: {0: "", OWNER_ID: "owner"})
    plays: list[Play] = field(default_factory=list)
    items: dict[tuple[int, int], ItemWatch] = field(default_factory=dict)
    _next_history: int = 1

    def add_account(self, name: str) -> int:
        """A managed user (home user) of the server; returns its local account id."""
        account_id = max(self.accounts) + 1
        self.accounts[account_id] = name
        return account_id

    def play(self, rating_key: int, *, section: int, title: str, at: int, account: int = OWNER_ID) -> int:
        """A play watched to the end: a history row, one more view, the offset cleared."""
        if account not in self.accounts:
            raise KeyError(f"no account {account}")
        history_id = self._next_history
        self._next_history += 1
        self.plays.append(Play(history_id, rating_key, account, int(at), section, title))
        state = self.items.setdefault((account, rating_key), ItemWatch())
        state.view_count += 1
        state.last_viewed_at = max(int(at), state.last_viewed_at or 0)
        state.view_offset = 0
        return history_id

    def progress(self, rating_key: int, offset_ms: int, *, at: int, account: int = OWNER_ID) -> None:
        """A play stopped part-way: a resume offset, and no history row."""
        state = self.items.setdefault((account, rating_key), ItemWatch())
        state.view_offset = int(offset_ms)
        state.last_viewed_at = max(int(at), state.last_viewed_at or 0)

    def forget_item(self, rating_key: int) -> None:
        """The item was deleted: its history rows stay, without their rating key."""
        self.plays = [Play(p.history_id, None, p.account_id, p.viewed_at, p.section, p.title)
                      if p.rating_key == rating_key else p for p in self.plays]
        self.items = {k: v for k, v in self.items.items() if k[1] != rating_key}

    def item_attrs(self, rating_key: int, account: int = OWNER_ID) -> dict[str, Any]:
        """The viewing attributes of an item element; zero or unset ones are left out."""
        state = self.items.get((account, rating_key))
        if state is None:
            return {}
        return {"viewOffset": state.view_offset or None, "viewCount": state.view_count or None,
                "lastViewedAt": state.last_viewed_at}

    def history(self, query: Mapping[str, str]) -> list[Play]:
        """Rows matching `accountID`, `librarySectionID`, `metadataItemID` and `viewedAt>`,
        in the `sort` order (`viewedAt:desc` is plexapi's; ties keep insertion order)."""
        rows = self.plays
        for name, get in (("accountID", lambda p: p.account_id), ("librarySectionID", lambda p: p.section),
                          ("metadataItemID", lambda p: p.rating_key)):
            if query.get(name):
                wanted = int(query[name])
                rows = [p for p in rows if get(p) == wanted]
        if query.get("viewedAt>"):
            after = int(query["viewedAt>"])
            rows = [p for p in rows if p.viewed_at > after]
        sort = query.get("sort", "viewedAt:desc")
        field_name, _, direction = sort.partition(":")
        if field_name == "viewedAt":
            rows = sorted(rows, key=lambda p: (p.viewed_at, p.history_id), reverse=direction == "desc")
        return rows


def history_element(play: Play) -> ET.Element:
    """One history row as Plex prints it: a deleted item has no key or ratingKey."""
    attrs: dict[str, Any] = {"historyKey": f"/status/sessions/history/{play.history_id}"}
    if play.rating_key is not None:
        attrs.update({"key": f"/library/metadata/{play.rating_key}", "ratingKey": play.rating_key})
    attrs.update({"librarySectionID": play.section, "title": play.title, "type": "movie",
                  "viewedAt": play.viewed_at, "accountID": play.account_id, "deviceID": play.device_id})
    if play.rating_key is not None:
        attrs["thumb"] = f"/library/metadata/{play.rating_key}/thumb/{play.viewed_at}"
    return ET.Element("Video", {k: str(v) for k, v in attrs.items()})


def account_element(account_id: int, name: str) -> ET.Element:
    attrs = {"id": str(account_id), "key": f"/accounts/{account_id}", "name": name,
             "defaultAudioLanguage": "en", "autoSelectAudio": "1", "defaultSubtitleLanguage": "en",
             "subtitleMode": "0"}
    if account_id:
        attrs["thumb"] = f"https://plex.tv/users/{account_id:016x}/avatar"
    return ET.Element("Account", attrs)
