"""Which scene may write a Plex item that two Stash scenes resolve to. Pure.

Two scenes meet in one item when Plex keeps two files as versions of one movie: its own
optimised copies (`<movie folder>/Plex Versions/<profile>/...`, which Stash scans as scenes
of their own when it watches the same folder) and duplicates Stash keeps as two scenes.
Were both synced, each sync would overwrite the other's metadata, forever.

The rule (README, "One Plex item, two scenes"):

1. The scene whose file is the item's **primary Part** owns it: the first Part that is not
   one of Plex's optimised versions, i.e. the file the item was made from.
2. When neither scene's file is the primary Part (say two optimised copies), the scene that
   already owns the item in the sync ledger keeps it.
3. Only the owner writes. Every other scene is dead-lettered with a message naming the
   owner; an owner that displaces an earlier claimant sends that one to be dead-lettered
   the same way, and takes over the locks it set (they are this plugin's, not a person's).

Who holds the primary Part is asked of the ledger first and of Stash only when the ledger
cannot say (`holder`): the rule does not depend on which scene happened to sync first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from plex.pathmap import path_key


@dataclass(frozen=True)
class Claim:
    """Another scene's hold on an item, as the ledger recorded it."""

    scene_id: int
    plex_file: str | None = None  # the Part its last sync matched; None: recorded before we kept it
    locks: frozenset[str] = frozenset()  # the Plex locks its syncs set on the item


@dataclass(frozen=True)
class Ownership:
    """Who writes the item, and whose claim the writer takes over (to be dead-lettered)."""

    owner: int
    by_primary: bool = False  # the owner holds the primary Part (else: it owned the item first)
    displaced: int | None = None
    locks: frozenset[str] = frozenset()  # the displaced claimant's locks, now the owner's


def _same(a: str | None, b: str | None) -> bool:
    return bool(a and b) and path_key(a) == path_key(b)  # type: ignore[arg-type]


def live(rival: Claim | None, files: Sequence[str]) -> Claim | None:
    """The rival's claim if its file is still a Part of the item (unknown files count)."""
    if rival is None or rival.plex_file is None or any(_same(rival.plex_file, f) for f in files):
        return rival
    return None


def needs_holder(my_file: str, primary: str, rival: Claim | None) -> bool:
    """Whether `decide` needs Stash's answer to "which scene has the primary Part's file"."""
    return not _same(my_file, primary) and not (rival is not None and _same(rival.plex_file, primary))


def decide(scene_id: int, my_file: str, primary: str, files: Sequence[str], rival: Claim | None,
           holder: int | None = None) -> Ownership:
    """Apply the rule above. `rival` is another scene's ledger claim on the item, `holder`
    the Stash scene whose file is the primary Part (None: none, or not asked)."""
    current = live(rival, files)
    if _same(my_file, primary):
        return _displacing(Ownership(scene_id, True), rival)
    if current is not None and _same(current.plex_file, primary):
        return Ownership(current.scene_id, True)
    if holder is not None and holder != scene_id:
        return Ownership(holder, True)
    if current is not None:
        return Ownership(current.scene_id, False)
    return _displacing(Ownership(scene_id, False), rival)


def _displacing(verdict: Ownership, rival: Claim | None) -> Ownership:
    if rival is None:
        return verdict
    return Ownership(verdict.owner, verdict.by_primary, rival.scene_id, rival.locks)
