"""Plain records of what we read from Stash.

The Stash façade turns GraphQL answers into these at the edge, so decision code (matching,
desired Plex state, diffs, the ledger hash) never sees a raw dict whose shape depends on the
Stash version or on the fragment that fetched it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class SceneFile:
    path: str
    size: int = 0
    duration: float = 0.0  # seconds, as Stash reports it

    @property
    def basename(self) -> str:
        return self.path.replace("\\", "/").rsplit("/", 1)[-1]


@dataclass(frozen=True)
class Studio:
    id: str
    name: str
    parent_name: str | None = None
    image_url: str | None = None  # None when Stash only has its default image
    #: The parent chain (the studio's network, its network's, ...), nearest first, as deep as
    #: `stash.queries.NETWORK_DEPTH` reads it.
    parents: tuple[Studio, ...] = ()


@dataclass(frozen=True)
class GroupLink:
    """A scene's place in a Stash group: the group's own fields travel with every scene in it,
    so a sync has what the group's collection shows without asking Stash again."""

    id: str
    name: str
    scene_index: int | None = None
    synopsis: str | None = None
    image_url: str | None = None  # the front image; None when Stash only has its default


@dataclass(frozen=True)
class Performer:
    id: str
    name: str
    image_url: str | None = None  # None when Stash only has its default image


@dataclass(frozen=True)
class Scene:
    """One Stash scene as far as syncing to Plex is concerned.

    `files` keep Stash's order: primary first. `date` is Stash's text (`YYYY`, `YYYY-MM` or
    `YYYY-MM-DD` since v0.30). `screenshot_url` is the cover image URL Stash built for the
    address we connected to; it needs our auth to download.
    """

    id: int
    title: str | None = None
    code: str | None = None
    details: str | None = None
    director: str | None = None
    date: str | None = None
    rating100: int | None = None
    urls: tuple[str, ...] = ()
    files: tuple[SceneFile, ...] = ()
    studio: Studio | None = None
    performers: tuple[Performer, ...] = ()
    tags: tuple[str, ...] = ()
    tag_ids: tuple[str, ...] = ()  # same order as `tags`; fan-out finds scenes by them
    groups: tuple[str, ...] = ()  # the groups' names, in Stash's order
    group_links: tuple[GroupLink, ...] = ()  # the same groups, with index, synopsis and image
    screenshot_url: str | None = None
    organized: bool = False
    created_at: str = ""
    updated_at: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def has_metadata(self) -> bool:
        """False right after a file scan, before anyone identified the scene.

        Precisely: no title, details or date with a non-blank character, no studio, no
        performer and no tag. A code, rating, URL, group or director alone does not count
        (none of them is what identification or a person editing the scene sets first), so
        such a scene is still "not identified". Such an update must never clear values in
        Plex (the quality gate, applied in `plex.desired.desired_state` for every path).
        """
        return bool(
            any((text or "").strip() for text in (self.title, self.details, self.date))
            or self.studio or self.performers or self.tags
        )
