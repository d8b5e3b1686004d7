"""The Plex fields we manage, written once: what each is called where, and how it is read.

Every list of fields derives from `FIELDS`: the diff's scalars and tag lists, the desired
and current state records' attribute names, the XML reader, the dry run's words and the
order of its counts, and reconcile's gap rules (which fields count as empty, which lists
show drift). A field added here is added everywhere, or a test says where it is missing.

Names:
* `attr` is the attribute on `DesiredState` and `CurrentState`;
* `name` is Plex's: the edit parameter (`title.value`, `genre[0].tag.tag`), the lock's
  `Field name`, and the key under which the ledger's `written` keeps what we sent;
* `xml` is where a metadata answer holds it: an attribute of the `Video` element for a
  scalar, the child element (`Genre`, `Role`, `Collection`) for a tag list.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Kind(str, Enum):
    SCALAR = "scalar"
    TAGS = "tags"


@dataclass(frozen=True)
class PlexField:
    attr: str
    name: str
    kind: Kind
    xml: str
    #: What a user reads in the dry run ("genres added"); scalars use `name`.
    word: str = ""
    #: Reconcile calls an item "empty" when Plex shows nothing here but Stash has a value.
    empty_gap: bool = False
    #: When Plex leaves the attribute out, it equals this field (Plex omits a value equal to
    #: its default, and the sort title's default is the title); otherwise it is empty.
    omitted_means: str = ""
    #: Reconcile calls an item "drifted" when Plex lists a name here that we never wrote
    #: (collections are shared with the user's own, so an extra one is not drift).
    drift_gap: bool = False


FIELDS: tuple[PlexField, ...] = (
    PlexField("title", "title", Kind.SCALAR, "title", empty_gap=True),
    PlexField("title_sort", "titleSort", Kind.SCALAR, "titleSort", omitted_means="title"),
    PlexField("summary", "summary", Kind.SCALAR, "summary", empty_gap=True),
    PlexField("studio", "studio", Kind.SCALAR, "studio", empty_gap=True),
    PlexField("tagline", "tagline", Kind.SCALAR, "tagline", empty_gap=True),
    PlexField("originally_available_at", "originallyAvailableAt", Kind.SCALAR, "originallyAvailableAt",
              empty_gap=True),
    PlexField("rating", "userRating", Kind.SCALAR, "userRating"),
    PlexField("genres", "genre", Kind.TAGS, "Genre", word="genres", empty_gap=True, drift_gap=True),
    PlexField("actors", "actor", Kind.TAGS, "Role", word="actors", empty_gap=True, drift_gap=True),
    PlexField("collections", "collection", Kind.TAGS, "Collection", word="collections"),
)

#: In the order users read them (changes, dry run lines and counts, gap fields).
SCALARS: tuple[PlexField, ...] = tuple(f for f in FIELDS if f.kind is Kind.SCALAR)
TAG_LISTS: tuple[PlexField, ...] = tuple(f for f in FIELDS if f.kind is Kind.TAGS)
BY_NAME: dict[str, PlexField] = {f.name: f for f in FIELDS}
