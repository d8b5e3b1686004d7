"""Which Plex item is this Stash scene: a pure function of (scene files, index, mapping).

The rules, in order:

1. **Exact path.** Each file of the scene (Stash's order, primary first) is mapped to its
   Plex path and looked up by `path_key`. The first hit wins. Same-named files in two
   folders can never be confused here.
2. **File-name fallback**, only when no path matched (typically a wrong or missing
   `path_map`). Candidates are Plex parts with the same file name as any scene file.
   A candidate whose size, or else duration, is known on both sides and disagrees is not
   the same file and is dropped. That is the tiebreak: two `scene.mp4` of different
   sizes resolve to the one whose size matches. Exactly one remaining item is a match.
3. **Several candidates left** is ambiguous and we never guess. Under `strict_matching`
   this is reported as ambiguous (the job goes to the dead-letter list with the
   candidates); otherwise it counts as not found, so the queue retries and a Plex scan or a
   fixed `path_map` can still resolve it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol

from plex.pathmap import PathMap, basename_key, path_key, to_plex

#: Durations (seconds) closer than this are the same file; Stash and Plex probe differently.
DURATION_TOLERANCE = 2.0


@dataclass(frozen=True, slots=True)
class IndexEntry:
    """One media part Plex knows: its path as Plex reports it and the item holding it.
    Slotted: the index holds one per part, 100,000 of them in a large library."""

    path: str
    rating_key: str
    size: int = 0  # bytes; 0 = unknown
    duration: float = 0.0  # seconds; 0 = unknown


@dataclass(frozen=True)
class LibraryIndex:
    """File path to item, plus file name to candidates for the fallback. Plain data."""

    by_path: Mapping[str, str] = field(default_factory=dict)
    by_name: Mapping[str, tuple[IndexEntry, ...]] = field(default_factory=dict)


def build_index(entries: Iterable[IndexEntry]) -> LibraryIndex:
    """Index parts by `path_key` and by `basename_key`."""
    by_path: dict[str, str] = {}
    by_name: dict[str, list[IndexEntry]] = {}
    for entry in entries:
        by_path[path_key(entry.path)] = entry.rating_key
        by_name.setdefault(basename_key(entry.path), []).append(entry)
    return LibraryIndex(by_path, {name: tuple(group) for name, group in by_name.items()})


def merge_index(index: LibraryIndex, entries: Iterable[IndexEntry]) -> LibraryIndex:
    """`index` with `entries` added or replacing the same paths (a narrow re-read).

    Only the file names touched are regrouped (equal path keys have equal name keys), so a
    narrow re-read costs two dict copies, not a rebuild of a 100,000-item index."""
    fresh = list(entries)
    if not fresh:
        return index
    replaced = {path_key(e.path) for e in fresh}
    by_path = {k: v for k, v in index.by_path.items() if k not in replaced}
    by_name = dict(index.by_name)
    for name in {basename_key(e.path) for e in fresh}:
        by_name[name] = tuple(e for e in by_name.get(name, ()) if path_key(e.path) not in replaced)
    for entry in fresh:
        by_path[path_key(entry.path)] = entry.rating_key
        key = basename_key(entry.path)
        by_name[key] = (*by_name[key], entry)
    return LibraryIndex(by_path, {name: group for name, group in by_name.items() if group})


class MatchKind(str, Enum):
    EXACT = "exact"
    FILE_NAME = "file_name"
    NOT_FOUND = "not_found"
    AMBIGUOUS = "ambiguous"


@dataclass(frozen=True)
class MatchResult:
    """What matching concluded; `paths_tried` are the mapped Plex paths, for messages."""

    kind: MatchKind
    rating_key: str | None = None
    plex_path: str | None = None
    paths_tried: tuple[str, ...] = ()
    candidates: tuple[str, ...] = ()

    @property
    def found(self) -> bool:
        return self.rating_key is not None


class _File(Protocol):
    """What the matcher reads from a scene file; `stash.records.SceneFile` has it."""

    path: str
    size: int
    duration: float


def _same_file(scene_file: _File, entry: IndexEntry) -> bool:
    """False only when a known size (else a known duration) proves they differ."""
    if scene_file.size and entry.size:
        return scene_file.size == entry.size
    if scene_file.duration and entry.duration:
        return abs(scene_file.duration - entry.duration) <= DURATION_TOLERANCE
    return True


def _fallback(files: Sequence[_File], index: LibraryIndex) -> dict[str, IndexEntry]:
    """Items that hold a same-named, not provably different file: rating key -> one part."""
    found: dict[str, IndexEntry] = {}
    for scene_file in files:
        for entry in index.by_name.get(basename_key(scene_file.path), ()):
            if _same_file(scene_file, entry):
                found.setdefault(entry.rating_key, entry)
    return found


def match(files: Sequence[_File], index: LibraryIndex, mapping: PathMap, strict: bool) -> MatchResult:
    """Apply the rules in the module docstring; never raises, never guesses."""
    tried = tuple(to_plex(f.path, mapping) for f in files)
    for plex_path in tried:
        key = index.by_path.get(path_key(plex_path))
        if key is not None:
            return MatchResult(MatchKind.EXACT, key, plex_path, tried)
    found = _fallback(files, index)
    if len(found) == 1:
        (key, entry), = found.items()
        return MatchResult(MatchKind.FILE_NAME, key, entry.path, tried)
    if len(found) > 1:
        listed = tuple(f"{e.path} (item {k})" for k, e in sorted(found.items()))
        kind = MatchKind.AMBIGUOUS if strict else MatchKind.NOT_FOUND
        return MatchResult(kind, None, None, tried, listed)
    return MatchResult(MatchKind.NOT_FOUND, None, None, tried)
