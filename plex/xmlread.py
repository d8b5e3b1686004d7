"""Plex XML to our plain records. Pure: takes the parsed elements plexapi's `query` returns.

Why not plexapi's `Movie` objects: they are I/O handles that reload themselves when an
empty attribute is read (plexapi's "Dragons inside"), they turn dates into datetimes we
would have to turn back, and they hide which element an attribute came from. Reading the
few attributes we need from the element is shorter and cannot cost a request.

An attribute Plex leaves out has Plex's default value, not an empty one. Real servers omit
what equals its default, and for every field we read the default is empty except one:
`titleSort` is left out when it equals the title (plexapi's `Movie` defaults it the same
way). Reading it as empty would resend the sort title on every sync, report it as drift on
every Reconcile and, under `preserve_plex_edits`, take it for a person's edit.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from plex.collection_plan import Listed
from plex.desired import Actor
from plex.fields import BY_NAME, SCALARS, TAG_LISTS
from plex.matcher import IndexEntry
from plex.records import CurrentState

Element = Any  # xml.etree.ElementTree.Element as returned by plexapi's parser

#: `Media@proxyType` of an optimised version Plex made itself (plexapi: "optimizedVersion").
OPTIMIZED_PROXY_TYPE = 42


@dataclass(frozen=True)
class Section:
    key: str
    title: str
    type: str
    locations: tuple[str, ...] = ()


def sections(root: Element) -> tuple[Section, ...]:
    """Every library section in a `/library/sections` answer."""
    return tuple(
        Section(
            key=str(d.get("key", "")),
            title=d.get("title", ""),
            type=d.get("type", ""),
            locations=tuple(loc.get("path", "") for loc in d.iter("Location") if loc.get("path")),
        )
        for d in root.iter("Directory")
    )


def _videos(root: Element) -> Iterator[Element]:
    return (v for v in root if v.tag == "Video")


def _int(value: str | None) -> int:
    """A count, size or duration: 0 for anything that is not a finite number of at least 0."""
    try:
        return max(0, int(float(value))) if value else 0
    except (ValueError, OverflowError):
        return 0


def index_entries(root: Element) -> list[IndexEntry]:
    """One entry per media part in a listing page (`/all`): path, item, size, duration."""
    out = []
    for video in _videos(root):
        key = video.get("ratingKey")
        if not key:
            continue
        for media in video.iter("Media"):
            for part in media.iter("Part"):
                if part.get("file"):
                    ms = _int(part.get("duration")) or _int(media.get("duration"))
                    out.append(IndexEntry(part.get("file"), str(key), _int(part.get("size")), ms / 1000.0))
    return out


def _float(value: str | None) -> float | None:
    try:
        number = float(value) if value not in (None, "") else None
    except ValueError:
        return None
    return number if number is None or math.isfinite(number) else None


def _tags(video: Element, element: str) -> tuple[str, ...]:
    return tuple(t.get("tag", "") for t in video if t.tag == element and t.get("tag"))


def _parts(video: Element) -> list[tuple[str, bool]]:
    """(file, is an optimised version) for each Part, in Plex's order."""
    return [(part.get("file"), _int(media.get("proxyType")) == OPTIMIZED_PROXY_TYPE)
            for media in video.iter("Media") for part in media.iter("Part") if part.get("file")]


def primary_file(parts: list[tuple[str, bool]]) -> str:
    """The item's own file: its first Part that is not one of Plex's optimised copies."""
    return next((f for f, optimised in parts if not optimised), parts[0][0] if parts else "")


#: How an attribute's text becomes the field's value, where it is not the text itself.
_PARSE: dict[str, Callable[[str | None], Any]] = {
    "originallyAvailableAt": lambda text: (text or "")[:10],
    "userRating": _float,
}


def _scalars(video: Element) -> dict[str, Any]:
    """Every scalar of `plex.fields`, by record attribute, in table order (a field an omitted
    attribute stands for comes first)."""
    values: dict[str, Any] = {}
    for f in SCALARS:
        text = video.get(f.xml)
        if text is None and f.omitted_means:
            values[f.attr] = values[BY_NAME[f.omitted_means].attr]
        else:
            values[f.attr] = _PARSE.get(f.name, lambda t: t or "")(text)
    return values


def _tag_lists(video: Element) -> dict[str, tuple[Any, ...]]:
    """Every tag list of `plex.fields`, by record attribute; actors keep their photos."""
    return {f.attr: tuple(Actor(r.get("tag"), r.get("thumb") or None) for r in video
                          if r.tag == f.xml and r.get("tag")) if f.name == "actor" else _tags(video, f.xml)
            for f in TAG_LISTS}


def current_state(video: Element, section_id: str = "", listing: bool = False) -> CurrentState:
    """A full item (`/library/metadata/{key}`) as the record decisions read."""
    parts = _parts(video)
    return CurrentState(
        listing=listing,
        rating_key=str(video.get("ratingKey", "")),
        section_id=str(video.get("librarySectionID") or section_id or ""),
        **_scalars(video),
        **_tag_lists(video),
        locked=frozenset(f.get("name", "") for f in video if f.tag == "Field" and f.get("locked") == "1"),
        thumb=video.get("thumb", ""),
        art=video.get("art", ""),
        files=tuple(f for f, _ in parts),
        primary_file=primary_file(parts),
    )


def listed_state(video: Element) -> CurrentState:
    """An item of a section listing page: read like a full item, marked as cut short."""
    return current_state(video, listing=True)


def current_states(root: Element) -> dict[str, CurrentState]:
    """Every item in a (possibly multi-key) metadata answer, by rating key."""
    section = str(root.get("librarySectionID") or "")
    states = (current_state(v, section) for v in _videos(root))
    return {s.rating_key: s for s in states}


def collections(root: Element) -> list[Listed]:
    """Every collection (`Directory`) of a collections listing page (`/all?type=18`)."""
    return [Listed(rating_key=str(d.get("ratingKey", "")), title=d.get("title", ""),
                   summary=d.get("summary") or "", thumb=d.get("thumb") or "",
                   child_count=_int(d.get("childCount")), sort=_int(d.get("collectionSort")))
            for d in root if d.tag == "Directory"]


def total_size(root: Element, page_len: int) -> int:
    """The listing's total, as plexapi reads it: `totalSize`, else `size`, else the page."""
    return _int(root.get("totalSize")) or _int(root.get("size")) or page_len
