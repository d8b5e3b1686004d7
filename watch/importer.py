"""One watch-history import: Plex's new plays and resume points into Stash.

First, plays logged earlier without a scene whose item the sync ledger now knows are
imported like new ones. Then per history page (oldest first, from the scope's cursor):
drop plays logged before, set aside plays of other libraries, find each item's scene (the
sync ledger, else the item's file mapped to a Stash path, exactly), read those scenes'
plays from Stash, send only the plays Stash lacks at their minute
(`watch.plan.plays_to_add`), then log the page's plays and move the cursor in one
transaction. Last, for the token's own account only, items viewed since the last run get
their resume points (`watch.plan.resume_change`).

Reads Plex only; writes to Stash only plays and resume points. A dry run does every read
and decision and writes nothing anywhere.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from base.clock import absolute_utc
from base.unicode_forms import nfc
from plex import history
from plex.connection import PlexConnection
from plex.pathmap import PathMap, to_stash
from stash import plays as stash_plays
from stash.times import stash_stamp
from sync_queue import watch_log
from sync_queue.watch_log import PlayRecord
from watch.plan import NewPlay, minute, plays_to_add, resume_change
from watch.scope import Scope

#: Dry-run lines listed in the log; the JSON output carries up to `DRY_RUN_KEPT`.
DRY_RUN_SHOWN = 200
DRY_RUN_KEPT = 5000
#: Items without a scene named in the summary (all of them are counted).
UNMATCHED_NAMED = 20
#: Plays logged without a scene looked up again in the ledger per run, oldest first.
UNMATCHED_RETRY = 5000


class CountingStash:
    """The Stash client with a request counter, so a run can report what it cost."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.requests = 0

    def gql(self, document: str, variables: dict | None = None) -> dict:
        self.requests += 1
        return self.client.gql(document, variables)


@dataclass
class ImportReport:
    scope: str
    dry_run: bool
    read: int = 0
    added: int = 0
    in_stash: int = 0
    already_imported: int = 0
    no_scene: int = 0
    other_library: int = 0
    retried: int = 0  # plays logged without a scene whose scene the ledger knows now
    resumes_set: int = 0
    resumes_cleared: int = 0
    cursor: int = 0
    resume_cursor: int | None = None
    plex_requests: int = 0
    stash_requests: int = 0
    completed: bool = True
    unmatched: list[str] = field(default_factory=list)
    would: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        data = {k: v for k, v in self.__dict__.items() if k != "would"}
        data["would_total"] = len(self.would)
        return data

    def lines(self) -> list[str]:
        verb = "would add" if self.dry_run else "added"
        out = [f"Watch history ({self.scope}): read {self.read} Plex plays; {verb} {self.added} to Stash, "
               f"{self.in_stash} already in Stash at that minute, {self.already_imported} imported before, "
               f"{self.no_scene} with no Stash scene, {self.other_library} in other Plex libraries"
               + (f"; {self.retried} earlier plays without a scene now have one." if self.retried else "."),
               f"Resume points: {'would set' if self.dry_run else 'set'} {self.resumes_set}, "
               f"{'would clear' if self.dry_run else 'cleared'} {self.resumes_cleared}."]
        if self.unmatched:
            out.append("No Stash scene for: " + "; ".join(self.unmatched)
                       + (" …" if len(self.unmatched) >= UNMATCHED_NAMED else ""))
        if not self.completed:
            out.append("Stopped early (another task took over); the next run continues from the cursor.")
        cursor = absolute_utc(self.cursor) if self.cursor else "none yet"
        out.append(f"Cursor: Plex plays up to {cursor} are imported; "
                   f"{self.plex_requests} Plex and {self.stash_requests} Stash requests.")
        return out


class WatchImport:
    """One run over one account scope; every collaborator is passed in."""

    def __init__(self, plex: PlexConnection, stash: Any, db: sqlite3.Connection, scope: Scope,
                 sections: Iterable[str], path_map: PathMap, *, dry_run: bool = False) -> None:
        self.plex = plex
        self.stash = CountingStash(stash)
        self.db = db
        self.scope = scope
        self.sections = frozenset(sections)
        self.path_map = path_map
        self.report = ImportReport(scope.label, dry_run)
        self._scenes: dict[str, int | None] = {}
        self._planned: Counter[tuple[int, int]] = Counter()  # dry run: what earlier pages would log
        self._plex_start = plex.requests_made

    @property
    def dry_run(self) -> bool:
        return self.report.dry_run

    def run(self, now: Callable[[], float], should_stop: Callable[[], bool] = lambda: False,
            progress: Callable[[float], None] = lambda fraction: None) -> ImportReport:
        """Plays on the first 90% of the progress bar (by history rows read), resume points after."""
        start = watch_log.cursor(self.db, self.scope.key)
        self.report.cursor = start.viewed_at if start else 0
        self.report.resume_cursor = start.resume_at if start else None
        # One second back: a play in the cursor's own second may not have been read yet
        # (ties); the log's keys drop the ones that were.
        after = self.report.cursor - 1 if start else 0
        self._retry_unmatched(now())
        pages = history.history_pages(self.plex, after, self.scope.account_id,
                                      on_page=lambda done, total: progress(0.9 * done / max(total, 1)))
        for page in pages:
            self._page(page, now())
            if should_stop():
                self.report.completed = False
                break
        if self.report.completed and self.scope.with_resume:
            self._resume_points()
        progress(1.0)
        self.report.plex_requests = self.plex.requests_made - self._plex_start
        self.report.stash_requests = self.stash.requests
        if not self.dry_run:
            watch_log.finish_run(self.db, self.scope.key, self.report.resume_cursor, self.report.summary(), now())
        return self.report

    # --- plays ------------------------------------------------------------------------

    def _page(self, page: Sequence[history.HistoryEntry], now: float) -> None:
        report = self.report
        report.read += len(page)
        seen = watch_log.known(self.db, (e.key for e in page))
        fresh = [e for e in page if e.key not in seen]
        report.already_imported += len(page) - len(fresh)
        mine = [e for e in fresh if e.section_id in self.sections]
        elsewhere = [e for e in fresh if e.section_id not in self.sections]
        records = [_record(e, None, "other_library") for e in elsewhere]
        report.other_library += len(elsewhere)
        scenes = self._scenes_for([e.rating_key for e in mine if e.rating_key])
        found = [(e, scenes.get(e.rating_key) if e.rating_key else None) for e in mine]
        for entry, _ in (f for f in found if f[1] is None):
            label = f"{entry.title or 'deleted item'} (Plex item {entry.rating_key or 'deleted'})"
            if len(report.unmatched) < UNMATCHED_NAMED and label not in report.unmatched:
                report.unmatched.append(label)
        placed, to_add = self._place(found)
        records += placed
        if page:
            report.cursor = max(report.cursor, max(e.viewed_at for e in page))
        if not self.dry_run:
            stash_plays.add_plays_many(self.stash, to_add)
            watch_log.commit_page(self.db, self.scope.key, records, report.cursor, now)

    def _retry_unmatched(self, now: float) -> None:
        """Plays logged without a scene whose item the sync ledger now knows (a Sync All
        after a path-mapping fix): imported like new ones, their log rows updated in one
        transaction after the write, so a kill in between is safe for the same reason."""
        waiting = watch_log.unmatched(self.db, self.scope.account_id, UNMATCHED_RETRY)
        if not waiting:
            return
        scenes = watch_log.scenes_for_items(self.db, {r.rating_key for r in waiting if r.rating_key})
        found = [(history.HistoryEntry(r.play_key, r.rating_key, r.account_id, r.viewed_at, ""),
                  scenes.get(r.rating_key or "")) for r in waiting if scenes.get(r.rating_key or "")]
        if not found:
            return
        self.report.retried += len(found)
        placed, to_add = self._place(found)
        if not self.dry_run:
            stash_plays.add_plays_many(self.stash, to_add)
            watch_log.resolve(self.db, placed, now)

    def _place(self, found: Sequence[tuple[history.HistoryEntry, int | None]]
               ) -> tuple[list[PlayRecord], dict[int, list[int]]]:
        """Records for plays with their scene or None, and the times to send per scene:
        only what Stash lacks at its minute (`plays_to_add`)."""
        report = self.report
        records = [_record(e, None, "no_scene") for e, sid in found if sid is None]
        matched = [NewPlay(e.key, sid, e.viewed_at) for e, sid in found if sid is not None]
        by_key = {e.key: e for e, _ in found}
        activity = stash_plays.activities(self.stash, {p.scene_id for p in matched})
        # A scene deleted in Stash since the ledger row was written has no activity.
        records += [_record(by_key[p.key], None, "no_scene") for p in matched if p.scene_id not in activity]
        matched = [p for p in matched if p.scene_id in activity]
        report.no_scene += len(records)
        logged = watch_log.recorded_minutes(self.db, {p.scene_id for p in matched}) + self._planned
        plan = plays_to_add(matched, logged, {sid: a.plays for sid, a in activity.items()})
        records += [_record(by_key[p.key], p.scene_id, "added" if p.key in plan.added_keys else "in_stash")
                    for p in matched]
        report.added += len(plan.added_keys)
        report.in_stash += len(plan.in_stash_keys)
        if self.dry_run:
            for scene_id, times in sorted(plan.to_add.items()):
                report.would.append(f"scene {scene_id}: +{len(times)} play(s) at "
                                    + ", ".join(stash_stamp(t) for t in times[:5])
                                    + (" …" if len(times) > 5 else ""))
            for play in matched:
                self._planned[(play.scene_id, minute(play.viewed_at))] += 1
        return records, plan.to_add

    def _scenes_for(self, rating_keys: Sequence[str],
                    files: dict[str, tuple[str, ...]] | None = None) -> dict[str, int | None]:
        """Scene per Plex item: the ledger first, else the item's files mapped to Stash paths
        (from `files` when the caller has them, else one metadata request per batch)."""
        wanted = {k for k in rating_keys if k not in self._scenes}
        if wanted:
            from_ledger = watch_log.scenes_for_items(self.db, wanted)
            self._scenes.update(from_ledger)
            unknown = sorted(wanted - set(from_ledger))
            known_files = dict(files or {})
            missing = [k for k in unknown if k not in known_files]
            if missing:
                known_files.update({k: v.files for k, v in history.viewings(self.plex, missing).items()})
            for key in unknown:
                self._scenes[key] = self._scene_by_files(known_files.get(key, ()))
        return {k: self._scenes.get(k) for k in rating_keys}

    def _scene_by_files(self, files: Sequence[str]) -> int | None:
        for plex_path in files:
            # Plex may hold the name in NFD (macOS, SMB); Stash reports and stores NFC.
            scene_id = stash_plays.scene_by_path(self.stash, nfc(to_stash(plex_path, self.path_map)))
            if scene_id is not None:
                return scene_id
        return None

    # --- resume points ------------------------------------------------------------------

    def _resume_points(self) -> None:
        report = self.report
        since = report.resume_cursor
        after = since - 1 if since is not None else 0
        viewed = [v for key in sorted(self.sections) for v in history.viewed_since(self.plex, key, after)]
        if not viewed:
            return
        # The listing carries the files: the path fallback needs no metadata request.
        scenes = self._scenes_for([v.rating_key for v in viewed], {v.rating_key: v.files for v in viewed})
        activity = stash_plays.activities(self.stash, {s for s in scenes.values() if s is not None})
        changes: dict[int, float] = {}
        for v in viewed:
            scene_id = scenes[v.rating_key]
            current = activity.get(scene_id) if scene_id is not None else None
            if current is None:
                continue
            change = resume_change(scene_id, v.last_viewed_at, v.view_offset_ms,
                                   current.duration or v.duration_ms / 1000.0,
                                   current.resume_time, current.last_played_at)
            if change is not None:
                changes[scene_id] = change.resume_time
        for scene_id, seconds in sorted(changes.items()):
            if seconds:
                report.resumes_set += 1
            else:
                report.resumes_cleared += 1
            if self.dry_run:
                report.would.append(f"scene {scene_id}: resume point {'cleared' if not seconds else f'{seconds:.0f} s'}")
        if not self.dry_run:
            stash_plays.save_resumes(self.stash, changes)
        seen = [v.last_viewed_at for v in viewed if v.last_viewed_at is not None]
        if seen:
            report.resume_cursor = max([*seen, since or 0])


def _record(entry: history.HistoryEntry, scene_id: int | None, outcome: str) -> PlayRecord:
    return PlayRecord(entry.key, scene_id, entry.rating_key, entry.account_id, entry.viewed_at, outcome)
