"""Sync All's listing pass: page through Stash, enqueue only what differs.

A scene is enqueued only when the state it asks Plex for differs from what the ledger says
we last wrote (or it was never synced, or Plex lost it): running Sync All twice on an
unchanged library enqueues nothing the second time, so no pass can keep requeueing a scene.
The state hash needs no Plex request, so the listing pass costs Stash pages only.

Resumable: the id of the last scene whose page was enqueued is kept in the state store, so
a cancelled Sync All (Stash kills it with SIGKILL) continues after it when run again.
Memory stays flat: one page of scenes at a time, enqueued in one transaction. Each job
carries its scene as listed, so the drain reads no scene a second time. The drain takes
the first page's jobs while later pages are listed (`SyncPass`); the tasks themselves
(`tasks.sync`) add the processor lock and the drain.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, TypeVar

from base.protocol import StashLog
from base.settings import Settings
from plex.scene_state import state_and_hash
from stash.client import StashClient
from stash.records import Scene
from stash.times import parse_stamp, stash_stamp
from sync_queue.jobs import JobQueue
from sync_queue.state import StateStore

T = TypeVar("T")

PAGE = 200
#: Sync All's pages, listed while the drain runs: about one drain batch each, so a page and
#: the drain's own working set are in memory together (pages of `PAGE` took the plugin from
#: 76 to 79 MiB at 20,000 scenes), and the drain thread lists in short turns between batches.
SYNC_PAGE = 50
#: Stash compares timestamp filters as text in its own zone; ask this much wider, then check.
ZONE_SLACK = 14 * 3600.0
RECENT_WINDOW = 86400.0


def scene_state(scene: Scene, settings: Settings) -> str:
    """The ledger hash of what a sync of `scene` would write: equal to the one a sync stores."""
    return state_and_hash(scene, settings)[1]


def recent_filter(now: float, window: float) -> dict[str, Any]:
    return {"updated_at": {"value": stash_stamp(now - window - ZONE_SLACK), "modifier": "GREATER_THAN"}}


def changed_within(scenes: Iterable[Scene], since: float) -> Iterator[Scene]:
    """Scenes created or updated at or after `since` (a created scene has updated_at >= it)."""
    for scene in scenes:
        stamp = parse_stamp(scene.updated_at) or parse_stamp(scene.created_at)
        if stamp is None or stamp >= since:
            yield scene


def chunked(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """`items` in lists of `size` (the last may be shorter), read lazily: memory stays one
    page whatever the library's size."""
    chunk: list[T] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def cursor_key(reason: str) -> str:
    return f"bulk_cursor.{reason}"


class LibraryPass:
    """The Stash side of a whole-library pass: pages of scenes, the window, the resumable cursor.

    Sync All, Sync Recent and reconcile all read Stash through this one object. A pass over
    the whole library (`window` None) resumes after the scene id stored under its `reason`,
    and moves the cursor only once the caller has handled a page (the generator resumes
    after the caller's loop body; a caller leaving the loop early calls `handled`), so a
    pass killed mid-page redoes that page, never skips it.
    A windowed pass ("recent") asks Stash wider than the window (its filter compares text in
    its own zone) and keeps only scenes whose own timestamps fall inside it.
    """

    def __init__(self, stash: StashClient, state: StateStore, reason: str, window: float | None,
                 now: float, page_size: int = PAGE) -> None:
        self.stash, self.state, self.reason, self.window = stash, state, reason, window
        self.since = now - window if window else None
        self.filter = recent_filter(now, window) if window else None
        self.page_size = page_size
        self.key = cursor_key(reason)
        self.after = int(state.get(self.key) or 0) if window is None else 0
        self.total = max(stash.count_scenes(self.filter), 1)
        self.seen = 0

    def pages(self) -> Iterator[list[Scene]]:
        for page in self.listed_pages():
            yield [scene for scene, _raw in page]

    def listed_pages(self) -> Iterator[list[tuple[Scene, Mapping[str, Any]]]]:
        """`pages` with each scene's answer as Stash gave it, for a job to carry to the drain."""
        listing: Iterable[tuple[Scene, Mapping[str, Any]]] = self.stash.iter_listing(
            self.filter, after_id=self.after, page_size=self.page_size, ahead=True)
        if self.since is not None:
            since = self.since
            listing = ((scene, raw) for scene, raw in listing if any(changed_within((scene,), since)))
        for page in chunked(listing, self.page_size):
            self.seen += len(page)
            yield page
            self.handled([scene for scene, _raw in page])
        self.state.put(self.key, None)

    def handled(self, page: list[Scene]) -> None:
        """Move the cursor past `page`; a caller that stops early calls it for its last page."""
        if self.window is None and page:
            self.state.put(self.key, str(page[-1].id))

    @property
    def fraction(self) -> float:
        return min(self.seen / self.total, 1.0)


class SyncPass:
    """Sync All's (or Sync Recent's) listing, a page at a time: every scene in the window whose
    state differs from the ledger is queued, stamped with `clock()` as its page is queued.

    The drain takes each page's jobs while later pages are still being read (`step`, as
    `worker.core.Listing`): the first writes go out after one page, not after the whole
    library was listed. The task runs what the drain left unlisted (`finish`), so a drain
    that stopped early (an outage) still leaves every differing scene queued.
    """

    def __init__(self, queue: JobQueue, state: StateStore, stash: StashClient, settings: Settings, log: StashLog,
                 reason: str, window: float | None, clock: Callable[[], float],
                 progress: Callable[[float], None] = lambda f: None) -> None:
        self.queue, self.settings, self.log, self.reason = queue, settings, log, reason
        self.clock, self.progress = clock, progress
        self.listing = LibraryPass(stash, state, reason, window, clock(), page_size=SYNC_PAGE)
        self.queued = 0
        self._pages: Iterator[list[tuple[Scene, Mapping[str, Any]]]] | None = self.listing.listed_pages()
        if self.listing.after:
            log.info(f"Stash2Plex: resuming {reason} after scene {self.listing.after}.")

    def step(self) -> int | None:
        """List and queue the next page; the jobs it queued, or None once the listing is done."""
        if self._pages is None:
            return None
        page = next(self._pages, None)
        if page is None:
            self._pages = None
            self._done()
            return None
        # Each job carries the scene as listed: the drain checks it is still current instead
        # of reading it again (a save since the listing is read anew, and wins).
        states = [(scene.id, scene_state(scene, self.settings), raw) for scene, raw in page]
        queued = self.queue.enqueue_changed_many(states, self.reason, self.clock())
        self.queued += queued
        self.progress(self.listing.fraction)
        return queued

    def pending(self) -> int:
        """Jobs the pages not yet listed should queue, projected from those listed so far, so
        a progress bar over the jobs does not run ahead of the listing."""
        if self._pages is None:
            return 0
        seen = self.listing.seen
        unseen = max(self.listing.total - seen, 0)
        return unseen if not seen else round(unseen * self.queued / seen)

    def finish(self) -> dict[str, Any]:
        """The rest of the listing (none when the drain read it all); the pass's counts."""
        while self.step() is not None:
            pass
        seen = self.listing.seen
        return {"scenes": seen, "queued": self.queued, "unchanged": seen - self.queued}

    def _done(self) -> None:
        seen = self.listing.seen
        self.log.info(f"Stash2Plex: {seen} scenes read from Stash, {self.queued} queued, "
                      f"{seen - self.queued} unchanged since their last sync.")
