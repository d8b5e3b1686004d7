"""The emulated Stash's data: scenes, files, studios, performers, tags and groups, and how Stash queries them.

This is the emulator's model, not the plugin's `stash.records`: it holds what Stash's database
holds (epoch timestamps, ids, file rows with the primary first) and answers `findScenes` the
way Stash's SQL does, including its quirks:

* timestamp criteria compare TEXT: the stored column is RFC 3339 in the server's local zone
  with second precision, and the filter value is bound as a plain string (§2.3), so the
  comparison is lexicographic. `StashLibrary.tz` is that zone (UTC unless told otherwise);
* `per_page: -1` returns everything, `0` only counts, the default is 25, pages below 1 are 1;
* a sort outside Stash's allowed list is an error; ties are broken by title-or-id, ascending;
* string criteria use SQLite `LIKE`, which ignores case for ASCII letters only.

`generate_library` builds large, deliberately awkward libraries, deterministic by seed.
"""

from __future__ import annotations

import bisect
import hashlib
import heapq
import random
import re
import struct
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone, tzinfo
from functools import lru_cache
from typing import Any

GENERATOR_EPOCH = 1546300800  # 2019-01-01T00:00:00Z: generated libraries start here


class QueryError(Exception):
    """A filter or sort Stash itself would refuse; the server turns it into a resolver error."""


# --- model ---------------------------------------------------------------------------------


@dataclass
class File:
    id: int
    path: str
    size: int
    duration: float
    width: int = 1920
    height: int = 1080
    video_codec: str = "h264"
    audio_codec: str = "aac"
    frame_rate: float = 29.97
    bit_rate: int = 8_000_000
    format: str = "mp4"
    mod_time: float = GENERATOR_EPOCH
    created_at: float = GENERATOR_EPOCH
    updated_at: float = GENERATOR_EPOCH

    @property
    def basename(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    @property
    def folder(self) -> str:
        return self.path.rsplit("/", 1)[0] or "/"

    @property
    def oshash(self) -> str:
        return hashlib.blake2b(self.path.encode(), digest_size=8).hexdigest()


@dataclass
class Scene:
    """A scene row. `files[0]` is the primary file; `cover` None means the generated screenshot."""

    id: int
    title: str | None = None
    code: str | None = None
    details: str | None = None
    director: str | None = None
    date: str | None = None  # YYYY-MM-DD, or YYYY-MM / YYYY since v0.30
    rating100: int | None = None
    organized: bool = False
    urls: list[str] = field(default_factory=list)
    files: list[File] = field(default_factory=list)
    studio_id: int | None = None
    performer_ids: list[int] = field(default_factory=list)
    tag_ids: list[int] = field(default_factory=list)
    groups: list[tuple[int, int | None]] = field(default_factory=list)  # (group id, scene_index)
    o_counter: int = 0
    play_count: int = 0
    play_history: list[float] = field(default_factory=list)  # epoch seconds, ascending
    resume_time: float = 0.0
    play_duration: float = 0.0
    cover: bytes | None = None
    created_at: float = GENERATOR_EPOCH
    updated_at: float = GENERATOR_EPOCH


@dataclass
class Studio:
    id: int
    name: str
    parent_id: int | None = None
    aliases: list[str] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)
    details: str | None = None
    image: bytes | None = None  # None: Stash serves its default image (image_path &default=true)
    favorite: bool = False
    created_at: float = GENERATOR_EPOCH
    updated_at: float = GENERATOR_EPOCH


@dataclass
class Performer:
    id: int
    name: str
    disambiguation: str | None = None
    alias_list: list[str] = field(default_factory=list)
    gender: str | None = None
    birthdate: str | None = None
    country: str | None = None
    urls: list[str] = field(default_factory=list)
    details: str | None = None
    image: bytes | None = None
    favorite: bool = False
    created_at: float = GENERATOR_EPOCH
    updated_at: float = GENERATOR_EPOCH


@dataclass
class Tag:
    id: int
    name: str
    aliases: list[str] = field(default_factory=list)
    description: str | None = None
    parent_ids: list[int] = field(default_factory=list)
    image: bytes | None = None
    favorite: bool = False
    created_at: float = GENERATOR_EPOCH
    updated_at: float = GENERATOR_EPOCH


@dataclass
class Group:
    """A group (a "movie" before v0.27). `aliases` is one free-text string in Stash, not a
    list. Sub-groups are held by the containing group, in their order, with an optional
    description of the relation; `containing_groups` is the reverse look-up."""

    id: int
    name: str
    aliases: str | None = None
    duration: int | None = None  # seconds
    date: str | None = None
    rating100: int | None = None
    studio_id: int | None = None
    director: str | None = None
    synopsis: str | None = None
    urls: list[str] = field(default_factory=list)
    tag_ids: list[int] = field(default_factory=list)
    sub_groups: list[tuple[int, str | None]] = field(default_factory=list)
    front_image: bytes | None = None  # None: Stash serves its default image (&default=true)
    back_image: bytes | None = None  # None: back_image_path is null
    created_at: float = GENERATOR_EPOCH
    updated_at: float = GENERATOR_EPOCH


# --- time as Stash stores it -----------------------------------------------------------------


@lru_cache(maxsize=1 << 18)
def stash_timestamp(epoch: float, tz: tzinfo = timezone.utc) -> str:
    """Go's `time.RFC3339` text of `epoch` in `tz`, second precision: `...Z` in UTC, else `+hh:mm`."""
    moment = datetime.fromtimestamp(int(epoch), tz)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    offset = moment.utcoffset() or timedelta(0)
    if offset == timedelta(0):  # Go's Z07:00 writes Z for any zero offset, not only for UTC
        return text + "Z"
    minutes = int(offset.total_seconds() // 60)
    sign = "-" if minutes < 0 else "+"
    return f"{text}{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


# --- queries ------------------------------------------------------------------------------

SCENE_SORTS = frozenset({
    "bitrate", "created_at", "code", "date", "production_date", "file_count", "filesize", "duration",
    "file_mod_time", "framerate", "group_scene_number", "id", "interactive", "interactive_speed",
    "last_o_at", "last_played_at", "movie_scene_number", "o_counter", "organized", "performer_count",
    "play_count", "play_duration", "resume_time", "path", "perceptual_similarity", "random", "rating",
    "resolution", "studio", "tag_count", "title", "updated_at", "performer_age",
})


def _ascii_fold(text: str) -> str:
    """SQLite's LIKE folds only A-Z; 'É' and 'é' stay different."""
    return text.translate(_ASCII_LOWER)


_ASCII_LOWER = {c: c + 32 for c in range(ord("A"), ord("Z") + 1)}
_DIGITS = re.compile(r"(\d+)")


def _natural(text: str) -> tuple:
    """A stand-in for Stash's NATURAL_CI collation: case-insensitive, digit runs compared as numbers."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part.casefold())
                 for part in _DIGITS.split(text) if part)


class _Desc:
    """Inverts ordering of a sort key, so DESC keys and ASC tie-breaks share one tuple."""

    __slots__ = ("key",)

    def __init__(self, key: Any) -> None:
        self.key = key

    def __lt__(self, other: _Desc) -> bool:
        return other.key < self.key

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Desc) and self.key == other.key


def _nullable(value: Any) -> tuple:
    """SQLite orders NULL before every value."""
    return (0, 0) if value is None else (1, value)


@dataclass
class FindFilter:
    """FindFilterType with Stash's defaults applied (pkg/models/find_filter.go)."""

    q: str = ""
    page: int = 1
    per_page: int = 25  # -1: all, 0: count only
    sort: str | None = None
    direction: str = "ASC"

    @classmethod
    def from_input(cls, raw: dict[str, Any] | None) -> FindFilter:
        raw = raw or {}
        page = raw.get("page")
        per_page = raw.get("per_page")
        direction = raw.get("direction") or "ASC"
        return cls(
            q=raw.get("q") or "",
            page=page if page is not None and page >= 1 else 1,
            per_page=25 if per_page is None else (-1 if per_page < 0 else per_page),
            sort=raw.get("sort") or None,
            direction=direction if direction in ("ASC", "DESC") else "ASC",
        )

    def window(self, total: int) -> tuple[int, int]:
        if self.per_page < 0:
            return 0, total
        start = (self.page - 1) * self.per_page
        return min(start, total), min(start + self.per_page, total)


@dataclass
class SceneQueryResult:
    """One findScenes answer: `count` and the totals over all matches, `scenes` the requested page."""

    library: StashLibrary
    matched: list[int]  # every match, in id order
    page_ids: list[int]  # the page, in result order

    @property
    def count(self) -> int:
        return len(self.matched)

    @property
    def scenes(self) -> list[Scene]:
        return [self.library.scenes[i] for i in self.page_ids]

    @property
    def duration(self) -> float:
        return float(sum(s.files[0].duration for s in map(self.library.scenes.get, self.matched) if s.files))

    @property
    def filesize(self) -> float:
        return float(sum(s.files[0].size for s in map(self.library.scenes.get, self.matched) if s.files))


@dataclass
class ListResult:
    """A findPerformers/findStudios/findTags answer."""

    count: int
    items: list[Any]

    @property
    def performers(self) -> list[Any]:
        return self.items

    studios = tags = groups = performers


class StashLibrary:
    """Everything the emulated Stash knows. Edit scenes through `update_scene`/`add_scene`.

    Those bump `revision`, which keys the cached per-entity scene counts; assigning to a scene's
    fields directly is fine for one-off tests that do not read `scene_count`.
    """

    def __init__(self, tz: tzinfo = timezone.utc) -> None:
        self.tz = tz
        self.scenes: dict[int, Scene] = {}
        self.studios: dict[int, Studio] = {}
        self.performers: dict[int, Performer] = {}
        self.tags: dict[int, Tag] = {}
        self.groups: dict[int, Group] = {}
        self.revision = 0
        self._ids: list[int] = []
        self._next_file_id = 1
        self._folders: dict[str, int] = {}
        self._counts: tuple[int, dict[str, dict[int, int]]] | None = None

    # --- editing ---------------------------------------------------------------------

    def stamp(self, epoch: float) -> str:
        """The text Stash stores (and serves, and compares filters against) for this instant."""
        return stash_timestamp(epoch, self.tz)

    def add_scene(self, *, files: Iterable[File | str] = (), scene_id: int | None = None,
                  now: float | None = None, **fields: Any) -> int:
        """Add a scene; `files` may be paths (sizes and durations then get plausible defaults)."""
        new_id = scene_id if scene_id is not None else (self._ids[-1] + 1 if self._ids else 1)
        if new_id in self.scenes:
            raise ValueError(f"scene {new_id} exists")
        when = _now(now)
        fields.setdefault("created_at", when)
        fields.setdefault("updated_at", fields["created_at"])
        scene = Scene(id=new_id, files=[self.make_file(f, when) for f in files], **fields)
        self.scenes[new_id] = scene
        if not self._ids or new_id > self._ids[-1]:
            self._ids.append(new_id)
        else:
            bisect.insort(self._ids, new_id)
        self.revision += 1
        return new_id

    def update_scene(self, scene_id: int, now: float | None = None, **fields: Any) -> None:
        """Change fields as a sceneUpdate would, bumping updated_at (to `now`, or the clock)."""
        if "files" in fields:
            fields["files"] = [self.make_file(f, _now(now)) for f in fields["files"]]
        self._update(self.scenes[scene_id], fields, now)

    def _update(self, row: Any, fields: dict[str, Any], now: float | None) -> None:
        """Set a row's fields; updated_at follows unless given, and cached counts expire."""
        for name, value in fields.items():
            if not hasattr(row, name):
                raise AttributeError(f"{type(row).__name__} has no field {name!r}")
            setattr(row, name, value)
        if "updated_at" not in fields:
            row.updated_at = max(_now(now), row.created_at)
        self.revision += 1

    def remove_scene(self, scene_id: int) -> None:
        del self.scenes[scene_id]
        self._ids.pop(bisect.bisect_left(self._ids, scene_id))
        self.revision += 1

    def make_file(self, spec: File | str, now: float = GENERATOR_EPOCH) -> File:
        if isinstance(spec, File):
            self._next_file_id = max(self._next_file_id, spec.id + 1)
            return spec
        file = File(id=self._next_file_id, path=spec, size=700_000_000 + 7919 * self._next_file_id,
                    duration=1200.0 + self._next_file_id % 2400, mod_time=now, created_at=now, updated_at=now)
        self._next_file_id += 1
        return file

    def folder_id(self, path: str) -> int:
        return self._folders.setdefault(path, len(self._folders) + 1)

    def sorted_ids(self) -> list[int]:
        if len(self._ids) != len(self.scenes):  # someone edited `scenes` directly
            self._ids = sorted(self.scenes)
        return self._ids

    # --- reverse lookups -------------------------------------------------------------

    def scene_counts(self, kind: str) -> dict[int, int]:
        """Scenes per studio / performer / tag / group, cached until the next edit."""
        if self._counts is None or self._counts[0] != self.revision:
            counts: dict[str, dict[int, int]] = {"studio": {}, "performer": {}, "tag": {}, "group": {}}
            for scene in self.scenes.values():
                if scene.studio_id is not None:
                    counts["studio"][scene.studio_id] = counts["studio"].get(scene.studio_id, 0) + 1
                for pid in scene.performer_ids:
                    counts["performer"][pid] = counts["performer"].get(pid, 0) + 1
                for tid in scene.tag_ids:
                    counts["tag"][tid] = counts["tag"].get(tid, 0) + 1
                for gid, _index in scene.groups:
                    counts["group"][gid] = counts["group"].get(gid, 0) + 1
            self._counts = (self.revision, counts)
        return self._counts[1][kind]

    # --- groups ----------------------------------------------------------------------

    def add_group(self, name: str, *, group_id: int | None = None, now: float | None = None,
                  **fields: Any) -> int:
        """A group as groupCreate makes it; `fields` are Group's (sub_groups=[(id, description)])."""
        new_id = group_id if group_id is not None else max(self.groups, default=0) + 1
        if new_id in self.groups:
            raise ValueError(f"group {new_id} exists")
        when = _now(now)
        fields.setdefault("created_at", when)
        fields.setdefault("updated_at", fields["created_at"])
        self.groups[new_id] = Group(id=new_id, name=name, **fields)
        self.revision += 1
        return new_id

    def update_group(self, group_id: int, now: float | None = None, **fields: Any) -> None:
        self._update(self.groups[group_id], fields, now)

    def remove_group(self, group_id: int) -> None:
        """groupDestroy: the scenes' and other groups' links to it go too (foreign keys
        cascade); the scenes themselves are not touched, not even their updated_at."""
        del self.groups[group_id]
        for scene in self.scenes.values():
            if any(g == group_id for g, _ in scene.groups):
                scene.groups = [(g, i) for g, i in scene.groups if g != group_id]
        for group in self.groups.values():
            group.sub_groups = [(g, d) for g, d in group.sub_groups if g != group_id]
        self.revision += 1

    def containing_groups(self, group_id: int) -> list[tuple[int, str | None]]:
        return [(g.id, d) for g in sorted(self.groups.values(), key=lambda g: g.id)
                for sub, d in g.sub_groups if sub == group_id]

    def group_descendants(self, group_id: int, depth: int | None) -> set[int]:
        """The group and its sub-groups `depth` levels down (-1: every level, 0/None: none)."""
        return self._descendants([group_id], lambda i: [self.groups[s] for s, _ in self.groups[i].sub_groups
                                                        if s in self.groups], depth)

    def group_scene_count(self, group_id: int, depth: int | None = None) -> int:
        """Scenes in the group, or in it and its sub-groups `depth` levels down, each once."""
        if not depth:
            return self.scene_counts("group").get(group_id, 0)
        wanted = self.group_descendants(group_id, depth)
        return sum(1 for scene in self.scenes.values() if any(g in wanted for g, _ in scene.groups))

    def sub_group_count(self, group_id: int, depth: int | None = None) -> int:
        """Sub-groups one level down by default, or `depth` levels (-1: all)."""
        return len(self.group_descendants(group_id, depth if depth else 1)) - 1

    def child_studios(self, studio_id: int) -> list[Studio]:
        return [s for s in self.studios.values() if s.parent_id == studio_id]

    def child_tags(self, tag_id: int) -> list[Tag]:
        return [t for t in self.tags.values() if tag_id in t.parent_ids]

    def _descendants(self, ids: Iterable[int], children: Callable[[int], list[Any]], depth: int | None) -> set[int]:
        """Stash's hierarchical criteria: depth 0/None is the ids themselves, -1 every level."""
        found = set(ids)
        frontier = set(found)
        level = 0
        while frontier and (depth == -1 or (depth is not None and level < depth)):
            frontier = {c.id for i in frontier for c in children(i)} - found
            found |= frontier
            level += 1
        return found

    # --- findScenes ------------------------------------------------------------------

    def find_scenes(self, scene_filter: dict[str, Any] | None = None, find_filter: dict[str, Any] | None = None,
                    ids: Iterable[int] | None = None) -> SceneQueryResult:
        ff = FindFilter.from_input(find_filter)
        if ff.sort is not None and ff.sort not in SCENE_SORTS and not re.fullmatch(r"random_\d+", ff.sort):
            raise QueryError(f"invalid sort: {ff.sort}")
        criteria = dict(scene_filter or {})
        candidates: list[int] | range
        if ids is not None:
            candidates = sorted({int(i) for i in ids} & self.scenes.keys())
        else:
            candidates = self._id_range(criteria.pop("id", None), criteria)
        predicate = self._scene_predicate(criteria)
        words = [_ascii_fold(w) for w in ff.q.split()]
        if words:
            text_predicate = self._search(words)
            predicate = text_predicate if predicate is None else _both(predicate, text_predicate)
        matched = list(candidates) if predicate is None else [
            i for i in candidates if predicate(self.scenes[i])
        ]
        return SceneQueryResult(self, matched, [] if ff.per_page == 0 else self._page(matched, ff))

    def _id_range(self, id_criterion: dict[str, Any] | None, rest: dict[str, Any]) -> list[int]:
        """Narrow by a top-level id criterion with bisect: keyset paging stays cheap on 100k scenes."""
        ids = self.sorted_ids()
        if id_criterion is None:
            return ids
        value, value2, modifier = id_criterion["value"], id_criterion.get("value2"), id_criterion["modifier"]
        if modifier == "GREATER_THAN":
            return ids[bisect.bisect_right(ids, value):]
        if modifier == "LESS_THAN":
            return ids[:bisect.bisect_left(ids, value)]
        if modifier == "EQUALS":
            return [value] if value in self.scenes else []
        if modifier == "BETWEEN" and value2 is not None:
            return ids[bisect.bisect_left(ids, value):bisect.bisect_right(ids, value2)]
        rest["id"] = id_criterion  # the other modifiers are checked row by row
        return ids

    def _search(self, words: list[str]) -> Callable[[Scene], bool]:
        def matches(scene: Scene) -> bool:
            haystack = _ascii_fold(" ".join(
                [scene.title or "", scene.details or "", scene.code or ""] + [f.path for f in scene.files]
            ))
            return all(w in haystack for w in words)
        return matches

    def _scene_predicate(self, criteria: dict[str, Any]) -> Callable[[Scene], bool] | None:
        checks: list[Callable[[Scene], bool]] = []
        for name, criterion in criteria.items():
            if criterion is None:
                continue
            if name in ("AND", "OR", "NOT"):
                continue
            checks.append(self._scene_check(name, criterion))
        predicate = _all(checks)
        if criteria.get("AND"):
            predicate = _both(predicate, self._scene_predicate(criteria["AND"]) or _true)
        if criteria.get("OR"):
            other = self._scene_predicate(criteria["OR"]) or _true
            mine = predicate or _true
            predicate = lambda s, a=mine, b=other: a(s) or b(s)  # noqa: E731
        if criteria.get("NOT"):
            negated = self._scene_predicate(criteria["NOT"]) or _true
            predicate = _both(predicate, lambda s, n=negated: not n(s))
        return predicate

    def _scene_check(self, name: str, criterion: Any) -> Callable[[Scene], bool]:
        stamp = self.stamp
        if name == "id":
            return _int_check(criterion, lambda s: s.id)
        if name in ("title", "code", "details", "director"):
            return _string_check(criterion, lambda s, n=name: [getattr(s, n)])
        if name == "path":
            return _string_check(criterion, lambda s: [f.path for f in s.files] or [None])
        if name == "url":
            return _string_check(criterion, lambda s: s.urls or [None])
        if name == "rating100":
            return _int_check(criterion, lambda s: s.rating100)
        if name == "file_count":
            return _int_check(criterion, lambda s: len(s.files))
        if name == "tag_count":
            return _int_check(criterion, lambda s: len(s.tag_ids))
        if name == "performer_count":
            return _int_check(criterion, lambda s: len(s.performer_ids))
        if name == "organized":
            return lambda s, want=bool(criterion): s.organized == want
        if name in ("created_at", "updated_at"):
            return _timestamp_check(criterion, lambda s, n=name: stamp(getattr(s, n)), self._tomorrow())
        if name == "studios":
            values = self._descendants(_int_ids(criterion.get("value")), self.child_studios, criterion.get("depth"))
            return _multi_check(criterion, values, lambda s: [s.studio_id] if s.studio_id is not None else [])
        if name == "tags":
            values = self._descendants(_int_ids(criterion.get("value")), self.child_tags, criterion.get("depth"))
            return _multi_check(criterion, values, lambda s: s.tag_ids)
        if name == "performers":
            return _multi_check(criterion, set(_int_ids(criterion.get("value"))), lambda s: s.performer_ids)
        if name == "groups":
            values: set[int] = set()
            for group_id in _int_ids(criterion.get("value")):
                values |= self.group_descendants(group_id, criterion.get("depth")) if group_id in self.groups else {group_id}
            return _multi_check(criterion, values, lambda s: [g for g, _ in s.groups])
        raise QueryError(f"emulator: scene filter {name!r} is not implemented")

    def _page(self, matched: list[int], ff: FindFilter) -> list[int]:
        """Stash's ORDER BY (the sort column, then COALESCE(title, id) ascending) and LIMIT/OFFSET.

        Only the rows up to the page's end are ordered (a heap), so paging a large library
        does not sort all of it for every page.
        """
        start, end = ff.window(len(matched))
        if ff.sort is None:
            return matched[start:end]  # no ORDER BY: SQLite returns rowid (id) order
        if ff.sort == "id":
            ordered = matched if ff.direction == "ASC" else matched[::-1]
            return ordered[start:end]
        primary = self._sort_key(ff.sort)
        scenes = self.scenes

        def key(scene_id: int) -> tuple:
            scene = scenes[scene_id]
            value = primary(scene)
            tie = _natural(scene.title if scene.title is not None else str(scene.id))
            return (_Desc(value) if ff.direction == "DESC" else value, tie, scene_id)

        if end < len(matched) // 8:
            return heapq.nsmallest(end, matched, key=key)[start:end]
        return sorted(matched, key=key)[start:end]

    def _sort_key(self, sort: str) -> Callable[[Scene], Any]:
        primary_file = lambda s: s.files[0] if s.files else None  # noqa: E731
        studio_name = lambda s: self.studios[s.studio_id].name.casefold() if s.studio_id in self.studios else None  # noqa: E731
        keys: dict[str, Callable[[Scene], Any]] = {
            "title": lambda s: _natural(s.title if s.title is not None else (s.files[0].basename if s.files else "")),
            "path": lambda s: _natural(primary_file(s).path if s.files else ""),
            "date": lambda s: _nullable(s.date),
            "rating": lambda s: _nullable(s.rating100),
            "created_at": lambda s: s.created_at,
            "updated_at": lambda s: s.updated_at,
            "code": lambda s: _nullable(s.code),
            "organized": lambda s: s.organized,
            "o_counter": lambda s: s.o_counter,
            "play_count": lambda s: s.play_count,
            "file_count": lambda s: len(s.files),
            "tag_count": lambda s: len(s.tag_ids),
            "performer_count": lambda s: len(s.performer_ids),
            "filesize": lambda s: _nullable(primary_file(s) and primary_file(s).size),
            "duration": lambda s: _nullable(primary_file(s) and primary_file(s).duration),
            "bitrate": lambda s: _nullable(primary_file(s) and primary_file(s).bit_rate),
            "framerate": lambda s: _nullable(primary_file(s) and primary_file(s).frame_rate),
            "file_mod_time": lambda s: _nullable(primary_file(s) and primary_file(s).mod_time),
            "studio": lambda s: _nullable(studio_name(s)),
        }
        if sort == "random" or sort.startswith("random_"):
            seed = sort.partition("_")[2] or "0"
            return lambda s: hashlib.blake2b(f"{seed}:{s.id}".encode(), digest_size=8).digest()
        if sort not in keys:
            raise QueryError(f"emulator: sort {sort!r} is valid in Stash but not implemented here")
        return keys[sort]

    def _tomorrow(self) -> str:
        """BETWEEN without value2: Stash binds "now + 1 day" in its own zone and layout."""
        return self.stamp(_now(None) + 86400)

    # --- other finders ---------------------------------------------------------------

    def find_named(self, kind: str, entity_filter: dict[str, Any] | None, find_filter: dict[str, Any] | None,
                   ids: Iterable[int] | None = None) -> ListResult:
        """findPerformers / findStudios / findTags / findGroups: name, scene_count, updated_at,
        parents, a group's studios; sorted by name."""
        table: dict[int, Any] = {"performer": self.performers, "studio": self.studios, "tag": self.tags,
                                 "group": self.groups}[kind]
        ff = FindFilter.from_input(find_filter)
        rows = [table[i] for i in sorted(table)] if ids is None else [table[int(i)] for i in ids if int(i) in table]
        predicate = self._named_predicate(kind, entity_filter or {})
        words = [_ascii_fold(w) for w in ff.q.split()]
        matched = [r for r in rows if (predicate is None or predicate(r)) and all(
            w in _ascii_fold(" ".join([r.name, *_aliases(r)])) for w in words)]
        sort = ff.sort or "name"
        if sort == "name":
            matched.sort(key=lambda r: (_natural(r.name), r.id), reverse=ff.direction == "DESC")
        elif sort in ("id", "created_at", "updated_at"):
            matched.sort(key=lambda r: getattr(r, sort), reverse=ff.direction == "DESC")
        elif sort == "scenes_count":
            counts = self.scene_counts(kind)
            matched.sort(key=lambda r: counts.get(r.id, 0), reverse=ff.direction == "DESC")
        elif kind == "group" and sort in ("date", "duration", "rating"):
            field_name = "rating100" if sort == "rating" else sort
            matched.sort(key=lambda r: (_nullable(getattr(r, field_name)), _natural(r.name), r.id),
                         reverse=ff.direction == "DESC")
        else:
            raise QueryError(f"invalid sort: {sort}")
        start, end = ff.window(len(matched))
        return ListResult(len(matched), [] if ff.per_page == 0 else matched[start:end])

    def _named_predicate(self, kind: str, criteria: dict[str, Any]) -> Callable[[Any], bool] | None:
        checks: list[Callable[[Any], bool]] = []
        for name, criterion in criteria.items():
            if criterion is None or name in ("AND", "OR", "NOT"):
                continue
            if name == "name":
                checks.append(_string_check(criterion, lambda r: [r.name]))
            elif name == "scene_count":
                counts = self.scene_counts(kind)
                checks.append(_int_check(criterion, lambda r, c=counts: c.get(r.id, 0)))
            elif name == "updated_at":
                checks.append(_timestamp_check(criterion, lambda r: self.stamp(r.updated_at), self._tomorrow()))
            elif name == "parents" and kind == "studio":
                wanted = set(_int_ids(criterion.get("value")))
                checks.append(_multi_check(criterion, wanted, lambda r: [r.parent_id] if r.parent_id else []))
            elif name == "parents" and kind == "tag":
                wanted = set(_int_ids(criterion.get("value")))
                checks.append(_multi_check(criterion, wanted, lambda r: r.parent_ids))
            elif kind == "group" and name in ("director", "synopsis"):
                checks.append(_string_check(criterion, lambda r, n=name: [getattr(r, n)]))
            elif kind == "group" and name == "url":
                checks.append(_string_check(criterion, lambda r: r.urls or [None]))
            elif kind == "group" and name in ("duration", "rating100"):
                checks.append(_int_check(criterion, lambda r, n=name: getattr(r, n)))
            elif kind == "group" and name == "studios":
                wanted = self._descendants(_int_ids(criterion.get("value")), self.child_studios, criterion.get("depth"))
                checks.append(_multi_check(criterion, wanted, lambda r: [r.studio_id] if r.studio_id else []))
            elif kind == "group" and name == "created_at":
                checks.append(_timestamp_check(criterion, lambda r: self.stamp(r.created_at), self._tomorrow()))
            else:
                raise QueryError(f"emulator: {kind} filter {name!r} is not implemented")
        predicate = _all(checks)
        for joiner in ("AND", "OR", "NOT"):
            if criteria.get(joiner):
                inner = self._named_predicate(kind, criteria[joiner]) or _true
                mine = predicate or _true
                if joiner == "AND":
                    predicate = _both(mine, inner)
                elif joiner == "OR":
                    predicate = lambda r, a=mine, b=inner: a(r) or b(r)  # noqa: E731
                else:
                    predicate = lambda r, a=mine, b=inner: a(r) and not b(r)  # noqa: E731
        return predicate


# --- criterion semantics (pkg/sqlite/criterion_handlers.go, sql.go) ------------------------------


def _true(_row: Any) -> bool:
    return True


def _all(checks: list[Callable[[Any], bool]]) -> Callable[[Any], bool] | None:
    if not checks:
        return None
    if len(checks) == 1:
        return checks[0]
    return lambda row: all(check(row) for check in checks)


def _both(a: Callable[[Any], bool] | None, b: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return b if a is None else (lambda row: a(row) and b(row))


def _aliases(row: Any) -> list[str]:
    """Performers keep `alias_list`, studios and tags `aliases` lists, groups one string."""
    aliases = getattr(row, "aliases", None) or getattr(row, "alias_list", None) or []
    return [aliases] if isinstance(aliases, str) else list(aliases)


def _int_ids(values: Iterable[Any] | None) -> list[int]:
    """IDs arrive as strings; Stash converts each with strconv.Atoi."""
    ids = []
    for value in values or ():
        try:
            ids.append(int(value))
        except ValueError:
            raise QueryError(f'strconv.Atoi: parsing "{value}": invalid syntax') from None
    return ids


def _now(now: float | None) -> float:
    if now is not None:
        return now
    import time

    return time.time()


def _int_check(criterion: dict[str, Any], get: Callable[[Any], int | None]) -> Callable[[Any], bool]:
    value, value2, modifier = criterion["value"], criterion.get("value2"), criterion["modifier"]
    low, high = (value, value2) if value2 is not None else (value, value)
    tests: dict[str, Callable[[int | None], bool]] = {
        "EQUALS": lambda v: v is not None and v == value,
        "NOT_EQUALS": lambda v: v is not None and v != value,
        "GREATER_THAN": lambda v: v is not None and v > value,
        "LESS_THAN": lambda v: v is not None and v < value,
        "IS_NULL": lambda v: v is None,
        "NOT_NULL": lambda v: v is not None,
        "BETWEEN": lambda v: v is not None and low <= v <= high,
        "NOT_BETWEEN": lambda v: v is not None and not (low <= v <= high),
    }
    if modifier not in tests:
        raise QueryError(f"unsupported int modifier type: {modifier}")
    test = tests[modifier]
    return lambda row: test(get(row))


def _string_check(criterion: dict[str, Any], get: Callable[[Any], list[str | None]]) -> Callable[[Any], bool]:
    """String criteria over one or more values (a scene matches if any of its files does)."""
    value, modifier = criterion["value"], criterion["modifier"]
    folded = _ascii_fold(value)
    if modifier in ("MATCHES_REGEX", "NOT_MATCHES_REGEX"):
        try:
            pattern = re.compile(value)
        except re.error as exc:
            raise QueryError(f"error parsing regexp: {exc}") from None
    tests: dict[str, Callable[[str | None], bool]] = {
        "EQUALS": lambda v: v is not None and _ascii_fold(v) == folded,
        "NOT_EQUALS": lambda v: v is not None and _ascii_fold(v) != folded,
        "INCLUDES": lambda v: v is not None and folded in _ascii_fold(v),
        "EXCLUDES": lambda v: v is None or folded not in _ascii_fold(v),
        "MATCHES_REGEX": lambda v: v is not None and pattern.search(v) is not None,
        "NOT_MATCHES_REGEX": lambda v: v is None or pattern.search(v) is None,
        "IS_NULL": lambda v: v is None or v == "",
        "NOT_NULL": lambda v: v is not None and v != "",
    }
    if modifier not in tests:
        raise QueryError(f"unsupported string modifier type: {modifier}")
    test = tests[modifier]
    negative = modifier in ("EXCLUDES", "NOT_MATCHES_REGEX", "IS_NULL")
    if negative:
        return lambda row: all(test(v) for v in get(row))
    return lambda row: any(test(v) for v in get(row))


def _timestamp_check(criterion: dict[str, Any], get: Callable[[Any], str], tomorrow: str) -> Callable[[Any], bool]:
    """Text comparison against the stored RFC 3339 string, exactly as SQLite compares them."""
    value, modifier = criterion["value"], criterion["modifier"]
    upper = criterion.get("value2") or tomorrow
    tests: dict[str, Callable[[str], bool]] = {
        "EQUALS": lambda v: v == value,
        "NOT_EQUALS": lambda v: v != value,
        "GREATER_THAN": lambda v: v > value,
        "LESS_THAN": lambda v: v < value,
        "BETWEEN": lambda v: value <= v <= upper,
        "NOT_BETWEEN": lambda v: not (value <= v <= upper),
        "IS_NULL": lambda v: False,  # created_at / updated_at are NOT NULL columns
        "NOT_NULL": lambda v: True,
    }
    if modifier not in tests:
        raise QueryError(f"unsupported date modifier type: {modifier}")
    test = tests[modifier]
    return lambda row: test(get(row))


def _multi_check(criterion: dict[str, Any], values: set[int], get: Callable[[Any], list[int]]) -> Callable[[Any], bool]:
    modifier = criterion["modifier"]
    excludes = set(_int_ids(criterion.get("excludes")))

    def excluded(row: Any) -> bool:
        return bool(excludes) and not excludes.isdisjoint(get(row))

    tests: dict[str, Callable[[Any], bool]] = {
        "INCLUDES": lambda row: not values.isdisjoint(get(row)) and not excluded(row),
        "INCLUDES_ALL": lambda row: values <= set(get(row)) and not excluded(row),
        "EXCLUDES": lambda row: values.isdisjoint(get(row)),
        "IS_NULL": lambda row: not get(row),
        "NOT_NULL": lambda row: bool(get(row)),
    }
    if modifier not in tests:
        raise QueryError(f"unsupported multi-criterion modifier: {modifier}")
    return tests[modifier]


# --- images --------------------------------------------------------------------------------


def png_bytes(seed: int, size: int = 8) -> bytes:
    """A small valid PNG whose colour follows `seed`: distinct images hash differently."""
    r, g, b = (seed * 97) % 256, (seed * 57 + 80) % 256, (seed * 23 + 160) % 256
    row = b"\x00" + bytes((r, g, b)) * size
    raw = zlib.compress(row * size)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


# --- the generator -------------------------------------------------------------------------

_WORDS = ["Sunset", "Harbor", "Midnight", "Velvet", "Crimson", "Echo", "Summer", "Rain", "Garden", "Mirror",
          "Silver", "Horizon", "Wild", "Coast", "Golden", "Hour", "Secret", "Letter", "Blue", "Room", "Quiet",
          "Storm", "Paper", "Moon", "River", "Dance", "Neon", "City", "Lost", "Weekend"]
_UNICODE = ["Café", "Zoë", "Ñandú", "Über", "naïve", "東京", "夜景", "Москва", "Ελλάδα", "São Paulo",
            "Kraków", "Smörgås", "Ærø", "İstanbul", "😀", "★", "—", "Français", "Ünïcödé", "日本語"]
_FIRST = ["Anna", "Bea", "Chloé", "Dana", "Élodie", "Fay", "Gina", "Hana", "Inés", "Jade", "Kai", "Lena",
          "Mía", "Nora", "Olga", "Pia", "Rosa", "Saoirse", "Tove", "Ume", "Vera", "Wen", "Xenia", "Yara", "Zoë"]
_LAST = ["Andersson", "Brown", "Castaño", "Dubois", "Eriksen", "Fischer", "García", "Hoshino", "Ivanova",
         "Jansen", "Kowalski", "López", "Müller", "Nakamura", "O'Brien", "Petrović", "Quinn", "Rossi",
         "Søndergaard", "Tanaka", "Ueda", "Varga", "Wójcik", "Xu", "Yılmaz", "Zhang"]
_SHARED_BASENAMES = ["scene.mp4", "video.mp4", "1080p.mp4", "part1.mp4", "index.mkv"]
_CODECS = [("h264", "aac", "mp4"), ("hevc", "aac", "mkv"), ("h264", "mp3", "mp4"), ("av1", "opus", "webm")]


def generate_library(n: int, seed: int = 0, *, stash_root: str = "/data/stash",
                     tz: tzinfo = timezone.utc) -> StashLibrary:
    """A realistic, awkward library of `n` scenes, the same for the same seed.

    Awkward on purpose: unicode and very long text, many tags and performers, scenes without
    title, studio or date, partial dates (YYYY, YYYY-MM), several files per scene, the same
    basename in different folders, timestamps spread over six years.
    """
    rng = random.Random(seed)
    lib = StashLibrary(tz=tz)
    n_studios = max(3, n // 200)
    n_performers = max(5, n // 25)
    n_tags = max(8, min(600, n // 20))
    n_groups = max(2, n // 500)
    span = 6 * 365 * 86400

    for sid in range(1, n_studios + 1):
        parent = rng.randint(1, sid - 1) if sid > 3 and rng.random() < 0.2 else None
        created = GENERATOR_EPOCH + rng.randrange(span // 2)
        lib.studios[sid] = Studio(
            id=sid, name=f"{rng.choice(_WORDS)} {rng.choice(_UNICODE)} Studio {sid}", parent_id=parent,
            aliases=[f"S{sid}"] if rng.random() < 0.3 else [],
            urls=[f"https://studio{sid}.example/"] if rng.random() < 0.7 else [],
            image=png_bytes(seed * 7919 + sid) if rng.random() < 0.6 else None,
            created_at=created, updated_at=created + rng.randrange(86400 * 30),
        )
    for pid in range(1, n_performers + 1):
        created = GENERATOR_EPOCH + rng.randrange(span // 2)
        lib.performers[pid] = Performer(
            id=pid, name=f"{rng.choice(_FIRST)} {rng.choice(_LAST)}",
            disambiguation=str(pid) if rng.random() < 0.1 else None,
            alias_list=[f"{rng.choice(_FIRST)} {pid}"] if rng.random() < 0.3 else [],
            gender=rng.choice(["FEMALE", "MALE", "TRANSGENDER_FEMALE", "NON_BINARY", None]),
            image=png_bytes(seed * 104729 + pid) if rng.random() < 0.7 else None,
            created_at=created, updated_at=created + rng.randrange(86400 * 30),
        )
    for tid in range(1, n_tags + 1):
        parents = [rng.randint(1, tid - 1)] if tid > 5 and rng.random() < 0.15 else []
        lib.tags[tid] = Tag(id=tid, name=f"{rng.choice(_WORDS).lower()}-{rng.choice(_UNICODE)}-{tid}",
                            parent_ids=parents, created_at=GENERATOR_EPOCH, updated_at=GENERATOR_EPOCH)
    for gid in range(1, n_groups + 1):
        lib.groups[gid] = Group(id=gid, name=f"{rng.choice(_WORDS)} Collection {gid}",
                                studio_id=rng.randint(1, n_studios), date=f"{rng.randint(2000, 2024)}")
        # Drawn without the generator's random stream, so every other generated value stays
        # what it was: some aliases, covers and synopses, and every fourth group a sub-group.
        group = lib.groups[gid]
        group.aliases = f"G{gid}, Série {gid}" if gid % 3 == 0 else None
        group.front_image = png_bytes(seed * 7907 + gid) if gid % 2 else None
        group.synopsis = f"Part of the {group.name} story." if gid % 2 == 0 else None
        if gid % 4 == 0:
            lib.groups[gid - 1].sub_groups.append((gid, "part"))

    lib._next_file_id = 1
    for scene_id in range(1, n + 1):
        created = GENERATOR_EPOCH + (span * scene_id) // (n + 1) + rng.randrange(3600)
        updated = created + (rng.randrange(span // 4) if rng.random() < 0.4 else rng.randrange(120))
        roll = rng.random()
        title = None if roll < 0.1 else " ".join(rng.choice(_WORDS if rng.random() < 0.7 else _UNICODE)
                                                    for _ in range(rng.randint(1, 6)))
        studio_id = None if rng.random() < 0.15 else rng.randint(1, n_studios)
        date_roll = rng.random()
        year, month, day = rng.randint(1995, 2025), rng.randint(1, 12), rng.randint(1, 28)
        date = (None if date_roll < 0.15 else f"{year}" if date_roll < 0.25
                else f"{year}-{month:02d}" if date_roll < 0.35 else f"{year}-{month:02d}-{day:02d}")
        details = None
        if rng.random() < 0.6:
            details = " ".join(rng.choices(_WORDS + _UNICODE, k=rng.choice((8, 40, 400))))
        tag_count = rng.choice((0, 1, 3, 5, 8, 40)) if rng.random() < 0.9 else 0
        performer_count = rng.choice((0, 1, 1, 2, 3, 12))
        studio_folder = lib.studios[studio_id].name if studio_id else "unsorted"
        folder = f"{stash_root}/{studio_folder}/{year}/{scene_id // 50}"
        files = []
        for index in range(1 if rng.random() < 0.92 else rng.randint(2, 3)):
            vcodec, acodec, fmt = rng.choice(_CODECS)
            basename = (rng.choice(_SHARED_BASENAMES) if rng.random() < 0.05 and index == 0
                        else f"{(title or 'untitled')[:40].replace('/', '-')} [{scene_id}-{index}].{fmt}")
            path = f"{folder}/{scene_id}/{basename}" if basename in _SHARED_BASENAMES else f"{folder}/{basename}"
            files.append(File(
                id=lib._next_file_id, path=path,
                size=rng.randrange(50_000_000, 8_000_000_000), duration=round(rng.uniform(60, 7200), 3),
                width=rng.choice((1280, 1920, 3840)), height=rng.choice((720, 1080, 2160)),
                video_codec=vcodec, audio_codec=acodec, format=fmt, frame_rate=rng.choice((23.976, 29.97, 60.0)),
                bit_rate=rng.randrange(1_000_000, 40_000_000), mod_time=created, created_at=created,
                updated_at=created,
            ))
            lib._next_file_id += 1
        scene = Scene(
            id=scene_id, title=title, date=date, details=details, studio_id=studio_id,
            code=f"C-{scene_id:06d}" if rng.random() < 0.3 else None,
            director=f"{rng.choice(_FIRST)} {rng.choice(_LAST)}" if rng.random() < 0.2 else None,
            rating100=rng.choice((None, None, 20, 60, 80, 100)), organized=rng.random() < 0.5,
            urls=[f"https://example.com/scenes/{scene_id}"] if rng.random() < 0.5 else [],
            files=files, performer_ids=rng.sample(range(1, n_performers + 1), min(performer_count, n_performers)),
            tag_ids=rng.sample(range(1, n_tags + 1), min(tag_count, n_tags)),
            groups=[(rng.randint(1, n_groups), rng.randint(1, 9))] if rng.random() < 0.05 else [],
            created_at=created, updated_at=updated,
        )
        lib.scenes[scene_id] = scene
    lib._ids = list(range(1, n + 1))
    lib.revision += 1
    return lib
