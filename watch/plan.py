"""The import's decisions, as pure functions: which plays to add, which resume points to set.

**Plays, counted per minute.** Stash's own player records a play at the minute it was
watched, and a play we sent before a kill is in Stash without being in our log. Both look
the same from here: a play in Stash at that scene and minute. So per (scene, minute) we
want as many plays in Stash as Plex has plays we account for there (plays logged earlier
plus this page's new ones) and add only the difference. Re-reading a page after a kill
therefore adds nothing twice, a play Stash already has at that minute is not added again,
and two real plays within one minute both arrive. Plays are only ever added.

**Resume points.** Plex's viewing state of an item is newer than Stash's when its
`lastViewedAt` is not before Stash's last play (`last_played_at`; Stash keeps no other
time for its activity). Then an offset becomes Stash's resume time, and no offset (Plex
clears it when a play finishes) clears Stash's, as Stash's own player does when a video
ends. An offset in the last 2% of the video counts as finished too.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

#: Stash's player treats a play this close to the end as finished: the resume point is 0.
FINISHED_FRACTION = 0.98


def minute(seconds: float) -> int:
    return int(seconds // 60)


@dataclass(frozen=True)
class NewPlay:
    """A play of this page matched to a scene, not logged before."""

    key: str
    scene_id: int
    viewed_at: int


@dataclass(frozen=True)
class PlayPlan:
    """Times to send per scene, and which keys are already in Stash (nothing to send)."""

    to_add: dict[int, list[int]]
    added_keys: frozenset[str]
    in_stash_keys: frozenset[str]


def plays_to_add(new: Sequence[NewPlay], logged: Mapping[tuple[int, int], int],
                 stash_plays: Mapping[int, Iterable[float]]) -> PlayPlan:
    """Split this page's plays into ones to send and ones Stash already has.

    `logged` counts plays recorded in our log as in Stash per (scene, minute);
    `stash_plays` are Stash's play times per scene.
    """
    have: Counter[tuple[int, int]] = Counter()
    for scene_id, times in stash_plays.items():
        for t in times:
            have[(scene_id, minute(t))] += 1
    groups: dict[tuple[int, int], list[NewPlay]] = {}
    for play in sorted(new, key=lambda p: (p.scene_id, p.viewed_at, p.key)):
        groups.setdefault((play.scene_id, minute(play.viewed_at)), []).append(play)
    to_add: dict[int, list[int]] = {}
    added: set[str] = set()
    in_stash: set[str] = set()
    for slot, plays in groups.items():
        missing = max(0, logged.get(slot, 0) + len(plays) - have.get(slot, 0))
        # The first plays of the minute are the ones Stash already holds; the rest are sent.
        already = len(plays) - min(missing, len(plays))
        for index, play in enumerate(plays):
            if index < already:
                in_stash.add(play.key)
            else:
                added.add(play.key)
                to_add.setdefault(play.scene_id, []).append(play.viewed_at)
    return PlayPlan(to_add, frozenset(added), frozenset(in_stash))


@dataclass(frozen=True)
class ResumeChange:
    scene_id: int
    resume_time: float  # seconds; 0 clears the resume point


def resume_change(scene_id: int, plex_viewed_at: int | None, plex_offset_ms: int, duration_s: float,
                  stash_resume: float, stash_last_played: float | None) -> ResumeChange | None:
    """The resume time to set in Stash, or None to leave Stash's as it is."""
    if plex_viewed_at is None:
        return None  # never viewed in Plex: nothing to say
    if stash_last_played is not None and plex_viewed_at < int(stash_last_played):
        return None  # Stash's own player was used after Plex: Stash's point is newer
    target = plex_offset_ms / 1000.0
    if duration_s > 0 and target >= duration_s * FINISHED_FRACTION:
        target = 0.0
    if abs(target - stash_resume) < 1.0:
        return None
    return ResumeChange(scene_id, target)
