"""Which Plex collections a scene belongs to, and what each collection itself shows. Pure.

`sync_collection` switches all of them on or off (with `sync_master`); within it, three
kinds, each a collection named after its Stash source, behind `collection_prefix`:

* **studio**: the scene's studio; its poster is the studio's image.
* **network** (`sync_network_collections`, off by default): each parent studio up the chain.
  Off because a network holds every scene of all its studios: thousands of items in one
  collection that most users never asked for.
* **group** (`sync_group_collections`, on by default): one per Stash group the scene is in,
  with the group's front image as poster, its synopsis as summary, and its scenes in
  `scene_index` order. A group is something a person made in Stash on purpose (a series, a
  compilation, a release), so seeing it in Plex is what users expect; it is small, and it is
  what users of Stash metadata agents for Plex keep asking for.

Posters (`sync_collection_posters`, on by default) are the collections' own artwork, apart
from `sync_poster`, the scene's cover: a user who prefers Plex's own item posters still gets
the group covers, and without one Plex shows only a mosaic of the items.

Membership rides on the scene's one item edit (the `collection` tag list of `DesiredState`),
so joining or leaving costs no request of its own. The collection's own fields (poster,
summary, order, name) are written once per collection by `plex.collections`.
"""

from __future__ import annotations

from dataclasses import dataclass

from base.settings import Settings
from plex.desired import clean_text, still_image_url
from stash.records import Scene

GROUP = "group"
STUDIO = "studio"
NETWORK = "network"
#: Collection summaries travel in the query string like an item's (see `plex.desired`).
SUMMARY_MAX = 10_000


@dataclass(frozen=True)
class CollectionSpec:
    """One collection a scene asks for: what it is named and what it shows.

    `summary` and `image_url` are None when we do not manage them (a studio has no summary
    here); `scene_index` is this scene's place in a group (None: unnumbered, sorted last)."""

    kind: str
    source_id: str
    title: str
    summary: str | None = None
    image_url: str | None = None
    scene_index: int | None = None

    @property
    def key(self) -> tuple[str, str]:
        return self.kind, self.source_id

    @property
    def ordered(self) -> bool:
        """Only a group's items have an order of their own; Plex's default order serves the rest."""
        return self.kind == GROUP


def collection_title(name: str | None, prefix: str) -> str:
    """The collection's name in Plex: the cleaned name behind the prefix; "" for no name."""
    name = clean_text(name)
    return clean_text(prefix + name) if name else ""


def scene_collections(scene: Scene, settings: Settings) -> tuple[CollectionSpec, ...]:
    """Every collection `scene` asks for under `settings`, studio first, then its networks,
    then its groups in Stash's order; one per name (Plex's names ignore case)."""
    if not managed(settings):
        return ()
    prefix = settings.collection_prefix

    def poster(url: str | None) -> str | None:
        return still_image_url(url) if settings.sync_collection_posters else None

    out: list[CollectionSpec] = []
    studio = scene.studio
    if studio is not None:
        out.append(CollectionSpec(STUDIO, studio.id, collection_title(studio.name, prefix),
                                  image_url=poster(studio.image_url)))
        if settings.sync_network_collections:
            out += [CollectionSpec(NETWORK, parent.id, collection_title(parent.name, prefix),
                                   image_url=poster(parent.image_url)) for parent in studio.parents]
    if settings.sync_group_collections:
        out += [CollectionSpec(GROUP, link.id, collection_title(link.name, prefix),
                               summary=clean_text(link.synopsis, SUMMARY_MAX, multiline=True),
                               image_url=poster(link.image_url), scene_index=link.scene_index)
                for link in scene.group_links]
    seen: set[str] = set()
    unique = []
    for spec in out:
        if spec.title and spec.title.casefold() not in seen:
            seen.add(spec.title.casefold())
            unique.append(spec)
    return tuple(unique)


def group_state(scene: Scene, settings: Settings) -> list[list[object]]:
    """What the scene's group collections take from it and its groups (id, index, summary,
    image), for the ledger hash: a new scene number or group image makes the scene due, so
    Sync All and Reconcile find it, though its item edit would not change."""
    return [[s.source_id, s.scene_index, s.summary, s.image_url]
            for s in scene_collections(scene, settings) if s.kind == GROUP]


def managed(settings: Settings) -> bool:
    """Whether the item's collection tags are ours to manage at all."""
    return settings.field_enabled("sync_collection")
