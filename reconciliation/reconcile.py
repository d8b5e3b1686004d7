"""Reconcile: find the gaps between Stash and Plex and queue only the real ones.

Cost, whatever the library size: Plex is read through the paged section listings that
build the match index anyway (`PlexSync.build_index(on_page=)`, one pass, `PAGE_SIZE` items
a request); Stash through `LibraryPass`, id-keyed pages like Sync All's but larger
(`STASH_PAGE`), the next asked for while this one is judged. No request is made per scene.
Each listed item is kept as a `gaps.Snapshot` (digests, not text), so memory grows by tens
of bytes per Plex item beside the index itself.

What is a gap, and which are queued, is `reconciliation.gaps` (pure). This module only
reads, hands each scene to `gaps.classify`, queues, and reports: counts by gap type in the
task's output and one info line per type.

`reconcile_pass` takes the queue, the state store and the two readers; it takes no lock and
never drains. The Reconcile tasks (`tasks.reconcile`) wrap it with the processor lock and the
core's drain; the background worker runs it as the auto-reconcile under the lock it holds.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from base.protocol import StashLog
from base.settings import Settings
from plex import xmlread
from plex.desired import desired_state
from plex.matcher import LibraryIndex, match
from plex.records import LedgerEntry
from plex.scene_state import ledger_hash
from reconciliation.bulk import RECENT_WINDOW, LibraryPass
from reconciliation.collections import CollectionCheck, reconcile_collections
from reconciliation.gaps import (
    BY_LEDGER_RULE,
    GAP_ORDER,
    Gap,
    LedgerView,
    Snapshot,
    Verdict,
    classify,
    reason,
    snapshot,
)
from stash.client import StashClient
from stash.records import Scene
from sync_queue.jobs import JobQueue
from sync_queue.ledger import LedgerRow
from sync_queue.state import LAST_RECONCILE, LOCKS_FORGOTTEN, StateStore

#: Task mode -> window in seconds (None: the whole library, resumable).
SCOPES: dict[str, float | None] = {
    "reconcile_all": None,
    "reconcile_recent": RECENT_WINDOW,
    "reconcile_7days": 7 * 86400.0,
}
#: Share of the listing progress spent on Plex's listing; Stash's pages get the rest.
PLEX_SHARE = 0.4
#: Scenes per Stash page, more than Sync All's (`bulk.PAGE`): on an unchanged library a
#: reconcile queues next to nothing per page, and each request has a cost of its own (Stash
#: parsing and resolving it, the plugin sending and decoding it). Two pages are in memory at
#: a time (one read ahead); at 20,000 scenes, 500 cost 9 MB more than 200 at the peak, 1,000
#: cost 31 MB for little more speed.
STASH_PAGE = 500
#: Scenes listed per gap type in the output (the counts are always complete).
EXAMPLES = 50
LOG_EXAMPLES = 5

LABELS = {
    Gap.MISSING: "missing in Plex",
    Gap.NEVER_SYNCED: "never synced",
    Gap.STALE: "stale (changed in Stash since the last sync)",
    Gap.EMPTY: "empty in Plex (fields Stash has are blank or the file name)",
    Gap.DRIFTED: "drifted (changed in Plex since the last sync)",
}


@dataclass
class ReconcileReport:
    scope: str
    scenes: int = 0
    plex_items: int = 0
    queued: int = 0
    counts: dict[Gap, int] = field(default_factory=lambda: {g: 0 for g in GAP_ORDER})
    kept: dict[Gap, int] = field(default_factory=lambda: {g: 0 for g in GAP_ORDER})
    examples: dict[Gap, list[dict[str, Any]]] = field(default_factory=lambda: {g: [] for g in GAP_ORDER})
    completed: bool = False
    collections: CollectionCheck | None = None

    def add(self, scene_id: int, verdict: Verdict) -> None:
        if verdict.gap is None:
            return
        self.counts[verdict.gap] += 1
        if verdict.kept:
            self.kept[verdict.gap] += 1
        if len(self.examples[verdict.gap]) < EXAMPLES:
            example: dict[str, Any] = {"scene_id": scene_id}
            if verdict.fields:
                example["fields"] = list(verdict.fields)
            if verdict.gap is Gap.MISSING:
                example["paths_tried"] = list(verdict.paths_tried)
                if verdict.candidates:
                    example["candidates"] = list(verdict.candidates)
            if verdict.kept:
                example["kept"] = True
            self.examples[verdict.gap].append(example)

    @property
    def in_sync(self) -> int:
        return self.scenes - sum(self.counts.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "scope": self.scope, "scenes": self.scenes, "plex_items": self.plex_items,
            "in_sync": self.in_sync, "queued": self.queued, "completed": self.completed,
            "gaps": {g.value: self.counts[g] for g in GAP_ORDER},
            "kept": {g.value: self.kept[g] for g in GAP_ORDER if self.kept[g]},
            "examples": {g.value: self.examples[g] for g in GAP_ORDER if self.examples[g]},
            **({"collections": self.collections.to_dict()} if self.collections else {}),
        }

    def lines(self) -> list[str]:
        """One info line per gap type, then the total."""
        out = []
        for gap in GAP_ORDER:
            n = self.counts[gap]
            text = f"Stash2Plex reconcile: {n} {LABELS[gap]}"
            if self.kept[gap]:
                text += f", {self.kept[gap]} kept (preserve_plex_edits is on)"
            shown = [_example_text(e) for e in self.examples[gap][:LOG_EXAMPLES]]
            if shown:
                more = f"; and {n - len(shown)} more" if n > len(shown) else ""
                text += ": " + "; ".join(shown) + more
            out.append(text + ".")
        if self.collections and self.collections.checked:
            out.append(self.collections.line())
        out.append(f"Stash2Plex reconcile: {self.scenes} scenes checked against {self.plex_items} Plex items, "
                   f"{self.in_sync} in sync, {self.queued} queued.")
        return out


def _example_text(example: dict[str, Any]) -> str:
    text = f"scene {example['scene_id']}"
    if "paths_tried" in example:
        text += " (tried " + (", ".join(example["paths_tried"]) or "no file") + ")"
    if "fields" in example:
        text += " (" + ", ".join(example["fields"]) + ")"
    return text


# --- reading --------------------------------------------------------------------------------


def ledger_view(entry: LedgerRow | None) -> LedgerView | None:
    if entry is None:
        return None
    record = LedgerEntry.from_any(entry.written)
    written = record.written if record is not None else {}
    user_locked = frozenset(record.user_locked) if record is not None else frozenset()
    return LedgerView(entry.fields_hash, written, entry.plex_key, entry.lost, user_locked)


class ListingReader(Protocol):
    """The Plex side a pass reads: the paged listings that build the match index."""

    def build_index(self, now: float, on_page: Callable[[Any], None] | None = None) -> LibraryIndex: ...


def read_listing(plex: ListingReader, now: float,
                 progress: Callable[[float], None]) -> tuple[LibraryIndex, dict[str, Snapshot]]:
    """Build the sync's match index from the paged listings and keep a snapshot per item:
    one pass over Plex serves both matching and judging (reconcile and the dry run).

    A page's items are reduced to snapshots in a thread while the next page is asked for, so
    Plex answering and our own work overlap; one page at a time, so at most two are held."""
    from concurrent.futures import Future, ThreadPoolExecutor

    snaps: dict[str, Snapshot] = {}
    seen = [0]
    judging: list[Future[None]] = []

    def take(videos: list[Any]) -> None:
        for video in videos:
            snaps[str(video.get("ratingKey"))] = snapshot(xmlread.listed_state(video))

    with ThreadPoolExecutor(1, thread_name_prefix="plex-snapshots") as pool:
        def on_page(root: Any) -> None:
            videos = [v for v in root if v.tag == "Video" and v.get("ratingKey")]
            if judging:
                judging.pop().result()
            judging.append(pool.submit(take, videos))
            seen[0] += len(videos)
            progress(min(seen[0] / max(xmlread.total_size(root, len(videos)), 1), 1.0))

        index = plex.build_index(now, on_page=on_page)
        for pending in judging:
            pending.result()
    return index, snaps


# --- the pass -------------------------------------------------------------------------------


def reconcile_pass(queue: JobQueue, state: StateStore, plex: ListingReader, stash: StashClient,
                   settings: Settings, log: StashLog, scope: str, now: float,
                   progress: Callable[[float], None] = lambda f: None,
                   should_stop: Callable[[], bool] = lambda: False, page_size: int = STASH_PAGE) -> ReconcileReport:
    """Classify every scene in `scope` and queue its gap; the caller drains.

    Stops between pages when `should_stop()` (a handover): `completed` stays False and a
    whole-library pass resumes from its cursor next time.
    """
    report = ReconcileReport(scope)
    index, snaps = read_listing(plex, now, lambda f: progress(PLEX_SHARE * f))
    report.plex_items = len(snaps)
    listing = LibraryPass(stash, state, scope, SCOPES[scope], now, page_size)
    if listing.after:
        log.info(f"Stash2Plex: resuming {scope} after scene {listing.after}.")
    with _settled():
        for page in listing.listed_pages():
            report.queued += _reconcile_page(queue, settings, page, index, snaps, report, now)
            report.scenes = listing.seen
            progress(PLEX_SHARE + (1 - PLEX_SHARE) * listing.fraction)
            if should_stop():
                listing.handled([scene for scene, _raw in page])
                return report
    report.completed = True
    conn = getattr(plex, "conn", None)
    if conn is not None:
        report.collections = reconcile_collections(queue, conn, now, snaps, full=SCOPES[scope] is None)
        report.queued += report.collections.queued
    return report


@contextmanager
def _settled() -> Iterator[None]:
    """What the process holds now (the listing's index and snapshots above all) is left out
    of the garbage collector's passes until the block ends. Judging the scenes makes many
    short-lived objects, and each full pass walked every listed item again: the collector
    took 7 of a 100,000-scene reconcile's 59 CPU seconds, 3.4 with this. Nothing is kept
    longer: the objects return to the collector at the end, cycles among them included."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _reconcile_page(queue: JobQueue, settings: Settings, page: list[tuple[Scene, Mapping[str, Any]]],
                    index: LibraryIndex, snaps: dict[str, Snapshot], report: ReconcileReport, now: float) -> int:
    """Classify one page of scenes and queue its gaps; how many were queued. A job the
    ledger rule queues carries the scene as listed, so the drain does not read it again."""
    by_rule: dict[Gap, list[tuple[int, str, Mapping[str, Any]]]] = {}
    forced: list[tuple[int, Gap]] = []
    pm = settings.path_map
    entries = queue.ledger.get_many(scene.id for scene, _raw in page)
    for scene, raw in page:
        desired = desired_state(scene, settings)
        digest = ledger_hash(desired, settings, scene)
        entry = entries.get(scene.id)
        found = match(scene.files, index, pm, settings.strict_matching)
        snap = snaps.get(found.rating_key) if found.rating_key else None
        verdict = classify(digest, desired, ledger_view(entry), found, snap,
                           preserve=settings.preserve_plex_edits, files=found.paths_tried)
        report.add(scene.id, verdict)
        if verdict.gap is None or not verdict.queue:
            continue
        if verdict.gap in BY_LEDGER_RULE:
            if verdict.gap is Gap.MISSING and entry is not None and not entry.lost:
                queue.ledger.mark_lost(scene.id)  # the ledger rule now queues it, once per state
            by_rule.setdefault(verdict.gap, []).append((scene.id, digest, raw))
        else:
            forced.append((scene.id, verdict.gap))
    queued = sum(queue.enqueue_changed_many(states, reason(gap), now) for gap, states in by_rule.items())
    for scene_id, gap in forced:
        queue.enqueue(scene_id, reason(gap), now, urgent=False)
    return queued + len(forced)


def record_reconcile(state: StateStore, report: ReconcileReport, now: float) -> None:
    """A finished whole-library pass is what auto-reconcile waits an interval after. It also
    ends the time after a lost database when locks on unsynced items count as ours: the
    pass queued every scene, and this process's drain still syncs them that way."""
    if report.completed and SCOPES[report.scope] is None:
        state.put(LAST_RECONCILE, repr(now))
        state.put(LOCKS_FORGOTTEN, None)


