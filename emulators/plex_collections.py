"""Collections in the emulated Plex library: the metadata items of type 18 and their members.

In Plex a (non-smart) collection is two things at once: a metadata item with its own title,
summary, poster and settings, and a `Collection` tag that its members carry. Adding an item
through the collection API gives the item the tag; an item edit that sets the tag
(`collection[0].tag.tag=Name`) makes the item a member, creating the collection when the
section has none of that name. So membership lives in one place here, the items' tags, and
a collection's children are worked out from them; the collection itself keeps only its own
fields and the custom order.

Facts and where they come from (plexapi 4.18 source and its test suite, which runs against
a real server):

* create: `POST /library/collections?type=&title=&smart=0&sectionId=&uri=server://<machine>/
  com.plexapp.plugins.library/library/metadata/<k1,k2>` answers a MediaContainer holding the
  new Directory (`Collection._create`);
* the Directory's `key` is `/library/collections/<id>/children` (plexapi strips `/children`
  and builds every further path on `/library/collections/<id>`), `guid` is
  `collection://<uuid>`, `type="collection"`, `subtype` the members' type, and a collection
  without an uploaded poster has `thumb="/library/collections/<id>/composite/<stamp>"`
  (test_Collection_attrs). `summary` is present even when empty (the same test reads "");
  `collectionSort`/`collectionMode`/`smart` default to 0/-1/0 in plexapi when absent, so they
  are printed only when they differ (belief: what real Plex prints for defaults is unverified);
* a new collection lists its items by release date (`collectionSort` 0: plexapi's
  `test_Collection_attrs` reads 0 from a fresh one, Kometa calls it "Order Collection by
  Release Dates"), oldest first, by `originallyAvailableAt` (belief: the direction and the
  order of undated items and of one day's items are unverified on a server of our own);
* `sortUpdate` reads `GET /library/collections/<id>?includePreferences=1` for `<Setting>`s
  with `enumValues`, then sends `PUT /library/collections/<id>/prefs?collectionSort=<0|1|2>`
  (release, alpha, custom);
* `moveItem` sends `PUT .../items/<k>/move[?after=<k2>]`, no `after` meaning first place;
  plexapi's own test resets the sort to "release" after moving, so a move is taken to switch
  the collection to its custom order (belief);
* `addItems`: `PUT .../items?uri=...`; `removeItems`: `DELETE .../items/<k>`; `delete()`:
  `DELETE /library/collections/<id>`; edits go through the section like items' with `type=18`.

An empty collection keeps existing, however it began: collections made through the API may
be empty (Kometa's `blank_collection`; Maintainerr creates them empty and cleans empty ones
up itself, PR #3094), and users of a tool that builds collections from item tags report
piles of collections left with no items once the tags moved on (plex-auto-genres #34).
Nothing we found says Plex removes one when its last member leaves (not verified on a
server of our own).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from xml.etree import ElementTree as ET

from emulators.plex_library import (
    IDENTIFIER,
    SEARCH_TYPES,
    Artwork,
    EditError,
    Image,
    Item,
    UnknownItem,
    _clean,
    parse_edit,
)

if TYPE_CHECKING:
    from emulators.plex_library import PlexLibrary

COLLECTION_TYPE = 18
SORT_RELEASE, SORT_ALPHA, SORT_CUSTOM = 0, 1, 2
# The advanced settings plexapi's editAdvanced validates against (`enumValues`).
PREFERENCES: dict[str, tuple[int, dict[int, str], str]] = {
    "collectionMode": (-1, {-1: "Library default", 0: "Hide collection",
                            1: "Hide items in this collection", 2: "Show this collection and its items"},
                       "Collection mode"),
    "collectionSort": (SORT_RELEASE, {SORT_RELEASE: "Release date", SORT_ALPHA: "Alphabetical",
                                      SORT_CUSTOM: "Custom"}, "Collection order"),
}
# What an edit of a collection may set: its own text fields and labels, and image locks.
COLLECTION_FIELDS = frozenset({"title", "titleSort", "summary", "contentRating", "userRating"})
COLLECTION_TAGS = frozenset({"Label"})
COLLECTION_LOCKS = COLLECTION_FIELDS | {"label", "thumb", "art"}
URI_RE = re.compile(r"^server://(?P<machine>[^/]+)/" + re.escape(IDENTIFIER)
                    + r"/library/metadata/(?P<keys>\d+(?:,\d+)*)$")


@dataclass
class Collection(Artwork):
    """A collection's own data. Who belongs to it is in the items' tags (see module doc)."""

    rating_key: int
    section: int
    title: str
    added_at: int
    updated_at: int
    guid: str = field(default_factory=lambda: f"collection://{uuid.uuid4()}")
    fields: dict[str, Any] = field(default_factory=dict)
    locks: set[str] = field(default_factory=set)
    labels: list[str] = field(default_factory=list)
    order: list[int] = field(default_factory=list)  # members in joining order, or as moved
    sort: int = SORT_RELEASE
    mode: int = -1
    posters: list[Image] = field(default_factory=list)
    arts: list[Image] = field(default_factory=list)
    poster_index: int | None = None
    art_index: int | None = None

    @property
    def title_sort(self) -> str:
        return str(self.fields.get("titleSort") or self.title)

    def named(self, name: str) -> bool:
        """Tag names match without regard to case, as the item edit's de-duplication does."""
        return self.title.casefold() == name.casefold()


def parse_uri(uri: str, machine: str) -> list[int]:
    """The rating keys of a `server://<machine>/com.plexapp.plugins.library/library/metadata/<keys>`
    URI; another server's URI or another shape is refused (belief: real Plex's answer to
    those is unverified)."""
    match = URI_RE.match(uri)
    if match is None:
        raise EditError(f"unsupported uri {uri!r}")
    if match["machine"] != machine:
        raise EditError(f"uri names server {match['machine']}, not this one")
    return [int(k) for k in match["keys"].split(",")]


def moved(order: list[int], key: int, after: int | None) -> list[int]:
    """The order with `key` placed first (`after` None) or right behind `after`."""
    if key not in order or (after is not None and after not in order) or key == after:
        raise EditError(f"cannot move {key} after {after}")
    rest = [k for k in order if k != key]
    at = 0 if after is None else rest.index(after) + 1
    return rest[:at] + [key] + rest[at:]


def release_key(item: Item) -> tuple[int, str, str, int]:
    """Release-date order: undated items first (SQL sorts NULL first), then by title."""
    date = item.fields.get("originallyAvailableAt") or (
        f"{item.fields['year']:04d}" if item.fields.get("year") else None)
    title, key = item.sort_key()
    return (0 if date is None else 1, str(date or ""), title, key)


class CollectionStore:
    """The library's collections, kept in `library.collections` so that posters and the
    `/library/metadata` routes find them beside items. Callers hold the emulator's lock."""

    def __init__(self, library: PlexLibrary) -> None:
        self.library = library

    @property
    def collections(self) -> dict[int, Collection]:
        return self.library.collections

    # -------------------------------------------------------- look-ups

    def get(self, rating_key: int) -> Collection:
        collection = self.collections.get(rating_key)
        if collection is None:
            raise UnknownItem(f"no collection {rating_key}")
        return collection

    def by_title(self, section_key: int, title: str) -> Collection | None:
        return next((c for c in self.collections.values()
                     if c.section == section_key and c.named(title)), None)

    def in_section(self, section_key: int, title: str | None = None) -> list[Collection]:
        """A section's collections by sort title; `title` is a case-insensitive contains."""
        self.library.section(section_key)
        want = (title or "").casefold()
        found = [c for c in self.collections.values()
                 if c.section == section_key and want in c.title.casefold()]
        return sorted(found, key=lambda c: (c.title_sort.casefold(), c.rating_key))

    def members(self, collection: Collection) -> set[int]:
        """Every item tagged with the collection's name. A scan, as `named` compares: real Plex
        answers from an index, so the title is folded once, not once per item of the section
        (a 20,000-item library made each collection request cost the emulator ~30 ms)."""
        home = self.library.sections[collection.section]
        title, items = collection.title.casefold(), self.library.items
        return {k for k in home.keys
                if any(name.casefold() == title for name, _ in items[k].tags.get("Collection", ()))}

    def children(self, collection: Collection) -> list[int]:
        """Members in the order the collection lists them under its `collectionSort`."""
        members = self.members(collection)
        kept = [k for k in collection.order if k in members]
        collection.order = kept + sorted(members - set(kept))
        items = self.library.items
        if collection.sort == SORT_CUSTOM:
            return list(collection.order)
        if collection.sort == SORT_ALPHA:
            return sorted(members, key=lambda k: items[k].sort_key())
        return sorted(members, key=lambda k: release_key(items[k]))

    # -------------------------------------------------------- writes

    def create(self, section_key: int, title: str, keys: Iterable[int], now: int,
               type: str | None = None) -> Collection:
        """A new collection holding `keys`; a title the section already has gets the items
        added to that collection instead (one tag per name; belief)."""
        home = self.library.section(section_key)
        if not title:
            raise EditError("a collection needs a title")
        if type is not None and type != str(SEARCH_TYPES.get(home.type)):
            raise EditError(f"type={type} does not match a {home.type} section")
        keys = list(keys)
        self._check_members(home.key, keys)
        collection = self.by_title(home.key, title)
        if collection is None:
            rating_key = self.library.next_rating_key()
            collection = Collection(rating_key=rating_key, section=home.key, title=title,
                                    added_at=now, updated_at=now)
            self.collections[rating_key] = collection
        self.add(collection.rating_key, keys, now)
        return collection

    def adopt(self, keys: Iterable[int], now: int) -> None:
        """Collections named by these items' tags that the section lacks come into being, as
        an item edit with `collection[0].tag.tag=New` makes one in Plex."""
        for key in keys:
            item = self.library.items[key]
            for name in item.tag_names("Collection"):
                if self.by_title(item.section, name) is None:
                    rating_key = self.library.next_rating_key()
                    self.collections[rating_key] = Collection(
                        rating_key=rating_key, section=item.section, title=name, added_at=now, updated_at=now)

    def add(self, rating_key: int, keys: Iterable[int], now: int) -> None:
        collection = self.get(rating_key)
        keys = list(keys)
        self._check_members(collection.section, keys)
        for key in keys:
            item = self.library.items[key]
            tags = item.tags.setdefault("Collection", [])
            if not any(collection.named(name) for name, _ in tags):
                tags.append((collection.title, None))
                item.updated_at = max(item.updated_at, now)
            if key not in collection.order:
                collection.order.append(key)
        collection.updated_at = max(collection.updated_at, now)

    def remove(self, rating_key: int, key: int, now: int) -> None:
        """`DELETE .../items/<key>`: a key that is no member is unknown there (404; belief)."""
        collection = self.get(rating_key)
        if key not in self.members(collection):
            raise UnknownItem(f"{key} is not in collection {rating_key}")
        item = self.library.items[key]
        item.tags["Collection"] = [t for t in item.tags["Collection"] if not collection.named(t[0])]
        item.updated_at = max(item.updated_at, now)
        collection.order = [k for k in collection.order if k != key]
        collection.updated_at = max(collection.updated_at, now)

    def move(self, rating_key: int, key: int, after: int | None, now: int) -> None:
        collection = self.get(rating_key)
        self.children(collection)  # brings `order` up to date with the members
        collection.order = moved(collection.order, key, after)
        collection.sort = SORT_CUSTOM
        collection.updated_at = max(collection.updated_at, now)

    def set_prefs(self, rating_key: int, params: Mapping[str, str], now: int) -> None:
        """`PUT .../prefs?collectionSort=2`: unknown settings and values are refused whole."""
        collection = self.get(rating_key)
        values: dict[str, int] = {}
        for name, raw in params.items():
            if name.startswith("X-Plex-"):
                continue
            if name not in PREFERENCES:
                raise EditError(f"unknown collection preference {name!r}")
            try:
                value = int(raw)
            except ValueError:
                raise EditError(f"{name} is not a number: {raw!r}") from None
            if value not in PREFERENCES[name][1]:
                raise EditError(f"{name}={value} is not one of {sorted(PREFERENCES[name][1])}")
            values[name] = value
        collection.sort = values.get("collectionSort", collection.sort)
        collection.mode = values.get("collectionMode", collection.mode)
        collection.updated_at = max(collection.updated_at, now)

    def edit(self, section_key: int, ids: Iterable[int], params: Mapping[str, str], now: int,
             lock_edits: bool) -> None:
        """`PUT /library/sections/<s>/all?type=18&id=<c>&summary.value=...`: text fields,
        labels and locks; a new title is carried onto the members' tags, since the tag is
        the collection. Anything else, or a title another collection has, is refused whole."""
        home = self.library.section(section_key)
        targets = [self.get(k) for k in ids]
        if not targets:
            raise EditError("edit without id")
        if any(c.section != home.key for c in targets):
            raise UnknownItem(f"collection not in section {home.key}")
        plan = parse_edit(params)
        unknown = (set(plan.values) - COLLECTION_FIELDS) | (set(plan.locks) - COLLECTION_LOCKS) | (
            (set(plan.replace) | set(plan.remove) | plan.clear) - COLLECTION_TAGS)
        if unknown:
            raise EditError(f"a collection has no {sorted(unknown)}")
        title = plan.values.get("title")
        clash = title is not None and any(c is not targets[0] and c.named(title) for c in self.in_section(home.key))
        if title is not None and (len(targets) > 1 or clash):
            raise EditError(f"another collection is called {title!r}")
        for collection in targets:
            if title is not None:
                self._rename(collection, title, now)
            for name, value in plan.values.items():
                if name == "title":
                    pass
                elif value is None:
                    collection.fields.pop(name, None)
                else:
                    collection.fields[name] = value
                if lock_edits and name not in plan.locks:
                    collection.locks.add(name)
            if "Label" in plan.replace:
                collection.labels = [s["tag.tag"] for _, s in sorted(plan.replace["Label"].items())]
            if "Label" in plan.clear:
                collection.labels = []
            gone = {n.casefold() for n in plan.remove.get("Label", [])}
            collection.labels = [n for n in collection.labels if n.casefold() not in gone]
            for name, locked in plan.locks.items():
                (collection.locks.add if locked else collection.locks.discard)(name)
            collection.updated_at = max(collection.updated_at, now)

    def delete(self, rating_key: int) -> None:
        """The collection goes and its tag with it; the items stay."""
        collection = self.get(rating_key)
        for key in self.members(collection):
            item = self.library.items[key]
            item.tags["Collection"] = [t for t in item.tags["Collection"] if not collection.named(t[0])]
        del self.collections[rating_key]

    def _rename(self, collection: Collection, title: str, now: int) -> None:
        for key in self.members(collection):
            item = self.library.items[key]
            item.tags["Collection"] = [(title, role) if collection.named(name) else (name, role)
                                       for name, role in item.tags["Collection"]]
            item.updated_at = max(item.updated_at, now)
        collection.title = title

    def _check_members(self, section_key: int, keys: list[int]) -> None:
        for key in keys:
            item = self.library.item(key)
            if item.section != section_key:
                raise EditError(f"item {key} is in section {item.section}, not {section_key}")

    # -------------------------------------------------------- XML

    def element(self, collection: Collection, *, full: bool, preferences: bool = False) -> ET.Element:
        section = self.library.sections[collection.section]
        members = [self.library.items[k] for k in self.members(collection)]
        years = [int(i.fields["year"]) for i in members if i.fields.get("year")]
        poster = collection.poster
        thumb = (f"/library/metadata/{collection.rating_key}/thumb/{poster.stamp}" if poster is not None
                 else f"/library/collections/{collection.rating_key}/composite/{collection.updated_at}")
        art = collection.art
        title_sort = collection.fields.get("titleSort")
        omit_sort = self.library.shapes.omit_default_title_sort and title_sort == collection.title
        attrs: dict[str, Any] = {
            "ratingKey": collection.rating_key,
            "key": f"/library/collections/{collection.rating_key}/children",
            "guid": collection.guid, "type": "collection", "title": collection.title,
            "titleSort": None if omit_sort else title_sort,
            "librarySectionTitle": section.title, "librarySectionID": section.key,
            "librarySectionKey": f"/library/sections/{section.key}",
            "contentRating": collection.fields.get("contentRating"),
            "subtype": section.type, "userRating": collection.fields.get("userRating"),
            "index": collection.rating_key, "thumb": thumb,
            "art": None if art is None else f"/library/metadata/{collection.rating_key}/art/{art.stamp}",
            "addedAt": collection.added_at, "updatedAt": collection.updated_at,
            "childCount": len(members), "minYear": min(years) if years else None,
            "maxYear": max(years) if years else None,
            "collectionMode": None if collection.mode == -1 else collection.mode,
            "collectionSort": None if collection.sort == SORT_RELEASE else collection.sort,
        }
        elem = ET.Element("Directory", _clean(attrs))
        elem.set("summary", str(collection.fields.get("summary") or ""))
        if full:
            for name in collection.labels:
                ET.SubElement(elem, "Label", {"tag": name})
            for name in sorted(collection.locks):
                ET.SubElement(elem, "Field", {"locked": "1", "name": name})
        if preferences:
            prefs = ET.SubElement(elem, "Preferences")
            for pref_id, (default, values, label) in PREFERENCES.items():
                current = collection.sort if pref_id == "collectionSort" else collection.mode
                ET.SubElement(prefs, "Setting", {
                    "id": pref_id, "label": label, "summary": "", "type": "int",
                    "default": str(default), "value": str(current), "hidden": "0", "advanced": "0",
                    "group": "", "enumValues": "|".join(f"{k}:{v}" for k, v in values.items()),
                })
        return elem
