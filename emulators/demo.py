"""The demo: the plugin's main job, end to end, for someone with no Stash and no Plex at hand.

`python -m emulators.demo` starts an emulated Stash (with a generated library and login
turned on) and an emulated Plex (that has scanned the files but knows nothing else), saves
the plugin's settings in Stash, and then does what a user would, through the Stash plugin
host, which runs the plugin exactly as Stash does:

1. edits a scene in Stash; its `Scene.Update.Post` hook fires and the background worker
   it starts syncs that scene;
2. runs *Sync All*;
3. edits two scenes, fires their hooks and runs *Process Queue*;
4. takes Plex down, edits two more scenes and fires their hooks: the plugin defers them
   instead of failing; Plex comes back and the deferred scenes go through on their own;
5. runs *Queue Status*;
6. watches scenes in Plex and runs *Import Plex Watch History*: the plays and the resume
   point appear in Stash, once (`emulators.demo_watch`).

Each step prints its wall time, the plugin's own log lines, its progress and how many
requests reached Plex. A before/after table shows a few Plex items, and at the end every
scene in Plex is checked against Stash, so the demo doubles as a smoke test: the exit code
is non-zero if a step failed, Plex ends up different from Stash, or the output contains a
secret (the Plex token or a Stash session cookie the plugin was handed).
"""

from __future__ import annotations

import argparse
import re
import secrets
import shutil
import sys
import tempfile
import threading
import time
import unicodedata
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from emulators.host import RunResult
from emulators.stage import Stage, stage
from emulators.stash_library import StashLibrary, png_bytes

TITLE_WIDTH = 34
STUDIO_WIDTH = 24
TICK = 2.0  # seconds between "still running" lines of a long step
MAX_TAGS = 100  # the plugin's default `max_tags`
UNREACHABLE = "Plex unreachable"


# --- text that lines up in a terminal ------------------------------------------------------


def width(text: str) -> int:
    """Columns a terminal gives `text`: wide East Asian characters and emoji take two."""
    return sum(0 if unicodedata.combining(ch) else 2 if unicodedata.east_asian_width(ch) in "WF" else 1
               for ch in text)


def fit(text: str, columns: int) -> str:
    """`text` cut to `columns` (with an ellipsis) and padded to exactly that width."""
    if width(text) > columns:
        out = ""
        for ch in text:
            if width(out + ch) > columns - 1:
                break
            out += ch
        text = out + "\u2026"
    return text + " " * (columns - width(text))


# --- what the demo does to the library (pure, so the test can know it too) ---------------


@dataclass(frozen=True)
class Plan:
    """Which scenes each step touches and which ones the table shows."""

    hook: int
    edited: tuple[int, int]
    outage: tuple[int, ...]
    untouched: int

    @property
    def shown(self) -> tuple[int, ...]:
        return (self.hook, *self.edited, *self.outage, self.untouched)


def plan(library: StashLibrary, outage: int = 2) -> Plan:
    """Scenes with a title, studio, performers and tags make the most telling rows; a small
    library may not have enough of them, so the criteria relax until there are.

    `outage` scenes are edited while Plex is down: two stay under the breaker's threshold
    (three outages in a row), so they are only deferred; three open it.
    """
    ids = library.sorted_ids()
    scenes = library.scenes
    tests: list[Callable[[int], bool]] = [
        lambda i: bool(scenes[i].title and scenes[i].studio_id and scenes[i].performer_ids and scenes[i].tag_ids),
        lambda i: bool(scenes[i].title and scenes[i].studio_id),
        lambda i: bool(scenes[i].title),
        lambda i: True,
    ]
    needed = 4 + outage
    chosen: list[int] = []
    for test in tests:
        chosen += [i for i in ids if i not in chosen and test(i)]
        if len(chosen) >= needed:
            break
    if len(chosen) < needed:
        raise ValueError(f"the demo needs a library of at least {needed} scenes")
    return Plan(hook=chosen[0], edited=(chosen[1], chosen[2]), outage=tuple(chosen[3:needed - 1]),
                untouched=chosen[needed - 1])


def edits(library: StashLibrary, p: Plan) -> dict[int, dict[str, Any]]:
    """The fields each touched scene gets, as a user editing in Stash would change them."""
    scenes = library.scenes
    other_studio = next((s for s in sorted(library.studios) if s != scenes[p.edited[0]].studio_id), None)
    spare_tags = [t for t in sorted(library.tags) if t not in scenes[p.edited[1]].tag_ids][:2]
    return {
        p.hook: {"title": f"{_base(scenes[p.hook].title, p.hook)} (remastered)"},
        p.edited[0]: {"title": "Director's Cut", "studio_id": other_studio, "date": "2024-05"},
        p.edited[1]: {"title": f"{_base(scenes[p.edited[1]].title, p.edited[1])} II",
                      "tag_ids": list(scenes[p.edited[1]].tag_ids) + spare_tags,
                      "performer_ids": list(scenes[p.edited[1]].performer_ids[:1]), "studio_id": None},
        p.outage[0]: {"title": "Edited While Plex Was Down"},
        **{sid: {"title": f"{_base(scenes[sid].title, sid)} (outage edit {n})"}
           for n, sid in enumerate(p.outage[1:], start=2)},
    }


def _base(title: str | None, scene_id: int) -> str:
    return " ".join((title or f"Scene {scene_id}").split()[:3])


# --- Plex items as the table shows them, and Plex checked against Stash --------------------


@dataclass(frozen=True)
class Row:
    title: str
    studio: str
    date: str
    genres: int
    actors: int
    poster: str  # "cover" (Stash's), "frame" (Plex's own from the video), "other" or "none"


def cover(library: StashLibrary, scene_id: int) -> bytes:
    """The image the Stash emulator serves as the scene's screenshot."""
    return library.scenes[scene_id].cover or png_bytes(scene_id)


def _poster(library: StashLibrary, scene_id: int, image: Any) -> str:
    if image is None:
        return "none"
    if image.provider == "agent":
        return "frame"
    return "cover" if image.data == cover(library, scene_id) else "other"


def row(st: Stage, scene_id: int) -> Row:
    item = st.plex_item(scene_id)
    if item is None:
        return Row("(not in Plex)", "", "", 0, 0, "none")
    # Shown in NFC like Stash's row: a title Plex took from an NFD file name reads the same.
    return Row(_text(item.title), _text(item.fields.get("studio")),
               str(item.fields.get("originallyAvailableAt") or ""),
               len(item.tag_names("genre")), len(item.roles()), _poster(st.library, scene_id, item.poster))


def stash_row(library: StashLibrary, scene_id: int) -> Row:
    scene = library.scenes[scene_id]
    studio = library.studios[scene.studio_id].name if scene.studio_id else ""
    return Row(_text(scene.title), _text(studio), scene.date or "", len(_unique(_tag_names(library, scene_id))),
               len(_unique(_performer_names(library, scene_id))), "cover")


def _text(value: str | None) -> str:
    return " ".join(unicodedata.normalize("NFC", value or "").split())


def _unique(names: list[str], limit: int = 0) -> list[str]:
    seen: set[str] = set()
    out = []
    for name in map(_text, names):
        if name and name.casefold() not in seen:
            seen.add(name.casefold())
            out.append(name)
    return out[:limit] if limit else out


def _tag_names(library: StashLibrary, scene_id: int) -> list[str]:
    return [library.tags[t].name for t in library.scenes[scene_id].tag_ids]


def _performer_names(library: StashLibrary, scene_id: int) -> list[str]:
    return [library.performers[p].name for p in library.scenes[scene_id].performer_ids]


def _full_date(value: str | None) -> str:
    if not value:
        return ""
    parts = value.split("-")
    return "-".join(parts + ["01"] * (3 - len(parts)))


def mismatches(st: Stage) -> list[str]:
    """Every difference between what Stash holds and what Plex shows, scene by scene.

    Written from what a user expects to see in Plex, not from the plugin's own rules, so a
    rule that drifted shows up here: the title, studio, full date (a partial date filled to
    the first day), summary, genres (Stash's tags), actors (performers), and the scene's
    cover as poster and background.
    """
    lib = st.library
    problems: list[str] = []
    for sid in lib.sorted_ids():
        scene = lib.scenes[sid]
        item = st.plex_item(sid)
        if item is None:
            problems.append(f"scene {sid}: no Plex item")
            continue
        studio = lib.studios[scene.studio_id].name if scene.studio_id else ""
        expected: dict[str, Any] = {
            "studio": _text(studio),
            "date": _full_date(scene.date),
            "summary": _text(scene.details),
            "genres": sorted(n.casefold() for n in _unique(_tag_names(lib, sid), MAX_TAGS)),
            "actors": sorted(n.casefold() for n in _unique(_performer_names(lib, sid))),
            "poster": "cover",
            "background": "cover",
        }
        if scene.title:
            expected["title"] = _text(scene.title)
        actual = {
            "title": _text(item.title),
            "studio": _text(item.fields.get("studio")),
            "date": str(item.fields.get("originallyAvailableAt") or ""),
            "summary": _text(item.fields.get("summary")),
            "genres": sorted(n.casefold() for n in item.tag_names("genre")),
            "actors": sorted(n.casefold() for n in item.roles()),
            "poster": _poster(lib, sid, item.poster),
            "background": _poster(lib, sid, item.art),
        }
        for name, want in expected.items():
            if actual[name] != want:
                problems.append(f"scene {sid}: {name} is {_short(actual[name])}, Stash has {_short(want)}")
    return problems


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# --- the run ---------------------------------------------------------------------------------


@dataclass
class Demo:
    st: Stage
    out: TextIO
    failures: list[str] = field(default_factory=list)
    printed: list[str] = field(default_factory=list)
    secrets: set[str] = field(default_factory=set)
    started: float = field(default_factory=time.perf_counter)

    def say(self, text: str = "") -> None:
        self.printed.append(text)
        print(text, file=self.out, flush=True)

    @contextmanager
    def step(self, title: str) -> Iterator[dict[str, int]]:
        """One numbered step: its title at once, a line every few seconds while it runs, then
        what the background worker logged meanwhile, its wall time and the requests it cost.
        The yielded dict is filled with the Plex request counts when the step ends."""
        counts: dict[str, int] = {}
        before = _plex_counts(self.st)
        stash_before = self.st.stash.count()
        failures = len(self.failures)
        log_at = _size(self.worker_log)
        self.say(f"\n\u25b6 {title}")
        t0 = time.perf_counter()
        done = threading.Event()
        ticker = threading.Thread(target=self._tick, args=(t0, before["total"], done), daemon=True)
        ticker.start()
        try:
            yield counts
        except Exception as exc:  # a failed step is reported and counted, the demo goes on
            self.fail(f"{type(exc).__name__}: {exc}")
        finally:
            done.set()
            ticker.join()
        for line in _read_from(self.worker_log, log_at).splitlines():
            level, message = _worker_message(line)
            self.say(f"    {level:7} | (background worker) {message}")
        after = _plex_counts(self.st)
        counts.update({k: after[k] - before[k] for k in after})
        mark = "\u2713" if len(self.failures) == failures else "\u2717"
        self.say(f"  {mark} {time.perf_counter() - t0:.2f} s; requests that reached Plex: {counts['total']} "
                 f"({counts['reads']} reads, {counts['edits']} edits, {counts['uploads']} image uploads, "
                 f"{counts['scans']} scans); Stash GraphQL requests: {self.st.stash.count() - stash_before}")

    @property
    def worker_log(self) -> Path:
        return self.st.data_dir / "worker.log"

    def _tick(self, t0: float, base: int, done: threading.Event) -> None:
        while not done.wait(TICK):
            reached = _plex_counts(self.st)["total"] - base
            self.say(f"  \u2026 {time.perf_counter() - t0:.0f} s, {reached} Plex requests so far")

    def fail(self, message: str) -> None:
        self.failures.append(message)
        self.say(f"  \u2717 {message}")

    def show_run(self, what: str, result: RunResult, tolerate: str | None = None) -> None:
        """What Stash would show for one plugin run: its log lines, progress and outcome.

        `tolerate`: an error containing this text is the right answer here (a task that
        finds Plex unreachable says so and fails); any other error counts as a failure.
        """
        self.say(f"  {what}: {result.wall_time:.2f} s")
        for level, message in result.logs:
            for n, line in enumerate(message.splitlines()):
                self.say(f"    {level if n == 0 else '':7} | {line}")
        if result.progress:
            self.say(f"    progress: {len(result.progress)} updates, "
                     f"{result.progress[0]:.0%} \u2192 {result.progress[-1]:.0%}")
        if result.error and tolerate and tolerate in result.error:
            self.say(f"    the run failed, as it should while {tolerate}: Stash shows it as failed with that message")
        elif result.error:
            self.fail(f"{what} failed: {result.error}")

    def hook(self, scene_id: int) -> None:
        result = self.st.hook(scene_id)
        started = isinstance(result.output, dict) and result.output.get("worker_started")
        self.show_run(f"hook Scene.Update.Post for scene {scene_id} (Stash's save waits for it)", result)
        self.say(f"    background worker {'started' if started else 'already running or just started'}")

    def task(self, mode: str, tolerate: str | None = None) -> dict[str, Any]:
        result = self.st.task(mode)
        self.show_run(f"task {self.st.host.task(mode)['name']}", result, tolerate)
        return result.output if isinstance(result.output, dict) else {}

    def edit(self, changes: dict[int, dict[str, Any]], scene_ids: tuple[int, ...]) -> None:
        for sid in scene_ids:
            self.st.library.update_scene(sid, **changes[sid])
            fields = ", ".join(f"{k}={_label(self.st.library, k, v)}" for k, v in changes[sid].items())
            self.say(f"  edited scene {sid} in Stash: {fields}")

    def table(self, before: dict[int, Row], shown: tuple[int, ...]) -> None:
        header = (f"  {'scene':>5}  {'':6}  {fit('title', TITLE_WIDTH)}  {fit('studio', STUDIO_WIDTH)}  "
                  f"{'date':10}  genres  actors  poster")
        self.say(header)
        self.say("  " + "-" * (width(header) - 2))
        for sid in shown:
            for label, r in (("before", before[sid]), ("after", row(self.st, sid)),
                             ("stash", stash_row(self.st.library, sid))):
                self.say(f"  {str(sid) if label == 'before' else '':>5}  {label:6}  {fit(r.title, TITLE_WIDTH)}  "
                         f"{fit(r.studio or '-', STUDIO_WIDTH)}  {r.date or '-':10}  {r.genres:6}  {r.actors:6}  "
                         f"{r.poster:>6}")

    def leaks(self) -> list[str]:
        text = "\n".join(self.printed)
        return [f"a secret starting {s[:3]!r}" for s in self.secrets if s and s in text]


def _label(library: StashLibrary, name: str, value: Any) -> str:
    if name == "studio_id":
        return "no studio" if value is None else repr(library.studios[value].name)
    if name in ("tag_ids", "performer_ids"):
        return f"{len(value)} {name[:-4]}s"
    return repr(value)


_UPLOAD = re.compile(r"/library/metadata/\d+/(posters|arts)")
_SCAN = re.compile(r"/library/sections/\d+/refresh")


def prepare_group(library: StashLibrary, size: int = 4) -> int | None:
    """The group with the most scenes (the demo's collection example), filled up to `size`
    scenes numbered against their ids (so Plex's own order is visibly wrong), with a synopsis."""
    counts = library.scene_counts("group")
    if not counts:
        return None
    group_id = max(counts, key=lambda g: (counts[g], -g))
    members = [sid for sid, s in library.scenes.items() if any(g == group_id for g, _ in s.groups)]
    free = [sid for sid in library.sorted_ids() if not library.scenes[sid].groups and sid not in members]
    members = sorted(members + free[: max(0, size - len(members))])
    for index, sid in enumerate(reversed(members), start=1):
        library.scenes[sid].groups = [(group_id, index)]
    group = library.groups[group_id]
    group.synopsis = group.synopsis or f"The {len(members)} scenes of {group.name}, in the order they were released."
    library.revision += 1
    return group_id


def group_view(st: Stage, group_id: int) -> list[str]:
    """A group's collection as Plex shows it, and as Stash orders it, in a few lines."""
    lib = st.library
    group = lib.groups[group_id]
    stash_order = [sid for _i, sid in sorted((i if i is not None else 10**9, sid) for sid, s in lib.scenes.items()
                                              for g, i in s.groups if g == group_id)]
    collection = st.plex.collection_by_title(group.name)
    if collection is None:
        return [f"  {group.name!r}: no collection in Plex", f"  stash order (scene_index): {stash_order}"]
    by_key = {st.plex_item(sid).rating_key: sid for sid in lib.sorted_ids() if st.plex_item(sid) is not None}
    order = [by_key.get(k, k) for k in st.plex.collection_children(collection.rating_key)]
    poster = collection.poster
    poster_word = "none" if poster is None else "group front image" if poster.data == group.front_image else "other"
    return [f"  {group.name!r}: summary {_short(collection.fields.get('summary'))}, poster: {poster_word}",
            f"  plex order:                 {order}", f"  stash order (scene_index): {stash_order}"]


def _plex_counts(st: Stage) -> dict[str, int]:
    return {"total": st.plex.count(), "reads": st.plex.count("GET"),
            "edits": st.plex.count("PUT", re.compile(r"/library/sections/\d+/all")),
            "uploads": st.plex.count("POST", _UPLOAD), "scans": st.plex.count(None, _SCAN)}


def _queue(output: dict[str, Any]) -> dict[str, int]:
    return dict(output.get("queue") or {})


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _read_from(path: Path, offset: int) -> str:
    """What a log file gained since `offset`; all of it if it was rotated meanwhile."""
    try:
        with open(path, "rb") as handle:
            if _size(path) >= offset:
                handle.seek(offset)
            return handle.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _worker_message(line: str) -> tuple[str, str]:
    """`2026-12-02 13:43:08,981 16192 INFO text` -> ("info", "text")."""
    parts = line.split(" ", 4)
    if len(parts) == 5 and parts[2].isdigit():
        return parts[3].lower(), parts[4]
    return "", line


def run_demo(st: Stage, out: TextIO, token: str, cookies: list[str], breaker: bool = False) -> int:
    """The steps, the table and the check; returns the exit code.

    `cookies` grows while the demo runs (one session cookie per plugin run); it is read at
    the end, for the audit of everything printed. `breaker`: edit three scenes while Plex
    is down, so the circuit breaker opens; once Plex is back, Process Queue asks it at once.
    """
    demo = Demo(st, out)
    demo.secrets.add(token)
    lib = st.library
    p = plan(lib, outage=3 if breaker else 2)
    changes = edits(lib, p)
    outage = " and ".join(", ".join(map(str, p.outage)).rsplit(", ", 1))
    demo.say(f"Stash: {st.stash.url} ({len(lib.scenes)} scenes, {len(lib.studios)} studios, "
             f"{len(lib.performers)} performers, {len(lib.tags)} tags; login on)")
    demo.say(f"Plex:  {st.plex.url} ({len(st.scene_files())} files scanned: bare items named after the file)")
    demo.say(f"Plugin run as Stash runs it: {' '.join(st.host.command({'execArgs': []}))}")
    before = {sid: row(st, sid) for sid in p.shown}
    group = prepare_group(lib)
    group_before = group_view(st, group) if group is not None else []

    with demo.step(f"1. Edit scene {p.hook} in Stash; its hook fires and the background worker syncs it"):
        demo.edit(changes, (p.hook,))
        t0 = time.perf_counter()
        demo.hook(p.hook)
        st.wait_for_worker()
        demo.say(f"  worker finished {time.perf_counter() - t0:.2f} s after the save; "
                 f"Plex title now {row(st, p.hook).title!r}")

    with demo.step(f"2. Sync All: every scene that differs from what was last written to Plex ({len(lib.scenes)})"):
        output = demo.task("all")
        summary = output.get("summary") or {}
        demo.say(f"  {output.get('queued', '?')} queued, {summary.get('synced', '?')} synced, "
                 f"{output.get('unchanged', '?')} unchanged since their last sync")

    with demo.step(f"3. Edit scenes {p.edited[0]} and {p.edited[1]} in Stash; their hooks fire; Process Queue"):
        demo.edit(changes, p.edited)
        for sid in p.edited:
            demo.hook(sid)
        output = demo.task("process_queue")
        synced = (output.get("summary") or {}).get("synced", 0)
        if synced < len(p.edited):
            demo.say(f"  Process Queue synced {synced}; the background worker the hook started synced the "
                     f"other{'s' if len(p.edited) - synced > 1 else ''} before handing the queue over")
        demo.say(f"  queue after: {_queue(output)}")

    with demo.step(f"4. Plex goes down; scenes {outage} are edited in Stash; their hooks fire; Process Queue"):
        st.plex.faults.down = True
        try:
            demo.edit(changes, p.outage)
            for sid in p.outage:
                demo.hook(sid)
            demo.task("process_queue", tolerate=UNREACHABLE)
            status = demo.task("queue_status")
        finally:
            st.plex.faults.down = False
        demo.say("  Plex is back up")
        deferred = status.get("deferred") or []
        demo.say(f"  deferred, not failed: scenes {[d.get('scene_id') for d in deferred]}; attempts used: "
                 f"{sum(d.get('attempts') or 0 for d in deferred)}; circuit breaker {status.get('breaker')}")
        if sum(d.get("attempts") or 0 for d in deferred):
            demo.fail("an outage used attempts")

    due = max((d.get("next_retry_at") or 0 for d in deferred), default=0)
    if breaker:
        with demo.step("5. Process Queue at once: one cheap request finds Plex back, every held job goes now"):
            demo.task("process_queue", tolerate=UNREACHABLE)
        left = [sid for sid in p.outage if row(st, sid).title != stash_row(lib, sid).title]
        if left:
            demo.fail(f"scenes {left} still wait although Plex answers again")

    with demo.step(f"{6 if breaker else 5}. Recovery: the background worker retries the deferred scenes when due"):
        demo.say(f"  next try in {max(0.0, due - time.time()):.0f} s; nobody clicks anything")
        t0 = time.perf_counter()
        st.wait_until(lambda: all(row(st, sid).title == stash_row(lib, sid).title for sid in p.outage),
                      timeout=max(0.0, due - time.time()) + 45.0, poll=0.2)
        demo.say(f"  all {len(p.outage)} in Plex {time.perf_counter() - t0:.1f} s later")

    with demo.step(f"{7 if breaker else 6}. Queue Status"):
        queue = _queue(demo.task("queue_status"))
        if queue.get("due") or queue.get("deferred") or queue.get("dead_letters"):
            demo.fail(f"work left in the queue: {queue}")

    with demo.step(f"{8 if breaker else 7}. Watched in Plex: Import Plex Watch History brings the plays into Stash"):
        from emulators.demo_watch import run_watch_step

        run_watch_step(demo, st, (p.hook, *p.edited))

    demo.say("\nPlex before and after (the 'stash' line is what Stash holds; poster: 'frame' is Plex's own "
             "from the video, 'cover' is Stash's):")
    demo.table(before, p.shown)

    if group is not None:
        demo.say("\nA Stash group as a Plex collection, before and after:")
        for line in group_before:
            demo.say(line.replace("  ", "  before ", 1))
        after = group_view(st, group)
        for line in after:
            demo.say(line.replace("  ", "  after  ", 1))
        if "poster: group front image" not in after[0] or after[1].split(":", 1)[1].strip() != after[2].split(
                ":", 1)[1].strip():
            demo.fail(f"group {group}'s collection does not show its image and scene order")

    problems = mismatches(st)
    demo.say(f"\nChecked {len(lib.scenes)} scenes in Plex against Stash: "
             + ("all match." if not problems else f"{len(problems)} differences:"))
    for line in problems[:20]:
        demo.say(f"  {line}")
    demo.secrets.update(cookies)
    leaks = demo.leaks()
    for leak in leaks:
        print(f"SECRET IN OUTPUT: {leak}", file=out, flush=True)
    total = time.perf_counter() - demo.started
    failed = demo.failures or problems or leaks
    demo.say(f"\n{'FAILED' if failed else 'OK'}: {len(demo.failures)} failures, {len(problems)} differences, "
             f"{len(leaks)} secrets in the output; {total:.1f} s in all")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m emulators.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenes", type=int, default=200, help="scenes in the generated library (default 200)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated library (default 0)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (queue, worker log) and print it")
    parser.add_argument("--breaker", action="store_true",
                        help="edit three scenes while Plex is down, so the circuit breaker opens")
    parser.add_argument("--token", default=None, help="the emulated Plex's token (default: a random one)")
    args = parser.parse_args(argv)
    if args.scenes < (7 if args.breaker else 6):
        parser.error(f"--scenes must be at least {7 if args.breaker else 6}")
    token = args.token or secrets.token_urlsafe(20)
    password = secrets.token_urlsafe(16)
    work = Path(tempfile.mkdtemp(prefix="stash2plex-demo-"))
    out = sys.stdout
    print(f"Stash2Plex demo: {args.scenes} generated scenes (seed {args.seed}), emulated Stash and Plex",
          file=out, flush=True)
    try:
        with stage(args.scenes, seed=args.seed, work_dir=work,
                   stash_options={"username": "demo", "password": password},
                   plex_options={"token": token}) as st:
            cookies: list[str] = []
            minted = st.host.cookie_factory

            def cookie() -> dict[str, Any] | None:
                value = minted() if minted else None
                if value:
                    cookies.append(str(value.get("Value")))
                return value

            st.host.cookie_factory = cookie
            cookies.append(password)
            code = run_demo(st, out, token, cookies, breaker=args.breaker)
    finally:
        if args.keep:
            print(f"Work folder kept: {work} (plugin data in stash-config/plugin_data/Stash2Plex)", file=out)
        else:
            shutil.rmtree(work, ignore_errors=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
