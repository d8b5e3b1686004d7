"""What the chaos soak checks at the end, and the figures it prints. Pure.

Every check reads plain records the driver collected from outside the plugin: the final
Stash library (`SceneView`), the final Plex items (`ItemView`), every edit Plex accepted
(`Write`, from the Plex emulator's request log), every hook the run fired (`Event`) and the
moments a process was cut off (kills, cancels, Plex going down). None reads the plugin's
own model, so a bug in it cannot make a check pass.

Data carries its owner: each title (and summary) the run gives a scene starts with the
scene's marker `[s<id> v<version>]`, each renamed performer, studio or tag is called
`<P|S|T><id> r<version>`. A write is then traceable to the scene and the save it came from.
"""

from __future__ import annotations

import re
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

_SCENE_MARK = re.compile(r"^\[s(\d+) v(\d+)\]")
_ENTITY_MARK = re.compile(r"^([PST])(\d+) r(\d+)$")
_LETTER = {"performer": "P", "studio": "S", "tag": "T"}
_KIND = {v: k for k, v in _LETTER.items()}
#: Edit parameters that carry a scene's own text.
OWNED_PARAMS = ("title.value", "titleSort.value", "summary.value")

#: Which faults make a dead letter's reason true: the error class names what went wrong, and
#: it is true only if the run did that to the plugin. `gone` and `not_found` are facts about
#: the scene, checked apart.
FAULTS_FOR_CLASS: dict[str, tuple[str, ...]] = {
    "transient": ("plex_errors", "plex_429", "plex_slow", "plex_down"),
    "outage": ("plex_down",),
    "auth": ("revoke",),
    "stash_down": ("stash_down",),
}


def scene_mark(scene_id: int, version: int) -> str:
    return f"[s{scene_id} v{version}]"


def read_scene_mark(text: str | None) -> tuple[int, int] | None:
    match = _SCENE_MARK.match(text or "")
    return (int(match.group(1)), int(match.group(2))) if match else None


def entity_name(kind: str, entity_id: int, version: int) -> str:
    return f"{_LETTER[kind]}{entity_id} r{version}"


def read_entity_name(text: str) -> tuple[tuple[str, int], int] | None:
    match = _ENTITY_MARK.match(text)
    return ((_KIND[match.group(1)], int(match.group(2))), int(match.group(3))) if match else None


@dataclass(frozen=True)
class SceneView:
    """A scene as Stash has it at the end: what a sync must leave in Plex, and what it refers to."""

    title: str | None
    studio: str | None
    tags: tuple[str, ...]
    performers: tuple[str, ...]
    entities: frozenset[tuple[str, int]] = frozenset()
    groups: tuple[str, ...] = ()  # each is a collection of its own (`sync_group_collections`)


@dataclass(frozen=True)
class ItemView:
    """A scene's Plex item at the end."""

    title: str | None
    studio: str | None
    genres: tuple[str, ...]
    actors: tuple[str, ...]
    collections: tuple[str, ...]


@dataclass(frozen=True)
class Write:
    """One edit Plex answered 200 to: when it arrived, the item and its parameters."""

    t: float
    key: int
    params: Mapping[str, str]


@dataclass(frozen=True)
class Event:
    """One hook the run fired after a change in Stash; `acked` when the hook said it
    recorded the event (a hook killed before that gives Stash no promise)."""

    t: float
    kind: str  # "save", "rename" or "delete"
    scene: int | None = None
    entity: tuple[str, int] | None = None
    version: int = 0
    acked: bool = False


@dataclass
class Findings:
    """Every check's complaints, by check; empty lists everywhere is a pass."""

    problems: dict[str, list[str]] = field(default_factory=dict)

    def add(self, check: str, found: Iterable[str]) -> None:
        self.problems.setdefault(check, []).extend(found)

    @property
    def ok(self) -> bool:
        return not any(self.problems.values())

    def text(self, limit: int = 15) -> str:
        lines = []
        for check, found in self.problems.items():
            if found:
                lines.append(f"{check}: {len(found)} problem(s)")
                lines += [f"  {line}" for line in found[:limit]]
        return "\n".join(lines)


# --- Plex equals Stash ---------------------------------------------------------------------


def differences(stash: Mapping[int, SceneView], plex: Mapping[int, ItemView | None]) -> list[str]:
    """Where a scene's Plex item does not show what Stash has: title, studio, tags,
    performers and the studio's and groups' collections, each name once."""
    out = []
    for sid, scene in sorted(stash.items()):
        item = plex.get(sid)
        if item is None:
            out.append(f"scene {sid}: no Plex item")
            continue
        problems = []
        if scene.title and item.title != scene.title:
            problems.append(f"title {item.title!r} != {scene.title!r}")
        if scene.studio and item.studio != scene.studio:
            problems.append(f"studio {item.studio!r} != {scene.studio!r}")
        wanted = {"genres": scene.tags, "actors": scene.performers,
                  "collections": ((scene.studio,) if scene.studio else ()) + scene.groups}
        for name, names in wanted.items():
            have = getattr(item, name)
            if len(have) != len(set(have)):
                problems.append(f"{name} listed twice: {sorted(have)}")
            if set(have) != set(names):
                problems.append(f"{name} {sorted(set(have))} != {sorted(set(names))}")
        if problems:
            out.append(f"scene {sid}: " + "; ".join(problems))
    return out


# --- no scene written with another scene's data -------------------------------------------


def foreign_writes(writes: Iterable[Write], owner: Mapping[int, int]) -> list[str]:
    """Edits whose scene text names another scene than the one owning the item, or no scene."""
    out = []
    for w in writes:
        sid = owner.get(w.key)
        for name in OWNED_PARAMS:
            if name not in w.params:
                continue
            mark = read_scene_mark(w.params[name])
            if mark is None or mark[0] != sid:
                out.append(f"t={w.t:.3f} item {w.key} (scene {sid}) got {name}={w.params[name][:60]!r}")
    return out


# --- nothing lost --------------------------------------------------------------------------


def shown_versions(item: ItemView | None) -> tuple[int | None, dict[tuple[str, int], int]]:
    """The save a Plex item shows (its title's version) and the version of each renamed
    performer, studio or tag it names."""
    if item is None:
        return None, {}
    mark = read_scene_mark(item.title)
    entities: dict[tuple[str, int], int] = {}
    for name in (*item.genres, *item.actors, *((item.studio,) if item.studio else ())):
        read = read_entity_name(name)
        if read is not None:
            entities[read[0]] = max(read[1], entities.get(read[0], 0))
    return (mark[1] if mark else None), entities


def lost_events(events: Iterable[Event], stash: Mapping[int, SceneView], plex: Mapping[int, ItemView | None],
                excused: Iterable[int]) -> list[str]:
    """Acknowledged events Plex does not reflect. A save is reflected when the scene's item
    shows that save or a later one; a rename when every scene that still shows the entity
    names it at that version or later. Deleted scenes (absent from `stash`) and `excused`
    ones (dead-lettered for a true reason) owe nothing."""
    excused = set(excused)
    shown = {sid: shown_versions(plex.get(sid)) for sid in stash}
    out = []
    for e in events:
        if not e.acked:
            continue
        if e.kind == "save" and e.scene in stash and e.scene not in excused:
            version = shown[e.scene][0]
            if version is None or version < e.version:
                out.append(f"save of scene {e.scene} v{e.version} at t={e.t:.3f}: Plex shows v{version}")
        elif e.kind == "rename" and e.entity is not None:
            for sid, scene in stash.items():
                if e.entity in scene.entities and sid not in excused:
                    version = shown[sid][1].get(e.entity, 0)
                    if version < e.version:
                        out.append(f"rename of {e.entity[0]} {e.entity[1]} r{e.version} at t={e.t:.3f}: "
                                   f"scene {sid} shows r{version}")
    return out


# --- nothing stuck -------------------------------------------------------------------------


def stuck(counts: Mapping[str, int], dead: Mapping[int, str], alive: Iterable[int],
          faults_seen: Iterable[str], in_plex: Iterable[int]) -> list[str]:
    """Work the plugin still holds after it settled, and dead letters whose reason is false.

    `counts`: live jobs and unread events by kind (due, deferred, in flight, inbox, fan-out);
    `dead`: error class by dead-lettered scene."""
    alive, seen, in_plex = set(alive), set(faults_seen), set(in_plex)
    out = [f"{n} {what} left" for what, n in sorted(counts.items()) if n]
    for sid, error_class in sorted(dead.items()):
        if error_class == "gone":
            true = sid not in alive
        elif error_class == "not_found":
            true = sid in alive and sid not in in_plex
        else:
            true = sid in alive and bool(seen.intersection(FAULTS_FOR_CLASS.get(error_class, ())))
        if not true:
            out.append(f"scene {sid} dead-lettered as {error_class!r}, which is not true")
    return out


# --- nothing duplicated --------------------------------------------------------------------


def repeated_writes(writes: Sequence[Write], cuts: Sequence[float], slack: float = 1.0) -> list[str]:
    """The same edit sent twice in a row to one item with no kill, cancel or outage between:
    only a second job for work already done does that (the plugin reads the item before it
    writes, so a job redone after a cut finds its edit there). A cut up to `slack` seconds
    before the first write counts, for a request sent just before its sender died."""
    cuts = sorted(cuts)
    last: dict[int, Write] = {}
    out = []
    for w in sorted(writes, key=lambda w: w.t):
        before = last.get(w.key)
        if (before is not None and dict(before.params) == dict(w.params)
                and not any(before.t - slack <= c <= w.t for c in cuts)):
            out.append(f"item {w.key}: the same edit at t={before.t:.3f} and t={w.t:.3f}")
        last[w.key] = w
    return out


# --- figures -------------------------------------------------------------------------------


def save_latencies(events: Iterable[Event], writes: Sequence[Write], owner: Mapping[int, int]) -> list[float]:
    """For each acknowledged save, seconds until Plex first accepted an edit showing it (or
    a later save of the scene). Saves never shown (the scene was deleted) are left out."""
    by_scene: dict[int, list[tuple[float, int]]] = defaultdict(list)
    for w in writes:
        mark = read_scene_mark(w.params.get("title.value"))
        sid = owner.get(w.key)
        if mark is not None and sid == mark[0]:
            by_scene[sid].append((w.t, mark[1]))
    out = []
    for e in events:
        if e.kind != "save" or not e.acked or e.scene is None:
            continue
        landed = [t for t, version in by_scene.get(e.scene, ()) if t >= e.t and version >= e.version]
        if landed:
            out.append(min(landed) - e.t)
    return out


def writes_per_scene(writes: Iterable[Write], owner: Mapping[int, int]) -> dict[int, int]:
    out: dict[int, int] = defaultdict(int)
    for w in writes:
        if w.key in owner:
            out[owner[w.key]] += 1
    return dict(out)


def percentile(values: Sequence[float], p: float) -> float:
    if not values:
        return 0.0
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[min(98, max(0, int(p) - 1))]
