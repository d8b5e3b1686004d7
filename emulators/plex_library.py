"""The emulated Plex library: sections, items, tags, locks, images and pending files.

Kept apart from the HTTP layer so that the rules tests rely on (tag lists replaced as a
whole, locks surviving an agent refresh, truncated listings, a bad edit changing nothing)
live in plain code that can be read against the protocol notes (shared reference §4)
without any socket code around them. Nothing here locks or reads the clock:
`emulators.plex_server.PlexEmulator` holds one lock around every call and passes `now`.

Where real Plex behaviour is a belief rather than a verified fact, the docstring says so.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
import unicodedata
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote
from xml.etree import ElementTree as ET

from emulators.plex_watch import WatchState

if TYPE_CHECKING:
    from emulators.plex_collections import Collection

IDENTIFIER = "com.plexapp.plugins.library"
DEFAULT_SECTIONS: tuple[tuple[str, str], ...] = (("Stash", "/media/stash"),)
DEFAULT_SIZE = 1_048_576
DEFAULT_DURATION_MS = 600_000
SEARCH_TYPES = {"movie": 1, "show": 2}

# Edit parameter name -> XML element name. `actor` is the one that differs (Plex calls the
# element Role), which is exactly the kind of mismatch a plugin gets wrong.
TAG_PARAMS: dict[str, str] = {
    "genre": "Genre",
    "actor": "Role",
    "director": "Director",
    "writer": "Writer",
    "producer": "Producer",
    "country": "Country",
    "collection": "Collection",
    "label": "Label",
}
# The filter attribute Plex puts on a tag element (`actor=21` for Role); also the lock name.
TAG_FILTER = {element: param for param, element in TAG_PARAMS.items()}
# add_item keyword -> element, so fixtures read like plexapi attributes (item.roles...).
TAG_KWARGS: dict[str, str] = {
    "genres": "Genre",
    "actors": "Role",
    "roles": "Role",
    "directors": "Director",
    "writers": "Writer",
    "producers": "Producer",
    "countries": "Country",
    "collections": "Collection",
    "labels": "Label",
}
TAG_ORDER = ("Genre", "Country", "Director", "Writer", "Producer", "Collection", "Role", "Label")
# Tags an agent refresh leaves alone: labels are only ever set by users (belief).
AGENT_KEEPS = frozenset({"Label"})

# How many tags of each type a section listing (`/all`) carries. Real Plex cuts these
# lists short (python-plexapi #249 saw 2 of 4 genres, #200 at most 2 collections); the
# exact numbers are unverified, so they are a constructor argument. Producer never
# appears in listings here, and listings carry no Field (lock) elements.
DEFAULT_LISTING_LIMITS: dict[str, int] = {
    "Genre": 2,
    "Country": 2,
    "Director": 1,
    "Writer": 1,
    "Producer": 0,
    "Collection": 2,
    "Role": 3,
    "Label": 2,
}

# Scalar fields an edit may set with `<name>.value`; value is the parser (None = text).
SCALAR_FIELDS: dict[str, Callable[[str], Any] | None] = {
    "title": None,
    "titleSort": None,
    "originalTitle": None,
    "summary": None,
    "tagline": None,
    "studio": None,
    "contentRating": None,
    "editionTitle": None,
    "originallyAvailableAt": None,
    "year": int,
    "rating": float,
    "audienceRating": float,
    "userRating": float,
    "addedAt": int,
}
# Lock names that are not scalar fields or tag types.
OTHER_LOCKS = frozenset({"thumb", "art"})
# A person's own data about an item, which no agent refresh touches: the star rating
# (`PUT /:/rate`, or `userRating.value` in an edit) and when it was given.
USER_FIELDS = frozenset({"userRating", "lastRatedAt"})
# Attributes of a Video element in the order Plex tends to print them.
ATTR_ORDER = (
    "title", "titleSort", "originalTitle", "editionTitle", "studio", "contentRating", "summary",
    "rating", "audienceRating", "userRating", "lastRatedAt", "year", "tagline",
)
DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
TAG_KEY_RE = re.compile(
    r"^(?P<kind>[a-zA-Z]+)\[(?P<index>\d*)\]\.(?P<what>tag\.tag-?|tag\.thumb|tagging\.text|tag)$"
)
PLACEHOLDER_IMAGE = b"\x89PNG\r\n\x1a\n" + b"emulated-plex-generated-thumbnail"


@dataclass(frozen=True)
class RealShapes:
    """Behaviours of real Plex servers (1.40-1.41, captured answers) that a plugin must cope
    with. Each is on by default so every test meets them; a test turns one off only to show
    what depends on it.

    * `omit_default_title_sort`: `titleSort` is left out of an item when it equals the
      title (plexapi then defaults it to the title), as a real listing prints "Brave"
      without one and "Avatar" with `titleSort="Avatar 01"`.
    * `nfd_file_names`: `Part@file` holds names in Unicode NFD (`e` + combining accent), as
      files on macOS, SMB or AFP shares arrive; the `file=` filter compares code points as
      stored, so a name sent in NFC finds nothing.
    * `plex_versions_as_parts`: a file under `<movie folder>/Plex Versions/<profile>/` is
      Plex's optimised copy of the item in that folder: a second Media (`proxyType="42"`,
      `target`, `title` = the profile) of the same item, never an item of its own, and the
      original Media is titled "Original".
    * `web_edits_lock`: a field a person edits in Plex Web is locked by that edit (an edit
      request without `<field>.locked`), so a person's edit shows as a lock nobody else set.
    """

    omit_default_title_sort: bool = True
    nfd_file_names: bool = True
    plex_versions_as_parts: bool = True
    web_edits_lock: bool = True

    def file_name(self, path: str) -> str:
        """A path in the form this server stores it."""
        return unicodedata.normalize("NFD" if self.nfd_file_names else "NFC", path)


#: Folder Plex writes optimised versions to, inside the movie's own folder.
PLEX_VERSIONS = "Plex Versions"
#: `Media@proxyType` of an optimised version (plexapi's SEARCHTYPES["optimizedVersion"]).
OPTIMIZED_PROXY_TYPE = 42


def plex_version_of(path: str) -> tuple[str, str] | None:
    """(movie folder, profile) when `path` is `<folder>/Plex Versions/<profile>/<file>`."""
    parts = path.split("/")
    if len(parts) >= 4 and parts[-3] == PLEX_VERSIONS:
        return "/".join(parts[:-3]), parts[-2]
    return None


class EditError(ValueError):
    """A request the real server would refuse with 400; raised before anything changes."""


class UnknownItem(KeyError):
    """A rating key or section the server does not have (HTTP 404)."""


@dataclass
class Section:
    key: int
    title: str
    type: str
    locations: list[str]
    created_at: int
    uuid: str = field(default_factory=lambda: str(uuid.uuid4()))
    scanned_at: int = 0
    refreshing: bool = False
    keys: set[int] = field(default_factory=set)
    order: list[int] | None = None  # cached listing order; None when it must be rebuilt

    def owns(self, path: str) -> bool:
        return any(_under(path, loc) for loc in self.locations)


@dataclass
class Image:
    """One poster or background: uploaded bytes, a fetched URL, or the agent's own frame."""

    stamp: int
    data: bytes | None = None
    url: str | None = None
    provider: str | None = None

    @property
    def resource_key(self) -> str:
        """What plexapi's Poster.ratingKey holds and what `PUT .../poster?url=` selects by."""
        if self.url is not None:
            return self.url
        digest = hashlib.sha1(self.data or b"").hexdigest()
        return f"upload://{self.stamp}/{digest}"


class Artwork:
    """Posters and backgrounds with the selected one of each, as items and collections hold them."""

    posters: list[Image]
    arts: list[Image]
    poster_index: int | None
    art_index: int | None
    locks: set[str]

    @property
    def poster(self) -> Image | None:
        return None if self.poster_index is None else self.posters[self.poster_index]

    @property
    def art(self) -> Image | None:
        return None if self.art_index is None else self.arts[self.art_index]


@dataclass
class MediaFile:
    """One Media/Part pair: Plex keeps several files of the same movie as versions."""

    file: str
    size: int
    duration: int
    media_id: int
    part_id: int
    target: str | None = None  # the profile of an optimised version ("Optimized for TV")

    @property
    def container(self) -> str:
        return posixpath.splitext(self.file)[1].lstrip(".").lower() or "mp4"


@dataclass
class Tag:
    """A row of Plex's tag table: ids and a person's photo belong to the tag, not the item."""

    id: int
    name: str
    thumb: str | None = None


@dataclass
class Item(Artwork):
    rating_key: int
    section: int
    media: list[MediaFile]
    added_at: int
    updated_at: int
    fields: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, list[tuple[str, str | None]]] = field(default_factory=dict)
    locks: set[str] = field(default_factory=set)
    guids: list[str] = field(default_factory=list)
    posters: list[Image] = field(default_factory=list)
    arts: list[Image] = field(default_factory=list)
    poster_index: int | None = None
    art_index: int | None = None
    files_lower: str = ""
    title_lower: str = ""

    @property
    def file(self) -> str:
        return self.media[0].file

    @property
    def files(self) -> list[str]:
        return [m.file for m in self.media]

    @property
    def title(self) -> str | None:
        return self.fields.get("title")

    @property
    def stem(self) -> str:
        return posixpath.splitext(posixpath.basename(self.file))[0]

    def tag_names(self, kind: str) -> list[str]:
        """Names of one tag type; `kind` may be "genre", "genres" or "Genre"."""
        return [name for name, _ in self.tags.get(element_for(kind), [])]

    def roles(self) -> dict[str, str | None]:
        return dict(self.tags.get("Role", []))

    def is_locked(self, name: str) -> bool:
        return name in self.locks

    def sort_key(self) -> tuple[str, int]:
        return (str(self.fields.get("titleSort") or self.fields.get("title") or "").casefold(),
                self.rating_key)

    def reindex(self) -> None:
        """Lower-cased copies make `file=`/`title=` filters cheap over 100k items."""
        self.files_lower = "\n".join(m.file for m in self.media).casefold()
        self.title_lower = str(self.fields.get("title", "")).casefold()


@dataclass
class PendingFile:
    """A file on disk Plex has not scanned yet: it only becomes an item through a scan."""

    path: str
    section: int
    size: int
    duration: int
    title: str | None
    extra: dict[str, Any]


def _stamp(item: Artwork, now: int) -> int:
    """Image URLs carry a stamp; two uploads to one item in one second still differ."""
    used = [image.stamp for image in (*item.posters, *item.arts)]
    return max([int(now), *(s + 1 for s in used)])


def element_for(kind: str) -> str:
    """Accepts an edit name ("actor"), a plexapi plural ("roles") or an element ("Role")."""
    if kind in TAG_FILTER:
        return kind
    if kind in TAG_PARAMS:
        return TAG_PARAMS[kind]
    if kind in TAG_KWARGS:
        return TAG_KWARGS[kind]
    raise KeyError(f"unknown tag type {kind!r}")


def _under(path: str, folder: str, same_form: bool = False) -> bool:
    """`path` is `folder` or inside it. A Windows Plex (drive or UNC location) separates
    with backslashes and compares ignoring case, as NTFS does; elsewhere exact, with '/'.
    Compared in NFC unless `same_form`: a scan request must name the folder as the disk
    holds it, while a section's location is configured by hand."""
    if not same_form:
        path, folder = unicodedata.normalize("NFC", path), unicodedata.normalize("NFC", folder)
    if re.match(r"^([A-Za-z]:|\\\\)", folder):
        p, f = path.replace("/", "\\").casefold(), folder.replace("/", "\\").rstrip("\\").casefold()
        return p == f or p.startswith(f + "\\")
    folder = folder.rstrip("/")
    return path == folder or path.startswith(folder + "/")


# ---------------------------------------------------------------- edits


@dataclass
class EditPlan:
    """A parsed edit request; applying it cannot fail, so a bad request changes nothing."""

    values: dict[str, Any] = field(default_factory=dict)
    locks: dict[str, bool] = field(default_factory=dict)
    ignored: list[str] = field(default_factory=list)
    replace: dict[str, dict[int, dict[str, str]]] = field(default_factory=dict)
    remove: dict[str, list[str]] = field(default_factory=dict)
    clear: set[str] = field(default_factory=set)

    def touches_order(self) -> bool:
        return "title" in self.values or "titleSort" in self.values


def parse_edit(params: Mapping[str, str]) -> EditPlan:
    """Turns plexapi's flat edit parameters into a plan, refusing what Plex would refuse.

    One case is known: a bare field name (`userRating=4.0`, what `edit(userRating=...)`
    sends) is answered 200 and changes nothing; Plex Web sends `userRating.value`
    (python-plexapi #354, from a server log). Such keys are listed in `ignored`, not
    applied. Which other parameters real Plex rejects (rather than ignores) is unverified;
    rejecting them here makes a typo in the plugin's edit keys fail loudly instead of
    silently.
    """
    plan = EditPlan()
    for key, value in params.items():
        if key in ("id", "type") or key.startswith("X-Plex-"):
            continue
        if key.endswith(".locked"):
            plan.locks[_lock_name(key[: -len(".locked")])] = _parse_lock(key, value)
        elif key.endswith(".value"):
            name = key[: -len(".value")]
            plan.values[name] = _parse_value(name, value)
        elif (match := TAG_KEY_RE.match(key)) is not None:
            _plan_tag(plan, match, value)
        elif key in SCALAR_FIELDS:
            plan.ignored.append(key)
        else:
            raise EditError(f"unsupported edit parameter {key!r}")
    for element, slots in plan.replace.items():
        for index, slot in slots.items():
            if not slot.get("tag.tag"):
                raise EditError(f"{TAG_FILTER[element]}[{index}] has no tag.tag")
    return plan


def _lock_name(name: str) -> str:
    if name in SCALAR_FIELDS or name in TAG_PARAMS or name in OTHER_LOCKS:
        return name
    raise EditError(f"cannot lock unknown field {name!r}")


def _parse_lock(key: str, value: str) -> bool:
    if value not in ("0", "1"):
        raise EditError(f"{key} must be 0 or 1, got {value!r}")
    return value == "1"


def _parse_value(name: str, value: str) -> Any:
    if name not in SCALAR_FIELDS:
        raise EditError(f"unsupported field {name!r}")
    if value == "":
        if name == "title":
            raise EditError("title cannot be empty")
        return None
    if name == "originallyAvailableAt" and not _valid_date(value):
        raise EditError(f"originallyAvailableAt must be YYYY-MM-DD, got {value!r}")
    parser = SCALAR_FIELDS[name]
    if parser is None:
        return value
    try:
        return parser(value)
    except ValueError as exc:
        raise EditError(f"{name} is not a number: {value!r}") from exc


def _valid_date(value: str) -> bool:
    if not DATE_RE.match(value):
        return False
    month, day = int(value[5:7]), int(value[8:10])
    return 1 <= month <= 12 and 1 <= day <= 31


def _plan_tag(plan: EditPlan, match: re.Match[str], value: str) -> None:
    element = TAG_PARAMS.get(match["kind"])
    if element is None:
        raise EditError(f"unsupported tag type {match['kind']!r}")
    index, what = match["index"], match["what"]
    if index == "":
        if what == "tag.tag-":
            # plexapi quotes each name, joins with ",", then the whole value is quoted again;
            # the query parser undid the outer quoting, so split first, then unquote each.
            plan.remove.setdefault(element, []).extend(unquote(v) for v in value.split(",") if v)
        elif what == "tag":
            plan.clear.add(element)
        else:
            raise EditError(f"{match.group(0)} needs an index")
        return
    if what in ("tag.tag-", "tag"):
        raise EditError(f"{match.group(0)}: this form takes no index")
    slot = plan.replace.setdefault(element, {}).setdefault(int(index), {})
    slot[what] = value


def apply_edit(item: Item, plan: EditPlan, now: int, *, lock_edits: bool = True) -> None:
    """Applies a parsed plan: indexed tags replace the whole list, then removals, then locks.

    With `lock_edits`, a value edited without an explicit `.locked` gets locked, as Plex
    Web does (`RealShapes.web_edits_lock`).
    """
    for name, value in plan.values.items():
        _set_field(item, name, value)
        if lock_edits and name not in plan.locks:
            item.locks.add(name)
    for element, slots in plan.replace.items():
        item.tags[element] = _tags_from_slots(slots)
    for element in plan.clear:
        item.tags[element] = []
    for element, names in plan.remove.items():
        gone = {n.casefold() for n in names}
        item.tags[element] = [t for t in item.tags.get(element, []) if t[0].casefold() not in gone]
    for name, locked in plan.locks.items():
        (item.locks.add if locked else item.locks.discard)(name)
    item.updated_at = max(now, item.updated_at)
    item.reindex()


def _set_field(item: Item, name: str, value: Any) -> None:
    if value is None:
        item.fields.pop(name, None)
        return
    item.fields[name] = value
    if name == "originallyAvailableAt" and "year" not in item.locks:
        item.fields["year"] = int(value[:4])


def _tags_from_slots(slots: dict[int, dict[str, str]]) -> list[tuple[str, str | None]]:
    result: list[tuple[str, str | None]] = []
    for index in sorted(slots):
        slot = slots[index]
        name = slot["tag.tag"]
        if any(existing.casefold() == name.casefold() for existing, _ in result):
            continue
        result.append((name, slot.get("tagging.text") or None))
    return result


def tag_thumbs(plan: EditPlan) -> list[tuple[str, str, str]]:
    """(element, name, thumb) triples: in Plex a person's photo belongs to the tag, not the item."""
    out = []
    for element, slots in plan.replace.items():
        for slot in slots.values():
            if slot.get("tag.thumb") and slot.get("tag.tag"):
                out.append((element, slot["tag.tag"], slot["tag.thumb"]))
    return out


def agent_refresh(item: Item, now: int) -> None:
    """What the Personal Media agent leaves behind: title from the file name, little else.

    Everything unlocked is reset; locked fields, locked tag types, labels and the person's
    own rating (`USER_FIELDS`) survive. An
    unlocked poster goes back to the agent's frame and an unlocked background is dropped
    (belief: an agent refresh may re-pick artwork; modelled harshly so unlocked uploads
    are visibly at risk).
    """
    for name in list(item.fields):
        if name not in item.locks and name not in USER_FIELDS:
            del item.fields[name]
    if "title" not in item.locks:
        item.fields["title"] = item.stem
    for element in list(item.tags):
        if element not in AGENT_KEEPS and TAG_FILTER[element] not in item.locks:
            item.tags[element] = []
    if "thumb" not in item.locks:
        agent = [i for i, image in enumerate(item.posters) if image.provider == "agent"]
        item.poster_index = agent[0] if agent else None
    if "art" not in item.locks:
        item.art_index = None
    item.updated_at = max(now, item.updated_at)
    item.reindex()


# ---------------------------------------------------------------- the library


class PlexLibrary:
    """Sections and items, indexed by rating key and by file, with Plex's edit rules."""

    def __init__(self, sections: Iterable[tuple[Any, ...]] = DEFAULT_SECTIONS, *,
                 listing_limits: Mapping[str, int] | None = None, now: int = 1_700_000_000,
                 shapes: RealShapes | None = None) -> None:
        self.shapes = shapes if shapes is not None else RealShapes()
        self.sections: dict[int, Section] = {}
        self.items: dict[int, Item] = {}
        self.by_file: dict[str, int] = {}
        self.pending: dict[str, PendingFile] = {}
        self.tag_table: dict[tuple[str, str], Tag] = {}
        # Collections are metadata items too (type 18), numbered from the same keys; their
        # rules live in emulators.plex_collections.
        self.collections: dict[int, Collection] = {}
        self.limits = dict(DEFAULT_LISTING_LIMITS)
        for kind, limit in (listing_limits or {}).items():
            self.limits[element_for(kind)] = int(limit)
        self.updated_at = now
        self.watch = WatchState()
        self._next_key = 100
        self._next_media = 1000
        self._next_tag = 10
        for spec in sections:
            title, locations, *rest = spec
            self.add_section(title, locations, rest[0] if rest else "movie", now=now)

    # -------------------------------------------------------- set-up

    def add_section(self, title: str, locations: str | Iterable[str], type: str = "movie", *,
                    now: int) -> int:
        paths = [locations] if isinstance(locations, str) else list(locations)
        key = len(self.sections) + 1
        self.sections[key] = Section(key=key, title=title, type=type,
                                     locations=[p.rstrip("/") or "/" for p in paths],
                                     created_at=now, uuid=str(uuid.UUID(int=key)), scanned_at=now)
        return key

    def section(self, key: int) -> Section:
        try:
            return self.sections[key]
        except KeyError:
            raise UnknownItem(f"no section {key}") from None

    def section_for(self, path: str, section: int | None = None) -> Section:
        if section is not None:
            return self.section(section)
        for candidate in self.sections.values():
            if candidate.owns(path):
                return candidate
        raise ValueError(f"{path} is under no section's location "
                         f"({[loc for s in self.sections.values() for loc in s.locations]})")

    def add_item(self, file: str, *, now: int, section: int | None = None, title: str | None = None,
                 size: int = DEFAULT_SIZE, duration_ms: int = DEFAULT_DURATION_MS,
                 **fields_and_tags: Any) -> int:
        """Adds a scanned item. Keywords: any SCALAR_FIELDS name, a tag plural (genres=,
        actors=... as names, (name, role) or {"tag", "role", "thumb"}), `locked=` names,
        `guids=`, `files=` more (path, size) versions, `poster=`/`art=` bytes, `added_at=`.

        Paths are stored in the server's form (`RealShapes.file_name`); under
        `plex_versions_as_parts` a file in a `Plex Versions` folder becomes an optimised
        version of the item in the folder above and that item's key is returned."""
        file = self.shapes.file_name(file)
        version = plex_version_of(file) if self.shapes.plex_versions_as_parts else None
        if version is not None:
            return self.add_version(version[0], version[1], file, size=size, duration_ms=duration_ms, now=now)
        if file in self.by_file:
            raise ValueError(f"{file} is already item {self.by_file[file]}")
        home = self.section_for(file, section)
        extra = dict(fields_and_tags)
        added_at = int(extra.pop("added_at", now))
        rating_key = self.next_rating_key()
        media = [self._media(file, size, duration_ms)]
        for more in extra.pop("files", ()):
            path, more_size = (more, size) if isinstance(more, str) else more
            media.append(self._media(self.shapes.file_name(path), more_size, duration_ms))
        item = Item(rating_key=rating_key, section=home.key, media=media, added_at=added_at,
                    updated_at=int(extra.pop("updated_at", added_at)))
        item.fields["title"] = title if title is not None else item.stem
        item.locks.update(extra.pop("locked", ()))
        item.guids = list(extra.pop("guids", ()))
        item.posters.append(Image(stamp=added_at, data=PLACEHOLDER_IMAGE, provider="agent"))
        item.poster_index = 0
        poster, art = extra.pop("poster", None), extra.pop("art", None)
        if poster is not None:
            self._add_image(item, "thumb", poster, None, added_at)
        if art is not None:
            self._add_image(item, "art", art, None, added_at)
        for key, value in extra.items():
            if key in TAG_KWARGS:
                self._set_fixture_tags(item, TAG_KWARGS[key], value)
            elif key in SCALAR_FIELDS:
                item.fields[key] = value
            else:
                raise TypeError(f"add_item() got an unexpected keyword {key!r}")
        if "originallyAvailableAt" in item.fields and "year" not in item.fields:
            item.fields["year"] = int(str(item.fields["originallyAvailableAt"])[:4])
        item.reindex()
        self.items[rating_key] = item
        for m in media:
            self.by_file[m.file] = rating_key
        home.keys.add(rating_key)
        home.order = None
        self.updated_at = max(self.updated_at, now)
        return rating_key

    def next_rating_key(self) -> int:
        """Items and collections share one sequence of rating keys, as in Plex's database."""
        key = self._next_key
        self._next_key += 1
        return key

    def add_pending(self, file: str, *, section: int | None = None, title: str | None = None,
                    size: int = DEFAULT_SIZE, duration_ms: int = DEFAULT_DURATION_MS,
                    **extra: Any) -> None:
        file = self.shapes.file_name(file)
        home = self.section_for(file, section)
        self.pending[file] = PendingFile(file, home.key, size, duration_ms, title, extra)

    def add_version(self, folder: str, profile: str, file: str | None = None, *, now: int,
                    size: int = DEFAULT_SIZE, duration_ms: int = DEFAULT_DURATION_MS) -> int:
        """Plex's optimised copy (Optimize... in Plex Web) of the item whose primary file is in
        `folder`: one more Media of that item at `<folder>/Plex Versions/<profile>/<title>.mp4`
        (or `file`). Returns the item's key."""
        folder = self.shapes.file_name(folder.rstrip("/"))
        owners = [i for i in self.items.values() if posixpath.dirname(i.file) == folder]
        if file is not None:
            stem = posixpath.splitext(posixpath.basename(self.shapes.file_name(file)))[0]
            owners = [i for i in owners if i.stem == stem] or owners
        if len(owners) != 1:
            raise ValueError(f"{folder} holds {len(owners)} items; an optimised version needs exactly one")
        item = owners[0]
        path = self.shapes.file_name(file or f"{folder}/{PLEX_VERSIONS}/{profile}/{item.title or item.stem}.mp4")
        media = self._media(path, size, duration_ms)
        media.target = profile
        item.media.append(media)
        self.by_file[path] = item.rating_key
        item.reindex()
        item.updated_at = max(item.updated_at, now)
        return item.rating_key

    def remove_item(self, rating_key: int) -> None:
        """The file vanished and the trash was emptied: the key is gone for good."""
        item = self.item(rating_key)
        for m in item.media:
            self.by_file.pop(m.file, None)
        home = self.sections[item.section]
        home.keys.discard(rating_key)
        home.order = None
        del self.items[rating_key]
        self.watch.forget_item(rating_key)

    def scan(self, section_key: int, path: str | None, now: int) -> list[int]:
        """A library scan: pending files of the section (under `path` if given) become items."""
        home = self.section(section_key)
        due = [p for p in self.pending.values()
               if p.section == home.key and (path is None or _under(p.path, path, same_form=True))]
        keys = []
        for pending in sorted(due, key=lambda p: p.path):
            del self.pending[pending.path]
            keys.append(self.add_item(pending.path, now=now, section=home.key, title=pending.title,
                                      size=pending.size, duration_ms=pending.duration, **pending.extra))
        home.scanned_at = now
        return keys

    def _media(self, file: str, size: int, duration: int) -> MediaFile:
        if file in self.by_file:
            raise ValueError(f"{file} is already item {self.by_file[file]}")
        self._next_media += 1
        return MediaFile(file, size, duration, media_id=self._next_media, part_id=self._next_media)

    def _set_fixture_tags(self, item: Item, element: str, values: Iterable[Any]) -> None:
        tags = []
        for name, role, thumb in normalise_tags(values):
            tags.append((name, role))
            if thumb:
                self.tag(element, name).thumb = thumb
        item.tags[element] = tags

    # -------------------------------------------------------- reads

    def item(self, rating_key: int) -> Item:
        try:
            return self.items[rating_key]
        except KeyError:
            raise UnknownItem(f"no item {rating_key}") from None

    def imaged(self, rating_key: int) -> Item | Collection:
        """An item or a collection: both carry posters and backgrounds the same way."""
        found = self.items.get(rating_key) or self.collections.get(rating_key)
        if found is None:
            raise UnknownItem(f"no item {rating_key}")
        return found

    def item_by_file(self, file: str) -> Item | None:
        key = self.by_file.get(self.shapes.file_name(file))
        return None if key is None else self.items[key]

    def tag(self, element: str, name: str) -> Tag:
        tag = self.tag_table.get((element, name))
        if tag is None:
            self._next_tag += 1
            tag = self.tag_table[(element, name)] = Tag(self._next_tag, name)
        return tag

    def ordered(self, section_key: int) -> list[int]:
        """Listing order: by sort title, as the /all default (belief); cached until it changes."""
        home = self.section(section_key)
        if home.order is None:
            home.order = sorted(home.keys, key=lambda k: self.items[k].sort_key())
        return home.order

    def listing(self, section_key: int, start: int, size: int | None, *, file: str | None = None,
                title: str | None = None, type: str | None = None,
                viewed_after: int | None = None) -> tuple[list[Item], int]:
        """One page of /all and the total; `file=`/`title=` are case-insensitive contains,
        `viewed_after` (`lastViewedAt>>=`) keeps items the owner viewed after that second."""
        home = self.section(section_key)
        if type not in (None, "") and type != str(SEARCH_TYPES.get(home.type)):
            return [], 0
        if file or title:
            # Filter first and sort only the matches: after an edit that changes titles the
            # whole section would be re-sorted for every narrow look-up, a cost real Plex's
            # database does not have. Same answer: the sort key is total.
            want_file, want_title = (file or "").casefold(), (title or "").casefold()
            candidates = home.order if home.order is not None else home.keys
            order = [k for k in candidates
                     if want_file in self.items[k].files_lower and want_title in self.items[k].title_lower]
            if home.order is None:
                order.sort(key=lambda k: self.items[k].sort_key())
        else:
            order = self.ordered(section_key)
        if viewed_after is not None:
            order = [k for k in order if (self.watch.item_attrs(k).get("lastViewedAt") or 0) > viewed_after]
        end = len(order) if size is None else start + size
        return [self.items[k] for k in order[start:end]], len(order)

    # -------------------------------------------------------- writes

    def edit(self, section_key: int, ids: Iterable[int], params: Mapping[str, str], now: int) -> None:
        """PUT /library/sections/{id}/all: everything is checked before anything changes."""
        home = self.section(section_key)
        targets = [self.item(k) for k in ids]
        if not targets:
            raise EditError("edit without id")
        for target in targets:
            if target.section != home.key:
                raise UnknownItem(f"item {target.rating_key} is not in section {home.key}")
        wanted_type = params.get("type")
        if wanted_type is not None and wanted_type != str(SEARCH_TYPES.get(home.type)):
            raise EditError(f"type={wanted_type} does not match a {home.type} section")
        plan = parse_edit(params)
        for target in targets:
            apply_edit(target, plan, now, lock_edits=self.shapes.web_edits_lock)
        for element, name, thumb in tag_thumbs(plan):
            self.tag(element, name).thumb = thumb
        if plan.touches_order():
            home.order = None
        self.updated_at = max(self.updated_at, now)

    def rate(self, rating_key: int, rating: str, now: int) -> None:
        """`PUT /:/rate?key=&identifier=&rating=`, plexapi's `rate()`: 0-10 sets the rating
        and `lastRatedAt`, -1 clears it (both verified by plexapi's tests against a real
        server). No field lock is involved. That an invalid rating is refused with 400 is a
        belief (plexapi refuses it before sending)."""
        item = self.item(rating_key)
        try:
            value = float(rating)
        except ValueError:
            raise EditError(f"rating is not a number: {rating!r}") from None
        if value == -1:
            item.fields.pop("userRating", None)
            item.fields.pop("lastRatedAt", None)
        elif 0 <= value <= 10:
            item.fields["userRating"] = value
            item.fields["lastRatedAt"] = now
        else:
            raise EditError(f"rating must be 0-10 or -1, got {rating!r}")
        item.updated_at = max(item.updated_at, now)

    def refresh(self, rating_key: int, now: int) -> None:
        item = self.item(rating_key)
        agent_refresh(item, now)
        self.sections[item.section].order = None

    def upload(self, rating_key: int, kind: str, data: bytes | None, url: str | None, now: int) -> None:
        """A new poster (`kind="thumb"`) or background (`"art"`) becomes the selected one.

        A collection's upload also locks its field. plexapi's collection tests find a
        collection's theme locked after an upload, its image tests unlock the field after
        uploading, and Plex's forum says choosing a poster locks it in place. For an item
        the emulator keeps its older belief that an upload leaves the lock alone (an agent
        refresh then replaces the image), which its tests rely on; the same facts suggest an
        item's upload locks too (unverified on a server of our own), and the item sync sends
        the lock in its edit either way."""
        item = self.imaged(rating_key)
        if not data and not url:
            raise EditError("upload without an image")
        self._add_image(item, kind, data, url, now)
        if rating_key in self.collections:
            item.locks.add(kind)
        item.updated_at = max(item.updated_at, now)

    def _add_image(self, item: Artwork, kind: str, data: bytes | None, url: str | None, now: int) -> None:
        images = item.posters if kind == "thumb" else item.arts
        images.append(Image(stamp=_stamp(item, now), data=data, url=url))
        if kind == "thumb":
            item.poster_index = len(images) - 1
        else:
            item.art_index = len(images) - 1

    def select(self, rating_key: int, kind: str, resource_key: str, now: int) -> None:
        """`PUT .../poster?url=<Poster.ratingKey>`, what plexapi's Poster.select() sends."""
        item = self.imaged(rating_key)
        images = item.posters if kind == "thumb" else item.arts
        for index, image in enumerate(images):
            if image.resource_key == resource_key:
                if kind == "thumb":
                    item.poster_index = index
                else:
                    item.art_index = index
                item.updated_at = max(item.updated_at, now)
                return
        raise EditError(f"no {kind} {resource_key!r} on item {rating_key}")

    def image(self, rating_key: int, kind: str, stamp: int | None) -> Image | None:
        item = self.imaged(rating_key)
        if stamp is None:
            return item.poster if kind == "thumb" else item.art
        images = item.posters if kind == "thumb" else item.arts
        return next((i for i in images if i.stamp == stamp), None)

    # -------------------------------------------------------- XML

    def item_element(self, item: Item, *, full: bool) -> ET.Element:
        return item_element(item, self.sections[item.section], full=full, limits=self.limits,
                            tag_info=self.tag, shapes=self.shapes, viewing=self.watch.item_attrs(item.rating_key))


# ---------------------------------------------------------------- XML


def container(**attrs: Any) -> ET.Element:
    return ET.Element("MediaContainer", _clean(attrs))


def _clean(attrs: Mapping[str, Any]) -> dict[str, str]:
    """Real Plex omits empty attributes, which is what triggers plexapi's auto-reload."""
    return {k: _text(v) for k, v in attrs.items() if v is not None and v != "" and v != []}


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float) and value.is_integer():
        return f"{value:.1f}"
    return str(value)


def section_attrs(section: Section) -> dict[str, Any]:
    return {
        "librarySectionID": section.key,
        "librarySectionTitle": section.title,
        "librarySectionUUID": section.uuid,
    }


def section_element(section: Section, updated_at: int) -> ET.Element:
    scanner = {"movie": "Plex Video Files Scanner", "show": "Plex Series Scanner"}.get(section.type,
                                                                                        "Plex Scanner")
    elem = ET.Element("Directory", _clean({
        "allowSync": 1, "art": f"/:/resources/{section.type}-fanart.jpg", "composite":
        f"/library/sections/{section.key}/composite/{updated_at}", "filters": 1,
        "refreshing": section.refreshing, "thumb": f"/:/resources/{section.type}.png",
        "key": section.key, "type": section.type, "title": section.title,
        "agent": "tv.plex.agents.none", "scanner": scanner, "language": "xn",
        "uuid": section.uuid, "updatedAt": updated_at, "createdAt": section.created_at,
        "scannedAt": section.scanned_at, "content": 1, "directory": 1,
        "contentChangedAt": updated_at, "hidden": 0,
    }))
    for index, path in enumerate(section.locations, start=1):
        ET.SubElement(elem, "Location", {"id": str(section.key * 100 + index), "path": path})
    return elem


def item_element(item: Item, section: Section, *, full: bool, limits: Mapping[str, int],
                 tag_info: Callable[[str, str], Tag], shapes: RealShapes | None = None,
                 viewing: Mapping[str, Any] | None = None) -> ET.Element:
    """One item; `full` is /library/metadata, otherwise the truncated listing form.
    `viewing` is the requesting account's viewOffset/viewCount/lastViewedAt."""
    shapes = shapes if shapes is not None else RealShapes()
    if section.type == "show":
        return _show_element(item, section)
    attrs: dict[str, Any] = {
        "ratingKey": item.rating_key,
        "key": f"/library/metadata/{item.rating_key}",
        "guid": f"local://{item.rating_key}",
        "type": "movie",
    }
    if full:
        attrs.update({
            "librarySectionTitle": section.title,
            "librarySectionID": section.key,
            "librarySectionKey": f"/library/sections/{section.key}",
        })
    for name in ATTR_ORDER:
        attrs[name] = item.fields.get(name)
    if shapes.omit_default_title_sort and attrs["titleSort"] == attrs["title"]:
        attrs["titleSort"] = None
    attrs.update(viewing or {})
    attrs["thumb"] = image_url(item, "thumb")
    attrs["art"] = image_url(item, "art")
    attrs.update({
        "duration": item.media[0].duration,
        "originallyAvailableAt": item.fields.get("originallyAvailableAt"),
        "addedAt": item.added_at, "updatedAt": item.updated_at,
    })
    elem = ET.Element("Video", _clean(attrs))
    if full:
        for kind, plex_type in (("thumb", "coverPoster"), ("art", "background")):
            url = image_url(item, kind)
            if url:
                ET.SubElement(elem, "Image", {"alt": str(item.fields.get("title", "")),
                                              "type": plex_type, "url": url})
    versions = any(m.target for m in item.media)
    for media in item.media:
        _media_element(elem, media, item.added_at, full, versions)
    if full:
        for guid in item.guids:
            ET.SubElement(elem, "Guid", {"id": guid})
    for element in TAG_ORDER:
        tags = item.tags.get(element, [])
        if not full:
            tags = tags[: limits.get(element, 0)]
        for name, role in tags:
            ET.SubElement(elem, element, _tag_attrs(element, name, role, full, tag_info))
    if full:
        for name in sorted(item.locks):
            ET.SubElement(elem, "Field", {"locked": "1", "name": name})
    elif item.guids:
        for guid in item.guids:  # listings carry Guid only with includeGuids=1 (plexapi sends it)
            ET.SubElement(elem, "Guid", {"id": guid})
    return elem


def _tag_attrs(element: str, name: str, role: str | None, full: bool,
               tag_info: Callable[[str, str], Tag]) -> dict[str, str]:
    """Listings carry only `tag` (belief, unverified); full items carry id, filter, role, thumb."""
    if not full:
        return {"tag": name}
    tag = tag_info(element, name)
    is_role = element == "Role"
    return _clean({
        "id": tag.id, "filter": f"{TAG_FILTER[element]}={tag.id}", "tag": name,
        "tagKey": hashlib.sha1(f"{element}:{name}".encode()).hexdigest()[:24] if is_role else None,
        "role": role if is_role else None, "thumb": tag.thumb if is_role else None,
    })


def _media_element(parent: ET.Element, media: MediaFile, added_at: int, full: bool, versions: bool) -> None:
    """With optimised versions present, the original is titled "Original" and each version
    carries its profile, as real answers do."""
    optimised = {"optimizedForStreaming": 1, "proxyType": OPTIMIZED_PROXY_TYPE, "target": media.target,
                 "title": media.target} if media.target else {"title": "Original" if versions else None}
    elem = ET.SubElement(parent, "Media", _clean({
        "id": media.media_id, "duration": media.duration, "bitrate": 4000, "width": 1920,
        "height": 1080, "aspectRatio": 1.78, "audioChannels": 2, "audioCodec": "aac",
        "videoCodec": "h264", "videoResolution": "1080", "container": media.container,
        "videoFrameRate": "24p", **optimised,
    }))
    part = ET.SubElement(elem, "Part", _clean({
        "id": media.part_id,
        "key": f"/library/parts/{media.part_id}/{added_at}/file.{media.container}",
        "duration": media.duration, "file": media.file, "size": media.size,
        "container": media.container,
    }))
    if full:
        ET.SubElement(part, "Stream", {"id": str(media.part_id * 10 + 1), "streamType": "1",
                                       "codec": "h264", "index": "0", "default": "1",
                                       "displayTitle": "1080p (H.264)"})
        ET.SubElement(part, "Stream", {"id": str(media.part_id * 10 + 2), "streamType": "2",
                                       "codec": "aac", "index": "1", "channels": "2",
                                       "selected": "1", "displayTitle": "AAC (Stereo)"})


def _show_element(item: Item, section: Section) -> ET.Element:
    """Show sections exist so movie-only code can prove it skips them; they stay shallow."""
    return ET.Element("Directory", _clean({
        "ratingKey": item.rating_key, "key": f"/library/metadata/{item.rating_key}/children",
        "guid": f"local://{item.rating_key}", "type": "show", "title": item.fields.get("title"),
        "librarySectionID": section.key, "addedAt": item.added_at, "updatedAt": item.updated_at,
    }))


def image_url(item: Item, kind: str) -> str | None:
    image = item.poster if kind == "thumb" else item.art
    return None if image is None else f"/library/metadata/{item.rating_key}/{kind}/{image.stamp}"


def images_container(item: Item | Collection, kind: str) -> ET.Element:
    """The /posters and /arts listings plexapi turns into Poster/Art objects."""
    images = item.posters if kind == "thumb" else item.arts
    selected = item.poster_index if kind == "thumb" else item.art_index
    root = container(size=len(images), identifier=IDENTIFIER)
    for index, image in enumerate(images):
        ET.SubElement(root, "Photo", _clean({
            "key": f"/library/metadata/{item.rating_key}/{kind}/{image.stamp}",
            "ratingKey": image.resource_key, "selected": index == selected,
            "thumb": f"/library/metadata/{item.rating_key}/{kind}/{image.stamp}",
            "provider": image.provider,
        }))
    return root


def to_bytes(root: ET.Element) -> bytes:
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="utf-8",
                                                                     xml_declaration=False)


def normalise_tags(values: Iterable[Any]) -> list[tuple[str, str | None, str | None]]:
    """Fixture tags may be "Name", ("Name", "role"), ("Name", "role", "thumb") or a dict."""
    out = []
    for value in values:
        if isinstance(value, str):
            out.append((value, None, None))
        elif isinstance(value, Mapping):
            out.append((value["tag"], value.get("role"), value.get("thumb")))
        else:
            parts = (*value, None, None)
            out.append((parts[0], parts[1], parts[2]))
    return out
