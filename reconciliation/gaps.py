"""Which kind of gap lies between a Stash scene and its Plex item. Pure: no I/O, no clock.

Reconcile reads Plex only through paged section listings (`/all`), never one request per
scene. A listing shows every scalar field in full but cuts tag lists short and shows no
locks, so every judgement here uses only what a listing can prove:

* **never synced**: the ledger has no row for the scene, or its row is for an item Plex no
  longer has (marked lost, or the file is now under another item's key).
* **stale**: the Stash state hash differs from the one the ledger recorded.
* **missing**: no listed Plex item holds any of the scene's files (the mapped paths tried
  are listed, and any same-named candidates).
* **empty**: the item lacks what Stash has: no title or the title Plex derives from the
  file name, no summary, studio, tagline or date, no genre or actor at all, where Stash has
  one. That is what an agent refresh leaves behind on unlocked fields.
* **drifted**: a scalar differs from what we last wrote (the ledger's `written` map), or a
  listed genre or actor is one we never wrote. Listed tags are a prefix of the real list,
  so a tag removed in Plex cannot be seen here; a tag added there can.

Fields our last sync left alone because someone else locked them in Plex (the ledger's
`user_locked`) are neither empty nor drifted: the sync would leave them alone again, so
queueing them would repeat on every pass.

One scene has one gap, the first that applies in `GAP_ORDER`: a sync for it repairs the
later kinds too. Never synced, stale and missing go through the ledger rule (the queue
skips a state that is in flight or was dead-lettered). Empty and drifted have an unchanged
state hash, so they are queued explicitly, except under `preserve_plex_edits`: the sync's
three-way rule keeps a Plex value that differs from what we last wrote, so queueing would
change nothing and repeat on every pass. Those are reported as kept.

To keep 100,000 listed items small in memory, the driver holds each as a `Snapshot`:
8-byte digests of the normalised values and a few flags, not the text itself. The digests
hold within one process only (`digest`), which is where snapshots live.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from base.unicode_forms import nfc
from plex import fields
from plex.desired import DesiredState
from plex.matcher import MatchResult
from plex.pathmap import basename_key
from plex.records import CurrentState


class Gap(str, Enum):
    MISSING = "missing"
    NEVER_SYNCED = "never_synced"
    STALE = "stale"
    EMPTY = "empty"
    DRIFTED = "drifted"


GAP_ORDER: tuple[Gap, ...] = (Gap.MISSING, Gap.NEVER_SYNCED, Gap.STALE, Gap.EMPTY, Gap.DRIFTED)
#: Gaps the ledger rule queues (the state hash or the lost mark says so).
BY_LEDGER_RULE = frozenset({Gap.MISSING, Gap.NEVER_SYNCED, Gap.STALE})

#: Scalar fields as the ledger's `written` names them, in `plex.fields` order.
SCALARS: tuple[str, ...] = tuple(f.name for f in fields.SCALARS)
#: Tag lists whose listed names must all be ones we wrote.
LISTS: tuple[str, ...] = tuple(f.name for f in fields.TAG_LISTS if f.drift_gap)
#: (DesiredState attribute, written/listing name) of each field checked for "empty".
EMPTY_CHECKS: tuple[tuple[str, str], ...] = tuple((f.attr, f.name) for f in fields.FIELDS if f.empty_gap)
_DIGEST = 8


def listed_value(item: CurrentState, name: str) -> Any:
    """A field of a listed item by its Plex name; a tag list as its names."""
    value = getattr(item, fields.BY_NAME[name].attr)
    return tuple(getattr(v, "name", v) for v in value) if isinstance(value, tuple) else value


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A listed item (`CurrentState` read from a listing) reduced to what the decisions compare: a digest per scalar (in `SCALARS`
    order), the digests of listed tag names per list, and the names of empty fields."""

    rating_key: str
    scalars: bytes
    tags: tuple[bytes, ...]  # per LISTS entry: concatenated digests of the listed names
    empty: frozenset[str]


def digest(value: Any) -> bytes:
    """8 bytes standing for the value as the diff compares it: absent and empty alike,
    numbers by their one-decimal value, text exactly.

    They are Python's own string hash (SipHash with a key drawn per process): a snapshot is
    compared only within the run that took it, and a reconcile takes about thirty per
    scene, where a cryptographic digest cost several times more."""
    if value is None or value == "":
        text = ""
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        text = repr(round(float(value), 1))
    else:
        text = str(value)
    return hash(text).to_bytes(_DIGEST, "little", signed=True)


def _name_digests(names: Iterable[str]) -> set[bytes]:
    return {digest(n.casefold()) for n in names if n}


def _tag_digests(names: Iterable[str]) -> bytes:
    return b"".join(sorted(_name_digests(names)))


def _chunks(data: bytes) -> set[bytes]:
    return {data[i:i + _DIGEST] for i in range(0, len(data), _DIGEST)}


def _stem(path: str) -> str:
    name = basename_key(path)
    return name.rsplit(".", 1)[0] if "." in name else name


#: What `str.isalnum` refuses (`\w` is exactly isalnum plus "_").
_NOT_ALNUM = re.compile(r"[\W_]+")


def _squash(text: str) -> str:
    return _NOT_ALNUM.sub("", nfc(text).casefold())


def title_is_placeholder(title: str, files: Sequence[str]) -> bool:
    """No title, or the one Plex derives from a file name when nothing else is known.

    Compared on letters and digits only, since a scanner may turn dots or underscores of the
    file name into spaces."""
    text = _squash(title)
    return not text or any(text == _squash(_stem(f)) for f in files)


def snapshot(item: CurrentState) -> Snapshot:
    empty = {name for name in SCALARS if listed_value(item, name) in (None, "")}
    empty |= {name for name in LISTS if not listed_value(item, name)}
    if title_is_placeholder(item.title, item.files):
        empty.add("title")
    return Snapshot(
        rating_key=item.rating_key,
        scalars=b"".join(digest(listed_value(item, name)) for name in SCALARS),
        tags=tuple(_tag_digests(listed_value(item, name)) for name in LISTS),
        empty=frozenset(empty),
    )


def _has(value: Any) -> bool:
    return value not in (None, "", ())


def empty_fields(desired: DesiredState, snap: Snapshot, files: Sequence[str] = ()) -> tuple[str, ...]:
    """Fields Stash has a value for that the listed item shows empty.

    A Stash title that is itself the file name is no loss when Plex shows the file name."""
    out = []
    for attr, name in EMPTY_CHECKS:
        want = getattr(desired, attr)
        if not _has(want) or name not in snap.empty:
            continue
        if name == "title" and title_is_placeholder(str(want), files):
            continue
        out.append(name)
    return tuple(out)


def _written_names(name: str, value: Any) -> list[str]:
    if name == "actor":  # [[name, thumb], ...]
        return [pair[0] for pair in value or () if pair]
    return [str(v) for v in value or ()]


def _scalar(snap: Snapshot, i: int) -> bytes:
    return snap.scalars[i * _DIGEST:(i + 1) * _DIGEST]


def shows(snap: Snapshot, name: str, value: Any) -> bool:
    """Whether the listed item shows `value` in the scalar `name` (compared as the diff does)."""
    return digest(value) == _scalar(snap, SCALARS.index(name))


def drifted_fields(written: Mapping[str, Any], snap: Snapshot) -> tuple[str, ...]:
    """Fields where the listed item differs from what our last sync wrote."""
    out = []
    for i, name in enumerate(SCALARS):
        if name in written and digest(written[name]) != _scalar(snap, i):
            out.append(name)
    for i, name in enumerate(LISTS):
        if name not in written:
            continue
        ours = _name_digests(_written_names(name, written[name]))
        if not _chunks(snap.tags[i]) <= ours:
            out.append(name)
    return tuple(out)


@dataclass(frozen=True)
class Verdict:
    """One scene's gap (None: in sync), whether to queue it, and what shows it."""

    gap: Gap | None
    queue: bool = False
    fields: tuple[str, ...] = ()
    paths_tried: tuple[str, ...] = ()
    candidates: tuple[str, ...] = ()

    @property
    def kept(self) -> bool:
        """A gap we report but leave alone (a Plex edit under preserve_plex_edits)."""
        return self.gap is not None and not self.queue


IN_SYNC = Verdict(None)


@dataclass(frozen=True)
class LedgerView:
    """What the ledger says about a scene, as classification needs it."""

    state_hash: str
    written: Mapping[str, Any]
    plex_key: str | None = None
    lost: bool = False
    user_locked: frozenset[str] = frozenset()


def classify(state_hash: str, desired: DesiredState, ledger: LedgerView | None, found: MatchResult,
             snap: Snapshot | None, *, preserve: bool, files: Sequence[str] = ()) -> Verdict:
    """The scene's gap under the rules of the module docstring.

    `found` is the match against the listing index, `snap` the listed item it points to
    (None when the index has no such item), `files` the scene's paths as Plex sees them.
    """
    if not found.found or snap is None:
        return Verdict(Gap.MISSING, True, paths_tried=found.paths_tried, candidates=found.candidates)
    if ledger is None or ledger.lost or (ledger.plex_key and ledger.plex_key != snap.rating_key):
        # No sync ever reached the item Plex has now (it was lost, or re-created under a new key).
        return Verdict(Gap.NEVER_SYNCED, True)
    if ledger.state_hash != state_hash:
        return Verdict(Gap.STALE, True)
    empty = tuple(f for f in empty_fields(desired, snap, files) if f not in ledger.user_locked)
    if empty:
        return Verdict(Gap.EMPTY, not preserve, fields=empty)
    drifted = tuple(f for f in drifted_fields(ledger.written, snap) if f not in ledger.user_locked)
    if drifted:
        return Verdict(Gap.DRIFTED, not preserve, fields=drifted)
    return IN_SYNC


def reason(gap: Gap) -> str:
    """The reason recorded on a job this gap queued."""
    return f"reconcile_{gap.value}"
