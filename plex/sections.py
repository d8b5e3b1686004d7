"""Which Plex library sections we work in, which section holds a folder, and which folders
we recently asked Plex to scan. Pure: the section list is read by `plex.sync`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from base.errors import SettingsError
from base.settings import WHERE_TO_SET
from plex import xmlread
from plex.pathmap import path_key

#: Seconds a folder we asked Plex to scan is not asked again (one scan per burst).
SCAN_WINDOW = 120.0


def choose_sections(sections: Sequence[xmlread.Section], wanted: Sequence[str]) -> tuple[xmlread.Section, ...]:
    """Movie sections named in `plex_library` (case-insensitive), or all of them when empty."""
    movies = tuple(s for s in sections if s.type == "movie")
    if not wanted:
        return movies
    by_name = {s.title.casefold(): s for s in movies}
    missing = [w for w in wanted if w.casefold() not in by_name]
    if missing:
        have = ", ".join(s.title for s in movies) or "none"
        raise SettingsError(f"Plex has no movie library named {', '.join(missing)} (it has: {have}); "
                            f"fix 'Plex libraries' in {WHERE_TO_SET}.")
    return tuple(by_name[w.casefold()] for w in wanted)


def _inside(path: str, folder: str) -> int:
    """Length of `folder` when `path` is in it (or is it), else -1: longest location wins."""
    p, f = path_key(path), path_key(folder).rstrip("/")
    return len(f) if p == f or p.startswith(f + "/") else -1


def section_for_folder(sections: Sequence[xmlread.Section], folder: str) -> xmlread.Section | None:
    """The section with the longest Location containing `folder`."""
    best = max(((max((_inside(folder, loc) for loc in s.locations), default=-1), s) for s in sections),
               key=lambda pair: pair[0], default=(-1, None))
    return best[1] if best[0] >= 0 else None


@dataclass
class ScanMemory:
    """Folders we asked Plex to scan, so a burst of new scenes in one folder asks once."""

    window: float = SCAN_WINDOW
    asked: dict[str, float] = field(default_factory=dict)

    def due(self, folder: str, now: float) -> bool:
        last = self.asked.get(path_key(folder))
        return last is None or not 0 <= now - last < self.window

    def mark(self, folder: str, now: float) -> None:
        self.asked = {k: t for k, t in self.asked.items() if 0 <= now - t < self.window}
        self.asked[path_key(folder)] = now
