"""Dry Run: what a sync would change in Plex, field by field, without writing anything.

Nothing is written anywhere: no PUT or POST to Plex (not even a scan request: the Plex side
is built with `trigger_plex_scan` off), no job, ledger row or cursor in our database (the
ledger is only read, and only when the database exists; opening it brings an older schema up
to date, as any run of this version would), no image downloaded from Stash.

Cost, as for reconcile: Plex is read through the paged section listings that build the
match index (`PlexSync.build_index(on_page=)`), and each listed item is kept as a
`gaps.Snapshot`. A scene the listing proves in sync (`gaps.classify` finds no gap: the
ledger holds this very state for this very item and the listing shows what we wrote) is
reported unchanged with no further request: a sync would skip it too. Every other matched
scene needs the full item, because listings cut tag lists short and carry no locks; those
are read in batches (`PlexSync.prefetch`, one request per 50 items) and planned by
`PlexSync.preview_state`, the very diff a sync sends, so the two cannot disagree. Stash is
read one bounded page at a time (id-keyed, no cursor stored), so memory stays flat in the
library size beside the index itself; the JSON output keeps at most `OUTPUT_SCENES` scenes.

Fields a sync would leave alone because someone else locked them in Plex are listed per
scene ("kept, locked in Plex"): from the planned edit for a scene read in full, from the
ledger's record of the last sync for one the listing proves in sync. A scene whose item
belongs to another scene (`plex.claims`, judged against the ledger) is shown as such.

Images: a sync compares downloaded bytes with what it uploaded last; a dry run downloads
nothing, so "poster" means the sync would download the cover and upload it unless the bytes
turn out the same as last time (a new source on the same item) or Stash has no image.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from base.errors import AmbiguousMatch, DuplicateItem, PlexNotFound
from base.settings import Settings
from plex.desired import DesiredState, desired_state
from plex.diff import EditPlan
from plex.fields import SCALARS, TAG_LISTS
from plex.images import image_steps
from plex.matcher import LibraryIndex, MatchKind, match
from plex.records import CurrentState, LedgerEntry
from plex.scene_state import ledger_hash
from reconciliation.collections import CollectionPreview
from reconciliation.gaps import Gap, Snapshot, classify
from reconciliation.reconcile import ledger_view
from stash.records import Scene
from sync_queue.ledger import LedgerRow

#: Scenes with a change (or no match) kept in the JSON output; the counts are always complete.
OUTPUT_SCENES = 500

#: Tag list as the edit names it -> the word users read.
LIST_WORDS = {f.name: f.word for f in TAG_LISTS}
IMAGE_WORDS = {"poster": "poster", "art": "background"}
#: A stand-in for image bytes: `image_steps` decides "would upload" without a download.
_NOT_DOWNLOADED = b"\0dry-run: not downloaded"


class Status:
    CHANGES = "changes"
    UNCHANGED = "unchanged"
    NOT_IN_PLEX = "not_in_plex"
    AMBIGUOUS = "ambiguous"
    DUPLICATE = "duplicate"


# --- pure: a plan as field changes --------------------------------------------------------


@dataclass(frozen=True)
class FieldChange:
    """One field a sync would touch: a scalar's value, a list's additions and removals, an
    image upload, or only its lock."""

    field: str
    before: Any = None
    after: Any = None
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    lock_only: bool = False
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"field": self.field}
        if self.lock_only:
            out["lock_only"] = True
        elif self.added or self.removed or self.field in LIST_WORDS:
            out.update(added=list(self.added), removed=list(self.removed),
                       before=list(self.before or ()), after=list(self.after or ()))
        elif self.field in IMAGE_WORDS:
            pass
        else:
            out.update(before=self.before, after=self.after)
        if self.detail:
            out["detail"] = self.detail
        return out


@dataclass(frozen=True)
class SceneDiff:
    """What a sync of one scene would do."""

    scene_id: int
    title: str
    status: str
    plex_key: str | None = None
    changes: tuple[FieldChange, ...] = ()
    kept: tuple[str, ...] = ()
    paths_tried: tuple[str, ...] = ()
    candidates: tuple[str, ...] = ()
    kept_locked: tuple[str, ...] = ()
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"scene_id": self.scene_id, "title": self.title, "status": self.status}
        if self.plex_key:
            out["plex_key"] = self.plex_key
        if self.changes:
            out["changes"] = [c.to_dict() for c in self.changes]
        if self.kept:
            out["kept"] = list(self.kept)
        if self.kept_locked:
            out["kept_locked"] = list(self.kept_locked)
        if self.message:
            out["message"] = self.message
        if self.status in (Status.NOT_IN_PLEX, Status.AMBIGUOUS):
            out["paths_tried"] = list(self.paths_tried)
        if self.candidates:
            out["candidates"] = list(self.candidates)
        return out


def _names(values: Iterable[Any]) -> tuple[str, ...]:
    return tuple(getattr(v, "name", v) for v in values)


def _sent_list(params: Mapping[str, Any], tag: str) -> tuple[str, ...]:
    out, i = [], 0
    while f"{tag}[{i}].tag.tag" in params:
        out.append(str(params[f"{tag}[{i}].tag.tag"]))
        i += 1
    return tuple(out)


def field_changes(plan: EditPlan, state: CurrentState, uploads: Sequence[tuple[str, str]] = ()) -> tuple[FieldChange, ...]:
    """Read the edit a sync would send back into field changes, before values from `state`.

    `uploads` are (image kind, why) pairs: "poster"/"art" and a short reason."""
    params = plan.params
    out: list[FieldChange] = []
    for scalar in SCALARS:
        name = scalar.name
        if f"{name}.value" in params:
            out.append(FieldChange(name, before=getattr(state, scalar.attr), after=params[f"{name}.value"]))
        elif f"{name}.locked" in params:
            out.append(FieldChange(name, lock_only=True))
    for tags in TAG_LISTS:
        tag, attr = tags.name, tags.attr
        sent = f"{tag}[0].tag.tag" in params or f"{tag}[].tag.tag-" in params
        if sent:
            before = _names(getattr(state, attr))
            after = _sent_list(params, tag)
            have, want = {n.casefold() for n in before}, {n.casefold() for n in after}
            added = tuple(n for n in after if n.casefold() not in have)
            removed = tuple(n for n in before if n.casefold() not in want)
            detail = "" if added or removed else "photos"
            out.append(FieldChange(tag, before=before, after=after, added=added, removed=removed, detail=detail))
        elif f"{tag}.locked" in params:
            out.append(FieldChange(tag, lock_only=True))
    for kind, why in uploads:
        out.append(FieldChange(kind, detail=why))
    return tuple(out)


def would_upload(desired: DesiredState, ledger: LedgerEntry | None, plex_key: str) -> tuple[tuple[str, str], ...]:
    """The images a sync would upload, decided by the sync's own rule without a download."""
    same_item = bool(ledger and ledger.plex_key == plex_key)
    steps = image_steps(desired, ledger, same_item, lambda url: _NOT_DOWNLOADED)
    out = []
    for step in steps:
        if step.data is None:
            continue
        had = getattr(ledger, f"{step.kind}_hash", None) if ledger and same_item else None
        out.append((step.kind, "new source, uploaded unless the bytes are the same" if had else "new"))
    return tuple(out)


# --- pure: words and counts ---------------------------------------------------------------


def _short(value: Any, limit: int = 40) -> str:
    """A value as the log line shows it: quoted text cut to `limit` characters, numbers as they are."""
    if value is None or value == "":
        return "(empty)"
    if isinstance(value, str) and len(value) > limit:
        value = value[: limit - 1] + "\u2026"
    return repr(value)


def change_words(change: FieldChange) -> str:
    if change.field in IMAGE_WORDS:
        return IMAGE_WORDS[change.field]
    word = LIST_WORDS.get(change.field)
    if word is None:
        return f"{change.field} {_short(change.before)} \u2192 {_short(change.after)}"
    if change.detail == "photos":
        return f"{word}: photos"
    parts = ([f"+{len(change.added)}"] if change.added else []) + ([f"\u2212{len(change.removed)}"] if change.removed else [])
    return f"{word} {' '.join(parts)}"


def scene_line(diff: SceneDiff) -> str:
    """One info line for a scene that would change or has no Plex item."""
    title = diff.title if len(diff.title) <= 60 else diff.title[:59] + "\u2026"
    head = f'scene {diff.scene_id} "{title}"' if title else f"scene {diff.scene_id}"
    if diff.status == Status.NOT_IN_PLEX:
        return f"{head}: not in Plex (tried {', '.join(diff.paths_tried) or 'no file'})"
    if diff.status == Status.AMBIGUOUS:
        return f"{head}: several Plex items share its file name ({'; '.join(diff.candidates)})"
    if diff.status == Status.DUPLICATE:
        return f"{head}: not written, {diff.message}"
    real = [c for c in diff.changes if not c.lock_only]
    locks = [c.field for c in diff.changes if c.lock_only]
    parts = [change_words(c) for c in real]
    if locks:
        parts.append("lock " + ", ".join(locks))
    if diff.kept:
        parts.append("kept as edited in Plex: " + ", ".join(diff.kept))
    if diff.kept_locked:
        parts.append(f"kept, locked in Plex: {', '.join(diff.kept_locked)}")
    return f"{head}: " + "; ".join(parts)


def change_kinds(diff: SceneDiff) -> list[str]:
    """The kinds of change one scene counts towards, each once. "would change" is every
    scene a sync would send anything for, a lock alone included."""
    if diff.status != Status.CHANGES:
        kinds = [{Status.UNCHANGED: "unchanged", Status.NOT_IN_PLEX: "not in Plex",
                  Status.AMBIGUOUS: "ambiguous match", Status.DUPLICATE: "item of another scene"}[diff.status]]
        return kinds + (["kept as edited in Plex"] if diff.kept else []) + (
            ["kept, locked in Plex"] if diff.kept_locked else [])
    kinds = ["would change"]
    words = LIST_WORDS
    for change in diff.changes:
        if change.lock_only:
            continue
        if change.field in IMAGE_WORDS:
            kinds.append(f"{IMAGE_WORDS[change.field]} would upload")
        elif change.field in words:
            kinds += ([f"{words[change.field]} added"] if change.added else []) + (
                [f"{words[change.field]} removed"] if change.removed else []) + (
                ["actor photos"] if change.detail == "photos" else [])
        else:
            kinds.append(f"{change.field} changed")
    if all(c.lock_only for c in diff.changes):
        kinds.append("locks only")
    if diff.kept:
        kinds.append("kept as edited in Plex")
    if diff.kept_locked:
        kinds.append("kept, locked in Plex")
    return list(dict.fromkeys(kinds))


#: Order of the counts in the summary line; kinds not listed follow in the order met.
KIND_ORDER = ("would change", "unchanged", "not in Plex", "ambiguous match",
              *(f"{f.name} changed" for f in SCALARS),
              *(kind for f in TAG_LISTS for kind in (f"{f.word} added", f"{f.word} removed")
                + (("actor photos",) if f.name == "actor" else ())),
              *(f"{word} would upload" for word in IMAGE_WORDS.values()), "locks only", "kept as edited in Plex",
              "kept, locked in Plex", "item of another scene")


def summary_line(scenes: int, counts: Mapping[str, int]) -> str:
    ordered = [k for k in KIND_ORDER if counts.get(k)] + [k for k in counts if k not in KIND_ORDER and counts[k]]
    body = ", ".join(f"{k} {counts[k]}" for k in ordered) or "nothing to check"
    return f"Stash2Plex dry run: {scenes} scenes checked: {body}. Nothing was written."


# --- the report ---------------------------------------------------------------------------


@dataclass
class DryRunReport:
    limit: int | None = None
    scenes: int = 0
    plex_items: int = 0
    reloaded: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    diffs: list[dict[str, Any]] = field(default_factory=list)
    omitted: int = 0
    collections: list[dict[str, Any]] = field(default_factory=list)
    collection_counts: Counter[str] = field(default_factory=Counter)

    def add_collection(self, verdict: CollectionPreview, log: Callable[[str], None]) -> None:
        """A collection's own changes (name, summary, poster, order, creation, deletion);
        its members joining or leaving are in the scenes' lines."""
        self.collection_counts[verdict.status] += 1
        if verdict.status in ("unchanged", "theirs"):
            return
        log(verdict.line())
        if len(self.collections) < OUTPUT_SCENES:
            self.collections.append(verdict.to_dict())

    def add(self, diff: SceneDiff, log: Callable[[str], None]) -> None:
        self.scenes += 1
        kinds = change_kinds(diff)
        self.counts.update(kinds)
        if kinds == ["unchanged"]:
            return
        log(scene_line(diff))
        if len(self.diffs) < OUTPUT_SCENES:
            self.diffs.append(diff.to_dict())
        else:
            self.omitted += 1

    def to_dict(self) -> dict[str, Any]:
        return {"scenes": self.scenes, "limit": self.limit, "plex_items": self.plex_items,
                "full_reads": self.reloaded, "counts": dict(self.counts), "scenes_changed": self.diffs,
                "scenes_omitted": self.omitted, "collections": self.collections,
                "collection_counts": dict(self.collection_counts), "written": 0}


# --- I/O: the pass ------------------------------------------------------------------------


def _title(scene: Scene, desired: DesiredState) -> str:
    return desired.title or scene.title or ""


def pages(scenes: Iterable[Scene], size: int, limit: int | None) -> Iterator[list[Scene]]:
    page: list[Scene] = []
    for n, scene in enumerate(scenes, start=1):
        page.append(scene)
        if len(page) >= size or (limit is not None and n >= limit):
            yield page
            page = []
        if limit is not None and n >= limit:
            break
    if page:
        yield page


def preview_page(plex: Any, settings: Settings, page: list[Scene], ledgers: Mapping[int, LedgerRow | None],
                 index: LibraryIndex, snaps: Mapping[str, Snapshot], now: float) -> tuple[list[SceneDiff], int]:
    """Judge one page: the listing answers what it can, the rest is read in batches and
    planned by the sync's own preview. Returns the diffs and how many items were read."""
    pm = settings.path_map
    judged: dict[int, SceneDiff] = {}
    todo: list[tuple[Scene, DesiredState, LedgerEntry | None]] = []
    for scene in page:
        desired = desired_state(scene, settings)
        entry = ledgers.get(scene.id)
        found = match(scene.files, index, pm, settings.strict_matching)
        snap = snaps.get(found.rating_key) if found.rating_key else None
        verdict = classify(ledger_hash(desired, settings, scene), desired, ledger_view(entry), found, snap,
                           preserve=settings.preserve_plex_edits, files=found.paths_tried)
        title = _title(scene, desired)
        if verdict.gap is None:
            record = LedgerEntry.from_any(entry.written) if entry else None
            judged[scene.id] = SceneDiff(scene.id, title, Status.UNCHANGED, found.rating_key,
                                         kept_locked=record.user_locked if record else ())
        elif verdict.gap is Gap.MISSING:
            status = Status.AMBIGUOUS if found.kind is MatchKind.AMBIGUOUS else Status.NOT_IN_PLEX
            judged[scene.id] = SceneDiff(scene.id, title, status, paths_tried=verdict.paths_tried,
                                         candidates=verdict.candidates)
        else:
            todo.append((scene, desired, LedgerEntry.from_any(entry.written) if entry else None))
    read = plex.prefetch([s for s, _, _ in todo], [led for _, _, led in todo], now=now) if todo else 0
    for scene, desired, led in todo:
        judged[scene.id] = preview_scene(plex, scene, desired, led, now)
    return [judged[s.id] for s in page], read


def preview_scene(plex: Any, scene: Scene, desired: DesiredState, ledger: LedgerEntry | None, now: float) -> SceneDiff:
    title = _title(scene, desired)
    images = [k for k, url in (("poster", desired.poster_url), ("art", desired.art_url)) if url]
    try:
        state, plan = plex.preview_state(scene, ledger, now, images)
    except AmbiguousMatch as exc:
        return SceneDiff(scene.id, title, Status.AMBIGUOUS, candidates=tuple(exc.candidates))
    except PlexNotFound as exc:
        return SceneDiff(scene.id, title, Status.NOT_IN_PLEX, paths_tried=tuple(exc.paths_tried))
    except DuplicateItem as exc:
        return SceneDiff(scene.id, title, Status.DUPLICATE, message=str(exc).split(": ", 1)[-1])
    would = would_upload(desired, ledger, state.rating_key)
    wanted = {kind for kind, _why in would}
    changes = field_changes(plan, state, [u for u in would if u[0] in plan.uploads])
    kept_locked = tuple(k for k in plan.kept_locked if k not in images or k in wanted)
    status = Status.CHANGES if changes else Status.UNCHANGED
    return SceneDiff(scene.id, title, status, state.rating_key, changes, tuple(plan.kept), kept_locked=kept_locked)


class LedgerReader:
    """The ledger, read only, through one connection for the whole run; before the first
    sync ever there is no database, and none is created for a dry run."""

    def __init__(self, data_dir: Any) -> None:
        from sync_queue.db import db_path
        from sync_queue.jobs import JobQueue

        self._queue = JobQueue(data_dir) if db_path(data_dir).exists() else None

    @property
    def queue(self) -> Any:
        """The queue the ledger is read through; None before the first sync ever."""
        return self._queue

    def rows(self, scene_ids: Iterable[int]) -> dict[int, LedgerRow | None]:
        if self._queue is None:
            return {}
        return {sid: self._queue.ledger.get(sid) for sid in scene_ids}

    def close(self) -> None:
        if self._queue is not None:
            self._queue.close(compact=False)
