"""One scene to its Plex item: match, one full read, one edit, image uploads only when changed.

Request budget (checked by `bench/bench_plex_requests.py` against the emulated Plex):

* **index**: paged `/library/sections/{id}/all` listings of the configured movie sections,
  built once per process and rebuilt when older than `INDEX_MAX_AGE`. A path the index
  does not hold is re-read narrowly (`/all?type=1&file=<file name>`, one request per
  section) before we conclude anything; `file=` only narrows, `Part@file` is compared
  exactly (in NFC, see `plex.pathmap`). Plex's filter compares the name as stored, so a
  name that differs between NFC and NFD is asked for in the form this server holds (seen
  in any listing), and in both while that is not known (one more request). Scan requests
  name the folder the same way. A miss is remembered for `MISS_TTL` seconds only. Until
  `NARROW_LOOKUPS`
  scenes were looked up, the full index is not built at all: a single hook job costs one
  narrow lookup instead of a whole-library listing.
* **a scene we synced before** (ledger has its item key) skips matching: its one read
  proves the item still holds one of the scene's files.
* **one read**: `GET /library/metadata/{key}`. Listings truncate tag lists and carry no
  locks, so they never feed the diff. The drain reads a batch's items together with Plex's
  comma form `GET /library/metadata/1,2,3` (`read_batch`: several full items in one
  answer), each used once by its scene; the dry run's `prefetch()` does the same, an item
  kept for `PREFETCH_TTL` seconds.
* **one edit**: every changed field in one `PUT /library/sections/{id}/all?...` (the query
  plexapi's `edit()` would build, in the form it goes out in: `connection.query_string`),
  none when nothing changed.
* **one upload per changed image**, the bytes downloaded from Stash with its auth by the
  injected `fetch_image`. Downloads happen before any write, so a failed download leaves
  Plex untouched. An image Stash does not have (`fetch_image` returns None: a 404) is
  skipped, not an error: Plex keeps whatever it shows, and the ledger records nothing for
  it, so a later screenshot is uploaded when it appears.

A sync is two halves: `prepare` (find, read, ownership: it reads the ledger, so it runs on
the drain's thread) and `write` (downloads, edit, uploads: only the two servers, so the
drain runs it on its small pool). Between them the caller notes the locks the write may set
(`PreparedSync.in_flight`), so they stay ours should the process die before the write is
recorded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, Protocol
from urllib.parse import quote, urlencode

from base.errors import AmbiguousMatch, DuplicateItem, PlexNotFound
from base.settings import Settings
from base.unicode_forms import form_of, name_forms
from plex import claims, xmlread
from plex.collection_plan import RELEASED
from plex.collection_specs import scene_collections
from plex.collections import CollectionBatch, renamed
from plex.connection import PlexConnection, query_string
from plex.desired import DesiredState
from plex.diff import EditPlan, locks_in_flight, locks_we_set, plan_edit
from plex.images import FetchImage, ImageStep, image_steps
from plex.matcher import LibraryIndex, MatchKind, MatchResult, build_index, match, merge_index
from plex.pathmap import basename_key, parent_folder, path_key, to_plex, to_stash
from plex.records import CurrentState, LedgerEntry, LocksInFlight, SyncOutcome, SyncStatus
from plex.scene_state import state_and_hash
from plex.sections import ScanMemory, choose_sections, section_for_folder
from stash.records import Scene

#: Seconds a full index is trusted before the next lookup rebuilds it.
INDEX_MAX_AGE = 3600.0
#: Seconds a "not in Plex" answer is remembered (a burst of jobs for one new folder).
MISS_TTL = 5.0
#: Scenes looked up narrowly before the full index is worth building.
NARROW_LOOKUPS = 10
#: Items per page of a listing (plexapi's default is 100).
PAGE_SIZE = 500
#: Full items per batched read, and how long a prefetched one may be used.
BATCH_SIZE = 50
PREFETCH_TTL = 30.0
MOVIE = 1  # plexapi's searchType("movie")


def _locks(flight: LocksInFlight | None) -> frozenset[str]:
    return flight.locks if flight is not None else frozenset()


def date_moved(recorded: str | None, shown: str, wanted: str | None) -> bool:
    """Whether the item's release date after this sync may differ from the one our last sync
    recorded: Plex shows another (someone changed it there) or Stash asks for another. The
    order of a group collection that relies on Plex's release-date order is judged again."""
    return recorded != (shown or "") or (wanted is not None and wanted != recorded)


@dataclass
class PlexBatch:
    """The Plex side of one drain batch, read once for all its scenes: full items by rating
    key (one comma read), each used by its scene's sync at most once. A read every scene of
    a batch needs belongs here too, made once per batch."""

    items: dict[str, CurrentState] = field(default_factory=dict)

    def renamed(self, renames: Mapping[str, str]) -> None:
        """Our collections were renamed in Plex after this batch was read: its items not used
        yet hold them under the new names (`plex.collections.renamed`)."""
        for key, state in self.items.items():
            self.items[key] = replace(state, collections=renamed(state.collections, renames))


@dataclass(frozen=True)
class PreparedSync:
    """A sync between its halves (`PlexSync.prepare`, `PlexSync.write`): the item as read,
    which of its files is the scene's, the ownership verdict, and the state to write."""

    ledger: LedgerEntry | None
    state: CurrentState
    mine: str
    ownership: claims.Ownership
    desired: DesiredState
    digest: str
    requests: int  # sent while preparing
    group_index: dict[str, int | None]  # the scene's place in each of its groups, for the ledger
    owned_collections: tuple[str, ...] = ()  # the item's collections that are ours
    #: The locks to note before the write goes out (`plex.diff.locks_in_flight`), and those
    #: noted when the sync was prepared; the caller notes them when the two differ.
    in_flight: LocksInFlight | None = None
    noted: LocksInFlight | None = None


class ClaimSource(Protocol):
    """Who else holds an item: the sync ledger, and Stash for the primary Part's file; and
    which locks a scene's write not recorded yet may have set (`in_flight`)."""

    def rival(self, plex_key: str, scene_id: int) -> claims.Claim | None:
        """Another scene's live ledger claim on the item, if any."""
        ...

    def in_flight(self, scene_id: int) -> LocksInFlight | None:
        """The locks noted before the scene's last write that no ledger row records yet."""
        ...

    def scene_with_file(self, stash_path: str) -> int | None:
        """The Stash scene that has this file, if any."""
        ...


# --- the sync --------------------------------------------------------------------------


@dataclass
class _Index:
    index: LibraryIndex = field(default_factory=LibraryIndex)
    complete: bool = False
    built_at: float = 0.0
    lookups: int = 0
    misses: dict[tuple[str, ...], float] = field(default_factory=dict)


class PlexSync:
    """Per-process Plex writer; `sync()` is called once per job by the worker."""

    def __init__(self, conn: PlexConnection, settings: Settings, fetch_image: FetchImage,
                 claim_source: ClaimSource | None = None) -> None:
        self.conn = conn
        self.settings = settings
        self.fetch_image = fetch_image
        self.claim_source = claim_source
        self._sections: tuple[xmlread.Section, ...] | None = None
        self._all_sections: tuple[xmlread.Section, ...] = ()
        self._idx = _Index()
        self._prefetched: dict[str, tuple[float, CurrentState]] = {}
        self.scans = ScanMemory()
        self._form: str | None = None  # "NFC" or "NFD": how this server stores names, once seen
        self._now = 0.0
        #: The database that recorded our locks was lost (``sync_queue.state.LOCKS_FORGOTTEN``):
        #: a scene without a ledger row counts its item's locks as ours until a reconcile ran.
        self.own_unknown_locks = False
        #: The drain's collection batch (`open_batch`); None: a sync writes no collection itself.
        self.batch: CollectionBatch | None = None
        self.collection_store: Any = None  # (collections table, ledger table), see `open_batch`
        #: Sends a write's request on one of the drain's lanes (`worker.core.LANES`); None:
        #: each on the calling thread, one at a time.
        self.lanes: Callable[[Callable[[], int]], Future[int]] | None = None

    # -- reads -----------------------------------------------------------------------

    def sections(self) -> tuple[xmlread.Section, ...]:
        """The configured movie sections (`GET /library/sections` once per process)."""
        if self._sections is None:
            self._all_sections = xmlread.sections(self.conn.query("/library/sections"))
            self._sections = choose_sections(self._all_sections, self.settings.plex_library)
        return self._sections

    def _listing(self, section: xmlread.Section, extra: str = "",
                 on_page: Callable[[Any], None] | None = None) -> list[Any]:
        """Every page of one section's movie listing, paged by plexapi's container headers.

        `on_page` sees each page's element as it arrives, so a caller that needs more than
        the index (reconcile reads the listed fields) pays for no second listing."""
        entries, start = [], 0
        while True:
            root = self.conn.query(f"/library/sections/{section.key}/all?type={MOVIE}{extra}", headers={
                "X-Plex-Container-Start": str(start), "X-Plex-Container-Size": str(PAGE_SIZE)})
            if on_page is not None:
                on_page(root)
            page = [v for v in root if v.tag == "Video"]
            entries.extend(xmlread.index_entries(root))
            start += len(page)
            if not page or start >= xmlread.total_size(root, len(page)):
                return entries

    def build_index(self, now: float, on_page: Callable[[Any], None] | None = None) -> LibraryIndex:
        """Read every configured section in full (the amortised index)."""
        entries = [e for s in self.sections() for e in self._listing(s, on_page=on_page)]
        self._form = form_of(e.path for e in entries) or self._form
        idx = self._idx  # updated in place: callers hold a reference to it
        idx.index, idx.complete, idx.built_at, idx.misses = build_index(entries), True, now, {}
        return idx.index

    def _narrow(self, files: Sequence[Any]) -> None:
        """Re-read only the items whose file name is one of `files`' (file= narrows)."""
        names = sorted({f.basename for f in files if f.basename})
        entries = [e for s in self.sections() for n in names for e in self._narrow_name(s, n)]
        self._idx.index = merge_index(self._idx.index, entries)

    def _narrow_name(self, section: xmlread.Section, name: str) -> list[Any]:
        """Parts named `name` in one section, asked for in each normal form until one answers."""
        wanted = basename_key(name)
        for form in name_forms(name, self._form):
            found = [e for e in self._listing(section, "&file=" + quote(form, safe=""))
                     if basename_key(e.path) == wanted]
            if found:
                self._form = form_of(e.path for e in found) or self._form
                return found
        return []

    def read_batch(self, scenes: Sequence[Scene], ledgers: Sequence[LedgerEntry | None], now: float) -> PlexBatch:
        """The full items of a batch's scenes in one comma read per `BATCH_SIZE` keys.

        A scene's key is its ledger's, or its match in the full index. The index is built
        only when this batch and the lookups before it are worth it (`NARROW_LOOKUPS`): one
        hook's batch costs no whole-library listing. A scene whose item is not read here is
        read (or looked up) by its own sync, as it would be without a batch."""
        self._now = max(self._now, now)
        idx = self._idx
        unknown = sum(1 for ledger in ledgers if not (ledger and ledger.plex_key))
        if unknown and (idx.complete and now - idx.built_at > INDEX_MAX_AGE
                        or not idx.complete and idx.lookups + unknown > NARROW_LOOKUPS):
            self.build_index(now)
        keys: list[str] = []
        for scene, ledger in zip(scenes, ledgers, strict=True):
            key = ledger.plex_key if ledger and ledger.plex_key else None
            if key is None and idx.complete:
                key = match(scene.files, idx.index, self.settings.path_map, self.settings.strict_matching).rating_key
            if key and str(key) not in keys:
                keys.append(str(key))
        batch = PlexBatch()
        for i in range(0, len(keys), BATCH_SIZE):
            try:
                root = self.conn.query("/library/metadata/" + ",".join(keys[i:i + BATCH_SIZE]))
            except PlexNotFound:
                continue
            batch.items.update(xmlread.current_states(root))
        return batch

    def prefetch(self, scenes: Iterable[Scene], ledgers: Iterable[LedgerEntry | None] = (), *,
                 now: float) -> int:
        """`read_batch` kept for later `sync()` or `preview()` calls (the dry run); builds the
        full index, since this is a bulk run. Returns how many items were read."""
        scenes = list(scenes)
        ledger_list = (list(ledgers) + [None] * len(scenes))[:len(scenes)]
        if not self._idx.complete or now - self._idx.built_at > INDEX_MAX_AGE:
            self.build_index(now)
        batch = self.read_batch(scenes, ledger_list, now)
        for key, state in batch.items.items():
            self._prefetched[key] = (now, state)
        return len(batch.items)

    def _read(self, key: str, now: float, batch: PlexBatch | None = None) -> CurrentState | None:
        """The full item, from this batch, a fresh prefetch or one GET; None when Plex has no
        such item. A batch's item is used once: a second look (a stale match) reads again."""
        if batch is not None and key in batch.items:
            return batch.items.pop(key)
        cached = self._prefetched.pop(key, None)
        if cached and 0 <= now - cached[0] <= PREFETCH_TTL:
            return cached[1]
        try:
            states = xmlread.current_states(self.conn.query(f"/library/metadata/{key}"))
        except PlexNotFound:
            return None
        return states.get(key)

    # -- matching --------------------------------------------------------------------

    def _lookup(self, scene: Scene, now: float) -> MatchResult:
        idx, pm, strict = self._idx, self.settings.path_map, self.settings.strict_matching
        idx.lookups += 1
        if idx.complete and now - idx.built_at > INDEX_MAX_AGE or not idx.complete and idx.lookups > NARROW_LOOKUPS:
            self.build_index(now)
        first = match(scene.files, idx.index, pm, strict)
        if first.kind is MatchKind.EXACT:
            return first
        miss_key = tuple(sorted(path_key(p) for p in first.paths_tried))
        seen = idx.misses.get(miss_key)
        if seen is not None and 0 <= now - seen < MISS_TTL:
            return first
        self._narrow(scene.files)
        result = match(scene.files, idx.index, pm, strict)
        if result.found:
            idx.misses.pop(miss_key, None)
        else:
            idx.misses = {k: t for k, t in idx.misses.items() if 0 <= now - t < MISS_TTL}
            idx.misses[miss_key] = now
        return result

    def _holds(self, state: CurrentState, scene: Scene, result: MatchResult | None) -> bool:
        """The item really holds the scene's file (guards against a stale index or ledger)."""
        have = {path_key(p) for p in state.files}
        wanted = {path_key(to_plex(f.path, self.settings.path_map)) for f in scene.files}
        if result is not None and result.plex_path:
            wanted.add(path_key(result.plex_path))
        return bool(have & wanted)

    def _locate(self, scene: Scene, ledger: LedgerEntry | None, now: float,
                batch: PlexBatch | None = None) -> CurrentState:
        """The scene's item, fully read; raises PlexNotFound / AmbiguousMatch."""
        if ledger and ledger.plex_key:
            state = self._read(ledger.plex_key, now, batch)
            if state is not None and self._holds(state, scene, None):
                return state
        for _ in range(2):
            result = self._lookup(scene, now)
            if result.kind is MatchKind.AMBIGUOUS:
                raise AmbiguousMatch(f"Scene {scene.id}: several Plex items share its file name: "
                                     + "; ".join(result.candidates), result.candidates)
            if not result.found:
                self._scan(result, now)
                extra = f" (same name, ambiguous: {'; '.join(result.candidates)})" if result.candidates else ""
                raise PlexNotFound(f"Scene {scene.id}: no Plex item has {', '.join(result.paths_tried) or 'its files'}"
                                   + extra, result.paths_tried)
            state = self._read(str(result.rating_key), now, batch)
            if state is not None and self._holds(state, scene, result):
                return state
            # Stale entry: the item moved or vanished. Forget it and look once more.
            self._idx.index = build_index(
                e for g in self._idx.index.by_name.values() for e in g if e.rating_key != result.rating_key)
            self._idx.misses.clear()
        raise PlexNotFound(f"Scene {scene.id}: its Plex item changed while we read it", ())

    def _held_file(self, state: CurrentState, scene: Scene) -> str:
        """The item's Part that is this scene's file: the primary Part when the scene has it."""
        wanted = {path_key(to_plex(f.path, self.settings.path_map)) for f in scene.files}
        held = [f for f in state.files if path_key(f) in wanted]
        if not held:  # matched by file name (a path_map that does not fit)
            names = {basename_key(f.path) for f in scene.files}
            held = [f for f in state.files if basename_key(f) in names]
        if state.primary_file in held:
            return state.primary_file
        return held[0] if held else ""

    def _ownership(self, scene: Scene, state: CurrentState, mine: str) -> claims.Ownership:
        """Whether this scene may write the item (`plex.claims`); raises DuplicateItem if not."""
        source = self.claim_source
        if source is None:
            return claims.Ownership(scene.id)
        rival = source.rival(state.rating_key, scene.id)
        holder = None
        if claims.needs_holder(mine, state.primary_file, rival):
            holder = source.scene_with_file(to_stash(state.primary_file, self.settings.path_map))
        verdict = claims.decide(scene.id, mine, state.primary_file, state.files, rival, holder)
        if verdict.owner == scene.id:
            return verdict
        why = (f"whose file is the item's primary part ({state.primary_file})" if verdict.by_primary else
               f"which synced it first; neither file is the item's primary part ({state.primary_file})")
        raise DuplicateItem(
            f"Scene {scene.id}: Plex item {state.rating_key} ('{state.title}') belongs to scene {verdict.owner}, "
            f"{why}. This scene's file ({mine}) is another part of the same item, such as a Plex optimised "
            f"version or a duplicate; it was not written, so the two scenes do not overwrite each other.",
            verdict.owner)

    def _scan(self, result: MatchResult, now: float) -> None:
        """Ask Plex to scan the folder of each file not found (once per folder per window)."""
        if not self.settings.trigger_plex_scan:
            return
        for plex_path in result.paths_tried:
            folder = parent_folder(plex_path)
            section = section_for_folder(self.sections(), folder)
            if section is None or not self.scans.due(folder, now):
                continue
            self.scans.mark(folder, now)
            for form in name_forms(folder, self._form):
                self.conn.query(f"/library/sections/{section.key}/refresh?" + urlencode({"path": form}), read=False)

    # -- the job ---------------------------------------------------------------------

    def preview(self, scene: Scene, ledger: LedgerEntry | Any | None, now: float | None = None) -> EditPlan:
        """The edit `sync()` would send, without writing or downloading anything."""
        return self.preview_state(scene, ledger, now)[1]

    def preview_state(self, scene: Scene, ledger: LedgerEntry | Any | None,
                      now: float | None = None, images: Sequence[str] = ()) -> tuple[CurrentState, EditPlan]:
        """`preview` plus the item it was planned against, so a dry run can show each field's
        value before and after without reading the item a second time. `images` are uploads
        to plan for, so the plan says which of them someone else's lock keeps off."""
        now = self._now if now is None else now
        ledger = LedgerEntry.from_any(ledger)
        state = self._locate(scene, ledger, now)
        ownership = self._ownership(scene, state, self._held_file(state, scene))
        desired, _ = state_and_hash(scene, self.settings)
        flight = self._in_flight(scene.id, desired, state)[1]
        return state, self._plan(desired, state, ledger, images, ownership.locks | _locks(flight))

    def _in_flight(self, scene_id: int, desired: DesiredState,
                   state: CurrentState) -> tuple[LocksInFlight | None, LocksInFlight | None]:
        """The locks noted for the scene (read on the caller's thread, like the claims), and
        those to note before this write goes out."""
        noted = self.claim_source.in_flight(scene_id) if self.claim_source is not None else None
        return noted, locks_in_flight(desired, state, noted, lock=self.settings.lock_synced_fields)

    def _plan(self, desired: DesiredState, state: CurrentState, ledger: LedgerEntry | None,
              uploads: Sequence[str] = (), inherited: frozenset[str] = frozenset(),
              owned_collections: Sequence[str] = ()) -> EditPlan:
        """The edit, with the locks this plugin set on the item: those of this scene's own
        recorded syncs, plus those no ledger row of this scene holds (`inherited`): a scene's
        whose claim it just took over, and the locks in flight (among them some not on the
        item yet, which change nothing: only a lock on the item can be someone else's)."""
        s = self.settings
        same_item = bool(ledger and ledger.plex_key == state.rating_key)
        ours: frozenset[str] | None = locks_we_set(ledger if same_item else None) | inherited
        if ledger is None and self.own_unknown_locks:
            ours = None  # every lock on the item counts as ours
        return plan_edit(desired, state, ledger.written if ledger else None, lock=s.lock_synced_fields,
                         preserve=s.preserve_plex_edits, uploads=uploads, ours=ours,
                         overwrite_locks=s.overwrite_user_locks, owned_collections=owned_collections)

    def open_batch(self) -> CollectionBatch | None:
        """A new collection batch for a drain run (`plex.collections`); None without a store."""
        if self.collection_store is None:
            return None
        table, ledger = self.collection_store
        self.batch = CollectionBatch(self.conn, table, ledger, self.fetch_image, self.settings.lock_synced_fields)
        return self.batch

    def probe(self) -> None:
        """One cheap request that proves Plex answers (see `PlexConnection.probe`)."""
        self.conn.probe()

    def sync(self, scene: Scene, ledger: LedgerEntry | Any | None, now: float) -> SyncOutcome:
        """Bring the scene's Plex item to the state Stash asks for (see module docstring)."""
        return self.write(self.prepare(scene, ledger, now))

    def prepare(self, scene: Scene, ledger: LedgerEntry | Any | None, now: float,
                batch: PlexBatch | None = None) -> PreparedSync:
        """The first half of `sync`: find and read the item (from `batch` when it holds it)
        and settle who may write it. Runs on the drain's own thread, since the ownership
        rule reads the ledger."""
        self._now = max(self._now, now)
        ledger = LedgerEntry.from_any(ledger)
        before = self.conn.requests_here
        state = self._locate(scene, ledger, now, batch)
        mine = self._held_file(state, scene)
        ownership = self._ownership(scene, state, mine)
        desired, digest = state_and_hash(scene, self.settings)
        owned: tuple[str, ...] = ()
        if self.batch is not None and desired.collections is not None and state.section_id:
            # On this thread: it claims in the collections table, before the edit can create one.
            specs = scene_collections(scene, self.settings)
            renames = self.batch.note(state.section_id, specs, state.collections, ledger, now)
            if renames:
                state = replace(state, collections=renamed(state.collections, renames))
                if batch is not None:
                    batch.renamed(renames)
            if ledger is not None and date_moved(ledger.released, state.originally_available_at,
                                                 desired.originally_available_at):
                self.batch.redated(state.section_id, specs, now)
            owned = self.batch.owned_titles(state.section_id, state.collections, desired.collections)
        noted, flight = self._in_flight(scene.id, desired, state)
        return PreparedSync(ledger, state, mine, ownership, desired, digest, self.conn.requests_here - before,
                            {link.id: link.scene_index for link in scene.group_links}, owned, flight, noted)

    def fetch(self, prepared: PreparedSync) -> list[ImageStep]:
        """The images `write` uploads, downloaded from Stash (`plex.images.image_steps`). Asks
        Stash only, so the drain runs it ahead of the write, while other scenes' edits go out."""
        ledger, state = prepared.ledger, prepared.state
        same_item = bool(ledger and ledger.plex_key == state.rating_key)
        return image_steps(prepared.desired, ledger, same_item, self.fetch_image)

    def write(self, prepared: PreparedSync, images: Sequence[ImageStep] | None = None) -> SyncOutcome:
        """The second half of `sync`: the changed images (`images` as `fetch` gave them, else
        downloaded now), then one edit and the uploads. Touches nothing but the two servers,
        so the drain runs it on its pool."""
        before = self.conn.requests_here
        ledger, state, desired = prepared.ledger, prepared.state, prepared.desired
        steps = self.fetch(prepared) if images is None else list(images)
        plan = self._plan(desired, state, ledger, [s.kind for s in steps if s.data is not None],
                          prepared.ownership.locks | _locks(prepared.in_flight), prepared.owned_collections)
        uploads = [s for s in steps if s.kind in plan.uploads]
        elsewhere = self._send_all(state, plan, uploads)
        # An image kept off by someone else's lock is not recorded: it is reported (and sent
        # once they unlock it) on every sync.
        by_kind = {step.kind: step for step in steps if step.data is None or step.kind in plan.uploads}
        entry = LedgerEntry(
            plex_key=state.rating_key, plex_file=prepared.mine or None, state_hash=prepared.digest,
            written=dict(plan.written),
            poster_source=by_kind["poster"].source if "poster" in by_kind else None,
            poster_hash=by_kind["poster"].sha256 if "poster" in by_kind else None,
            art_source=by_kind["art"].source if "art" in by_kind else None,
            art_hash=by_kind["art"].sha256 if "art" in by_kind else None,
            locks=plan.locks, user_locked=plan.kept_locked, section_id=state.section_id or None,
            group_index=prepared.group_index,
            released=str(plan.params.get(f"{RELEASED}.value", state.originally_available_at) or ""),
        )
        wrote = not plan.empty or bool(uploads)
        return SyncOutcome(SyncStatus.WRITTEN if wrote else SyncStatus.UNCHANGED, state.rating_key, entry,
                           changes=plan.changes, kept=plan.kept, kept_locked=plan.kept_locked,
                           images_uploaded=tuple(u.kind for u in uploads),
                           requests=prepared.requests + self.conn.requests_here - before + elsewhere,
                           displaced=prepared.ownership.displaced)

    def _send_all(self, state: CurrentState, plan: EditPlan, uploads: Sequence[ImageStep]) -> int:
        """The edit and the uploads: all at once on the drain's lanes when it lends them (Plex
        takes them in any order), else one after another on this thread, stopping at the first
        failure. Every request has its answer before this returns; the first failure in the
        order sent (the edit's first) is then raised, so a failed write is judged as it was
        when the edit went alone. Returns the requests sent from other threads."""
        requests = [partial(self._edit, state, plan)] if not plan.empty else []
        requests += [partial(self._upload, state.rating_key, step) for step in uploads]
        if self.lanes is None:
            for request in requests:
                request()
            return 0
        answered = [self.lanes(request) for request in requests]
        for done in answered:  # every answer first (`concurrent.futures.wait` costs more per call)
            done.exception()
        return sum(done.result() for done in answered)  # raises the first failure

    def _upload(self, rating_key: str, step: ImageStep) -> int:
        """One image to the item; the requests this thread sent for it."""
        before = self.conn.requests_here
        self.conn.query(f"/library/metadata/{rating_key}/{'posters' if step.kind == 'poster' else 'arts'}", "POST",
                        data=step.data)
        return self.conn.requests_here - before

    def hold(self, seconds: float) -> None:
        """Plex asked for a pause (Retry-After): every request waits it out, from any thread."""
        self.conn.hold(seconds)

    def _edit(self, state: CurrentState, plan: EditPlan) -> int:
        before = self.conn.requests_here
        section = state.section_id or (self.sections()[0].key if self.sections() else "")
        query = query_string({**plan.params, "id": state.rating_key, "type": MOVIE})
        self.conn.query(f"/library/sections/{section}/all?{query}", "PUT")
        return self.conn.requests_here - before

    def check(self) -> dict[str, Any]:
        """For the health check: reachable, version, the sections we would use."""
        server = self.conn.server()
        used = self.sections()
        return {"reachable": True, "version": getattr(server, "version", None),
                "friendly_name": getattr(server, "friendlyName", None),
                "sections": [{"key": s.key, "title": s.title, "locations": list(s.locations)} for s in used]}
