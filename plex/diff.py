"""Desired state against current state: the one edit request to send, or none. Pure.

Inputs are plain records: `DesiredState` (from Stash), `CurrentState` (one full reload of
the Plex item), the ledger's `written` map (what we last synced, may be empty) and two
settings. The output `EditPlan.params` is exactly what plexapi's `edit(**params)` would
send (`title.value`, `genre[0].tag.tag`, `genre[].tag.tag-`, `actor[0].tag.thumb`,
`*.locked` ...), minus `id` and `type`, which the writer adds.

Rules:

* A field that already shows the desired value is not sent. If it is synced but not
  locked and `lock_synced_fields` is on, only its lock is sent.
* Scalars: `preserve_plex_edits` is three-way. When Plex's value differs from what we
  last synced, a person changed it in Plex after us, and Plex's value stays (listed in
  `kept`). Without a ledger value there is no evidence of such an edit, so Stash wins.
* Genres and actors mirror Stash: a tag removed in Stash is removed in Plex. Under
  `preserve_plex_edits` (with a ledger) only Stash's own changes since the last sync are
  applied to Plex's list, so tags a person added or removed in Plex survive.
* Collections are shared with the user's own, so only ours are managed: the collection of
  a former studio (known from the ledger) is removed, the current studio's is added, and
  every other collection stays.
* Lists are compared ignoring case and order: Plex folds tag case and returns its own
  order, and a comparison that disagreed with Plex would resend the same edit forever.
* Changed lists are sent whole in indexed form (which replaces Plex's list) **and** with
  the removals spelled out (`tag[].tag.tag-`), so the result is right whichever of the two
  a server version honours; an emptied list can only be expressed by removals.
* An uploaded poster or background is locked in the same request (`thumb.locked=1`,
  `art.locked=1`), so an agent refresh cannot replace it.
* A lock this plugin did not set is a person's decision (`ours` lists the locks we set, as
  the ledger recorded them, plus those a write not recorded yet may have set:
  `locks_in_flight`, noted before each write goes out). Such a field is left alone: no
  value, no lock, no upload, and it is listed in `kept_locked` when Stash's value differs from Plex's. With `overwrite_user_locks` it is written, and its lock is
  sent as 1 whatever `lock_synced_fields` says: we never unlock a lock we did not set.
  The sort title follows the title: a title kept this way keeps its sort title too.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any
from urllib.parse import quote

from plex.desired import Actor, DesiredState
from plex.fields import FIELDS, SCALARS
from plex.records import CurrentState, LedgerEntry, LocksInFlight

#: Names Plex may record the actor-list lock under (unverified which one real Plex uses).
ACTOR_LOCK_NAMES = frozenset({"actor", "role"})

IMAGE_LOCKS = {"poster": "thumb", "art": "art"}


def lock_names(name: str) -> frozenset[str]:
    """The names Plex may record the lock of a field or image (`written` name) under."""
    if name == "actor":
        return ACTOR_LOCK_NAMES
    return frozenset({IMAGE_LOCKS.get(name, name)})


def locks_we_set(ledger: LedgerEntry | None) -> frozenset[str]:
    """The Plex locks this plugin set on the scene's item, as far as the ledger knows.

    A ledger written before locks were recorded (`locks` is None) counts the locks of every
    field it wrote, and of each image it uploaded, as ours: that is what lock_synced_fields
    did then, and a user upgrading must not find every synced field suddenly protected."""
    if ledger is None:
        return frozenset()
    if ledger.locks is not None:
        return frozenset(ledger.locks)
    names = [n for n in ledger.written]
    names += [kind for kind in IMAGE_LOCKS if getattr(ledger, f"{kind}_hash", None)]
    return frozenset().union(*(lock_names(n) for n in names))


def locks_in_flight(desired: DesiredState, state: CurrentState, noted: LocksInFlight | None, *,
                    lock: bool) -> LocksInFlight | None:
    """The locks to note before a write of `desired` to the item `state` goes out (None: none).

    A superset of what the edit will set, planned without the edit: with `lock` the lock
    names of every field `desired` manages, and of each image it has (an upload is always
    locked), but never a field with a lock already on the item when it was read: that one is
    ours only if the ledger or an earlier write says so, and a person's must not become ours
    because a process was killed. Locks an earlier write that was never recorded (`noted`)
    set on this item, and which it still shows, stay in: they are ours until a ledger row
    holds them."""
    names = [f.name for f in FIELDS if lock and getattr(desired, f.attr) is not None]
    names += [kind for kind in IMAGE_LOCKS if getattr(desired, f"{kind}_url")]
    new = frozenset().union(*(lock_names(n) for n in names if not lock_names(n) & state.locked))
    kept = noted.locks & state.locked if noted is not None and noted.plex_key == state.rating_key else frozenset()
    return LocksInFlight(state.rating_key, new | kept) if new or kept else None


@dataclass(frozen=True)
class EditPlan:
    """The single edit to send, and a readable account of it for dry runs and summaries."""

    params: Mapping[str, Any] = field(default_factory=dict)
    changes: tuple[str, ...] = ()
    kept: tuple[str, ...] = ()
    written: Mapping[str, Any] = field(default_factory=dict)
    kept_locked: tuple[str, ...] = ()  # fields left alone: someone else locked them in Plex
    locks: tuple[str, ...] = ()  # the item's locks that are ours once this edit is sent
    uploads: tuple[str, ...] = ()  # the images of `uploads` that may be sent

    @property
    def empty(self) -> bool:
        return not self.params


# --- helpers ---------------------------------------------------------------------------


def _norm(value: Any) -> Any:
    """Compare absent and empty alike, numbers by value, text exactly."""
    if value is None or value == "":
        return ""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return round(float(value), 1)
    return value


def _fold(names: Iterable[str]) -> set[str]:
    return {n.casefold() for n in names}


def _show(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "\u2026'"


def removal_value(names: Iterable[str]) -> str:
    """plexapi's removal form: each name quoted, joined by commas (the URL quotes it again)."""
    return ",".join(quote(str(n)) for n in names)


def merge_list(
    current: tuple[str, ...],
    last: Collection[str] | None,
    desired: tuple[str, ...],
    mirror: bool,
    preserve: bool,
) -> tuple[str, ...]:
    """The list Plex should hold, keeping Plex's spelling of names it already has.

    `mirror` lists belong to Stash entirely; other lists keep what is not ours. With
    `preserve` and a ledger, only Stash's delta since `last` is applied to `current`.
    """
    if mirror and (not preserve or last is None):
        return desired
    last_f = _fold(last or ())
    gone = last_f - _fold(desired)
    base = [n for n in current if n.casefold() not in gone]
    adds = [n for n in desired if not (preserve and last is not None and n.casefold() in last_f)]
    have = _fold(base)
    return tuple(base + [n for n in adds if n.casefold() not in have])


# --- planning --------------------------------------------------------------------------


class _Plan:
    """Accumulates params, changes and the ledger view while fields are visited."""

    def __init__(self, current: CurrentState, lock: bool, ours: Collection[str] | None, overwrite: bool) -> None:
        self.current = current
        self.lock = lock
        self.params: dict[str, Any] = {}
        self.changes: list[str] = []
        self.kept: list[str] = []
        self.written: dict[str, Any] = {}
        self.kept_locked: list[str] = []
        self.overwrite = overwrite
        self.theirs = frozenset() if ours is None else current.locked - frozenset(ours)
        self.ours = set(current.locked - self.theirs)

    def theirs_locked(self, name: str) -> bool:
        """Someone else locked this field in Plex."""
        return bool(lock_names(name) & self.theirs)

    def left_alone(self, name: str, last: Mapping[str, Any], differs: bool, ours: Any = None) -> bool:
        """True when someone else's lock keeps us off this field. When Plex's value differs
        from Stash's (`differs`) the field is noted as kept and the ledger keeps what we last
        wrote; when it does not, the ledger records `ours` as if we had written it."""
        follows_title = name == "titleSort" and "title" in self.kept_locked
        if self.overwrite or not (self.theirs_locked(name) or follows_title):
            return False
        if differs:
            self.kept_locked.append(name)
            if name in last:
                self.written[name] = last[name]
        elif ours is not None:
            self.written[name] = ours
        return True

    def set_lock(self, name: str, wanted: bool) -> None:
        """Send the field's lock with its value: a lock someone else set stays on."""
        if self.theirs_locked(name):
            self.params[f"{name}.locked"] = 1
            return
        self.params[f"{name}.locked"] = 1 if wanted else 0
        if wanted:
            self.ours.add(name)
        else:
            self.ours -= lock_names(name)

    def ensure_lock(self, name: str) -> None:
        if self.lock and not (lock_names(name) & self.current.locked):
            self.params[f"{name}.locked"] = 1
            self.ours.add(name)

    def freeze(self, uploads: Collection[str] = ()) -> EditPlan:
        return EditPlan(dict(self.params), tuple(self.changes), tuple(self.kept), dict(self.written),
                        tuple(self.kept_locked), tuple(sorted(self.ours)), tuple(uploads))


def _scalar(plan: _Plan, name: str, want: Any, now: Any, last: Mapping[str, Any], preserve: bool) -> None:
    if want is None or (name == "title" and not want):
        return
    if plan.left_alone(name, last, _norm(now) != _norm(want), want):
        return
    if preserve and name in last and _norm(now) != _norm(last[name]) and _norm(now) != _norm(want):
        plan.kept.append(name)
        plan.written[name] = last[name]
        return
    plan.written[name] = want
    if _norm(now) != _norm(want):
        plan.params[f"{name}.value"] = want
        plan.set_lock(name, plan.lock)
        plan.changes.append(f"{name}: {_show(now)} -> {_show(want)}")
    else:
        plan.ensure_lock(name)


def _send_list(plan: _Plan, tag: str, result: tuple[str, ...], current: tuple[str, ...]) -> None:
    for i, name in enumerate(result):
        plan.params[f"{tag}[{i}].tag.tag"] = name
    removed = [n for n in current if n.casefold() not in _fold(result)]
    if removed:
        plan.params[f"{tag}[].tag.tag-"] = removal_value(removed)
    plan.set_lock(tag, plan.lock)
    plan.changes.append(f"{tag}: {_show(list(current))} -> {_show(list(result))}")


def _names_list(
    plan: _Plan, tag: str, want: tuple[str, ...] | None, now: tuple[str, ...],
    last: Mapping[str, Any], preserve: bool, mirror: bool, owned: Collection[str] = (),
) -> None:
    if want is None or plan.left_alone(tag, last, _fold(now) != _fold(want), list(want)):
        return
    result = merge_list(now, last.get(tag), want, mirror, preserve)
    stray = _fold(owned) - _fold(want)  # ours, yet not Stash's: whatever the ledger missed
    result = tuple(n for n in result if n.casefold() not in stray)
    plan.written[tag] = list(want)
    if _fold(result) != _fold(now):
        _send_list(plan, tag, result, now)
    else:
        plan.ensure_lock(tag)


def _actors(plan: _Plan, want: tuple[Actor, ...] | None, last: Mapping[str, Any], preserve: bool) -> None:
    if want is None:
        return
    now = plan.current.actors
    if plan.left_alone("actor", last, _fold(a.name for a in now) != _fold(a.name for a in want),
                       [[a.name, a.thumb] for a in want]):
        return
    last_pairs = last.get("actor")
    last_names = None if last_pairs is None else [p[0] for p in last_pairs]
    names = merge_list(tuple(a.name for a in now), last_names, tuple(a.name for a in want), True, preserve)
    plan.written["actor"] = [[a.name, a.thumb] for a in want]
    reference = {n.casefold(): t for n, t in last_pairs} if last_pairs is not None else {
        a.name.casefold(): a.thumb for a in now}
    # No photo of ours (None) leaves Plex's alone, and a resent list carries Plex's own.
    thumbs = {a.name.casefold(): a.thumb for a in now}
    thumbs.update({a.name.casefold(): a.thumb for a in want if a.thumb})
    thumb_moved = any((reference.get(a.name.casefold()) or None) != a.thumb for a in want
                      if a.thumb and a.name.casefold() in _fold(names))
    if _fold(names) == _fold(a.name for a in now) and not thumb_moved:
        plan.ensure_lock("actor")
        return
    _send_list(plan, "actor", names, tuple(a.name for a in now))
    for i, name in enumerate(names):
        if thumbs.get(name.casefold()):
            plan.params[f"actor[{i}].tag.thumb"] = thumbs[name.casefold()]


def plan_edit(
    desired: DesiredState,
    current: CurrentState,
    written: Mapping[str, Any] | None,
    *,
    lock: bool,
    preserve: bool,
    uploads: Collection[str] = (),
    ours: Collection[str] | None = None,
    overwrite_locks: bool = False,
    owned_collections: Collection[str] = (),
) -> EditPlan:
    """The one edit that brings `current` to `desired` under the rules above.

    `uploads` names the images the writer is about to upload ("poster", "art"), so their
    locks ride in this same request; `plan.uploads` are those it may send. `ours` lists the
    locks this plugin set (None: every lock counts as ours). `owned_collections`: the item's
    collections this plugin created (`sync_queue.collections`); their membership is Stash's
    alone, so the item leaves one it should not be in even when the ledger never learnt it
    joined (a write cut off before it was recorded).
    """
    last = written or {}
    plan = _Plan(current, lock, ours, overwrite_locks)
    for f in SCALARS:
        _scalar(plan, f.name, getattr(desired, f.attr), getattr(current, f.attr), last, preserve)
    _names_list(plan, "genre", desired.genres, current.genres, last, preserve, mirror=True)
    _actors(plan, desired.actors, last, preserve)
    _names_list(plan, "collection", desired.collections, current.collections, last, preserve, mirror=False,
                owned=owned_collections)
    allowed = []
    for image in uploads:
        if plan.left_alone(image, {}, True):
            continue
        allowed.append(image)
        plan.changes.append(f"{image}: new image")
        if IMAGE_LOCKS[image] not in current.locked:
            plan.params[f"{IMAGE_LOCKS[image]}.locked"] = 1
            plan.ours.add(IMAGE_LOCKS[image])
    return plan.freeze(allowed)


# --- the ledger's view -----------------------------------------------------------------


def canonical_state(desired: DesiredState, *, lock: bool, preserve: bool,
                    groups: Sequence[Any] = ()) -> dict[str, Any]:
    """The desired state as JSON types, with the settings that change what we would send.
    `groups` (`plex.collection_specs.group_state`) adds what the scene's group collections
    show; absent when the scene is in none, so such a scene's hash is what it always was."""
    data = _plain(desired)
    data["settings"] = {"lock": lock, "preserve": preserve}
    if groups:
        data["groups"] = [list(g) for g in groups]
    return data


def _plain(value: Any) -> Any:
    """`dataclasses.asdict` for these records (sequences as lists), without its deep copy of
    every leaf: computed for every scene of every Sync All and reconcile."""
    if isinstance(value, (str, int, float)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    names = _field_names(type(value))
    if names is not None:
        return {name: _plain(getattr(value, name)) for name in names}
    return value


@functools.cache
def _field_names(kind: type) -> tuple[str, ...] | None:
    """A dataclass's field names (None: not a dataclass), looked up once per class."""
    return tuple(f.name for f in fields(kind)) if is_dataclass(kind) else None


def state_hash(desired: DesiredState, *, lock: bool, preserve: bool, groups: Sequence[Any] = ()) -> str:
    """sha256 of `canonical_state`: equal hashes mean a sync would have nothing new to send."""
    text = json.dumps(canonical_state(desired, lock=lock, preserve=preserve, groups=groups), sort_keys=True,
                      ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
