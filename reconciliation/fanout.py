"""Fan-out: a performer, studio, tag or group changed in Stash, so every scene that shows it is queued.

The hook only records (kind, id, trigger, and for a tag merge the ids merged away); the
processing core's ingest step calls `expand_pending`, which turns each stored event into
one job per affected scene through the queue's usual merge rule (one live job per scene):

* **Update** (a rename, a new image, ...): Stash still relates the scenes to the entity, so
  they are listed from Stash (`findScenes` by performer/studio/tag, paged by id) and
  enqueued by the ledger rule: a scene whose Plex state would not change is skipped. Each
  job carries its scene as listed, as Sync All's do, so the drain only checks it is still
  current instead of reading it again.
* **Destroy**: Stash has already dropped the relation and the name, so the scenes are the
  ones our ledger says showed that id when we last wrote them (`scene_refs`, stored with
  every sync).
* **Merge** (tags only, `Tag.Merge.Post`): the destination's scenes from Stash (they carry
  it now) plus the ledger's scenes of the merged-away tags.

Resumable: after each page the cursor (phase, last scene id) is stored in the fan-out row,
so a processor killed mid-way resumes after the last page it enqueued, and the row is
deleted only once every phase is done. Enqueueing is idempotent besides (merge into the
live job, ledger rule), so a repeated page costs the page and nothing else.

A group's event also marks its collection due (`sync_queue.collections`): a new front image
or synopsis changes what the collection shows even where no scene's item edit changes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from base.settings import Settings
from reconciliation.bulk import chunked, scene_state
from stash.records import Scene
from sync_queue.fanout import FANOUT_CURSOR, FanOutEvent
from sync_queue.jobs import JobQueue

PAGE = 200

STASH = "stash"
LEDGER = "ledger"

#: Scene filter criterion per fan-out kind. Studios, tags and groups are hierarchical
#: criteria; depth 0 is the entity itself, because a scene shows its own studio's, tags' and
#: groups' names only (a parent studio's rename changes no scene's Plex fields, unless
#: network collections are on: see `scene_filter`).
CRITERIA: dict[str, tuple[str, bool]] = {
    "performer": ("performers", False),
    "studio": ("studios", True),
    "tag": ("tags", True),
    "group": ("groups", True),
}

StateOf = Callable[[Scene], str]


class SceneLister(Protocol):
    def iter_scenes(self, scene_filter: dict[str, Any] | None = None, after_id: int = 0,
                    page_size: int = PAGE) -> Iterator[Scene]: ...


Listed = tuple[Scene, Mapping[str, Any] | None]


# --- pure decisions --------------------------------------------------------------------


def action(reason: str) -> str:
    """`Tag.Merge.Post` -> `Merge`; anything that is not a trigger name -> ``""``."""
    parts = reason.split(".")
    return parts[1] if len(parts) == 3 and parts[2] == "Post" else ""


@dataclass(frozen=True)
class Lookup:
    """Where the affected scenes of one event are found."""

    from_stash: bool  # list the scenes Stash relates to the entity now
    ledger_ids: tuple[int, ...] = ()  # entity ids whose scenes only our ledger still knows

    @property
    def phases(self) -> tuple[str, ...]:
        return ((STASH,) if self.from_stash else ()) + ((LEDGER,) if self.ledger_ids else ())


def plan_lookup(entity_id: int, reasons: Iterable[str], payload: Mapping[str, Any] | None) -> Lookup:
    """The lookups an event (possibly several merged ones) needs; see the module docstring.

    A trigger we do not know is treated as an update: listing from Stash is always safe.
    """
    actions = {action(r) for r in reasons} or {""}
    ledger: set[int] = set()
    if "Destroy" in actions:
        ledger.add(int(entity_id))
    if "Merge" in actions:
        ledger.update(int(i) for i in (payload or {}).get("merged") or () if int(i) > 0)
    from_stash = bool(actions - {"Destroy"})
    return Lookup(from_stash, tuple(sorted(ledger)))


def scene_filter(kind: str, entity_id: int, networks: bool = False) -> dict[str, Any]:
    """The `SceneFilterType` that lists the scenes showing one performer, studio, tag or group.
    With network collections on, a studio's scenes include its child studios' (every level):
    they show it as their network."""
    name, hierarchical = CRITERIA[kind]
    criterion: dict[str, Any] = {"value": [str(entity_id)], "modifier": "INCLUDES"}
    if hierarchical:
        criterion["depth"] = -1 if networks and kind == "studio" else 0
    return {name: criterion}


def remaining(lookup: Lookup, cursor: Mapping[str, Any] | None) -> list[tuple[str, int]]:
    """(phase, scene id to resume after) still to run, given a stored cursor.

    A cursor naming a phase this lookup does not have (the row changed shape) restarts from
    the beginning rather than skipping anything.
    """
    phases = lookup.phases
    if not cursor or cursor.get("phase") not in phases:
        return [(phase, 0) for phase in phases]
    start = phases.index(cursor["phase"])
    after = int(cursor.get("after") or 0)
    return [(phase, after if i == start else 0) for i, phase in enumerate(phases) if i >= start]


def scene_refs(scene: Scene) -> dict[str, list[int]]:
    """The Stash ids a sync of `scene` shows, as the ledger keeps them for later deletes."""
    def ids(values: Iterable[str]) -> list[int]:
        return sorted({int(v) for v in values if str(v).isdigit()})

    refs = {
        "performer": ids(p.id for p in scene.performers),
        "studio": ids([scene.studio.id] if scene.studio else []),
        "tag": ids(scene.tag_ids),
    }
    if scene.group_links:  # kept only where there is one, as most scenes are in no group
        refs["group"] = ids(link.id for link in scene.group_links)
    return refs


def job_reason(event: FanOutEvent) -> str:
    """What the scene's job says it was queued for, e.g. `Tag.Update.Post tag 12`."""
    return f"{'+'.join(event.reasons) or 'fanout'} {event.kind} {event.entity_id}"


def state_function(settings: Settings | None) -> StateOf | None:
    """The ledger hash a sync would store, so unchanged scenes are skipped; None without settings."""
    if settings is None:
        return None
    return lambda scene: scene_state(scene, settings)


# --- expansion (queue and Stash I/O) ----------------------------------------------------


@dataclass
class FanOutResult:
    events: int = 0  # fan-out events fully expanded (their rows deleted)
    scenes: int = 0  # affected scenes found
    queued: int = 0  # of those, enqueued (created or merged into a live job)


def expand(event: FanOutEvent, queue: JobQueue, stash: SceneLister, state_of: StateOf | None, now: float,
           page: int = PAGE, networks: bool = False) -> FanOutResult:
    """Enqueue every scene `event` affects, page by page, then drop the event.

    Raises what the Stash client raises (the event stays stored, with its cursor).
    """
    result = FanOutResult()
    if event.kind == "group":  # its collection's own fields may have changed with no scene's
        queue.collections.touch_source("group", str(event.entity_id), now)
    lookup = plan_lookup(event.entity_id, event.reasons, event.payload)
    reason = job_reason(event)
    cursor = (event.payload or {}).get(FANOUT_CURSOR)
    for phase, after in remaining(lookup, cursor):
        if phase == STASH:
            scenes = _listing(stash, scene_filter(event.kind, event.entity_id, networks), after, page)
            for chunk in chunked(scenes, page):
                result.scenes += len(chunk)
                result.queued += _enqueue_scenes(queue, chunk, reason, state_of, now)
                queue.fanout.progress(event.event_id, {"phase": phase, "after": chunk[-1][0].id})
        else:
            while True:
                ids = queue.ledger.scenes_referencing(event.kind, lookup.ledger_ids, after=after, limit=page)
                if not ids:
                    break
                result.scenes += len(ids)
                result.queued += queue.enqueue_many(ids, reason, now, urgent=False)
                after = ids[-1]
                queue.fanout.progress(event.event_id, {"phase": phase, "after": after})
    queue.fanout.done(event.event_id)
    result.events = 1
    return result


def _listing(stash: SceneLister, criteria: dict[str, Any], after: int, page: int) -> Iterator[Listed]:
    """The scenes with Stash's answer for each (`StashClient.iter_listing`), which their jobs
    carry to the drain; a lister that has only the scenes gives no answer to carry."""
    listing = getattr(stash, "iter_listing", None)
    if listing is None:
        return ((scene, None) for scene in stash.iter_scenes(criteria, after_id=after, page_size=page))
    return listing(criteria, after_id=after, page_size=page)


def _enqueue_scenes(queue: JobQueue, scenes: Sequence[Listed], reason: str, state_of: StateOf | None,
                    now: float) -> int:
    if state_of is None:
        return queue.enqueue_many((s.id for s, _raw in scenes), reason, now, urgent=False)
    return queue.enqueue_changed_many(((s.id, state_of(s), raw) for s, raw in scenes), reason, now)


def expand_pending(events: Iterable[FanOutEvent], queue: JobQueue, stash: SceneLister,
                   state_of: StateOf | None, now: float, networks: bool = False) -> FanOutResult:
    """`expand` each stored event in arrival order; the first failure stops and propagates."""
    total = FanOutResult()
    for event in events:
        one = expand(event, queue, stash, state_of, now, networks=networks)
        total.events += one.events
        total.scenes += one.scenes
        total.queued += one.queued
    return total
