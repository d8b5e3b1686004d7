"""The chaos soak: the whole plugin, through the Stash host, under many faults at once.

    python bench/bench_chaos.py [--minutes 10] [--seed 19] [--scenes 240]

Both emulators and the plugin run as Stash runs it (`emulators.stage`). After one clean Sync
All, a seeded schedule (`bench.chaos_plan`) mixes on one timeline: saves fired as hooks
(alone, in small groups, and 200 at once), renames of performers, studios and tags (fan-out),
scene deletions, Sync All / Process Queue / Reconcile started and sometimes cancelled, Plex
down and up, 5xx answers, 429 with Retry-After, slow answers, a revoked token restored
later, Stash restarting, and SIGKILL of whichever plugin process runs at a random moment.

Then the faults stop and the plugin settles: backoffs are skipped (`Stage.age`) and Process
Queue runs until no work is left (a condition with a ceiling, never a fixed sleep). The
checks (`bench.chaos_checks`) run twice:

1. after settling: every hook that said it recorded its event is reflected in Plex (or its
   scene is deleted, or dead-lettered for a true reason): nothing lost;
2. after re-firing the hooks a kill cut short before they recorded anything (what Stash
   cannot do for us: it never retries a hook) and settling again: Plex equals Stash for
   every scene that still exists, no edit carried another scene's data, nothing is left in
   the queue, every dead letter's reason is true, no edit was sent twice without a cut
   between (a duplicated job), and no Process Queue run once the faults ended said an error.

It prints kills, faults, wall time, writes per scene and the time from a save to Plex. A
failure prints the seed and the command that runs the same schedule again; the schedule
is the seed's, the interleaving is the machine's, so a rare failure may need a few runs.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import queue
import random
import re
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.chaos_checks import (
    Event,
    Findings,
    ItemView,
    SceneView,
    Write,
    differences,
    entity_name,
    foreign_writes,
    lost_events,
    percentile,
    repeated_writes,
    save_latencies,
    scene_mark,
    stuck,
    writes_per_scene,
)
from bench.chaos_plan import FAULTS, Action, counts, plan
from emulators.host import RunResult
from emulators.stage import Stage, restartable_port, stage

#: No artwork (two uploads per scene would blur the write counts) and no tag cap: the only
#: edits left are the one per changed scene, each carrying every field.
SETTINGS = {"sync_poster": False, "sync_background": False, "trigger_plex_scan": False, "max_tags": 0}
CI_SECONDS = 60.0
DEFAULT_SEED = 19
#: Settling stops when this many Process Queue runs in a row leave the queue as it was ...
STALLED_ROUNDS = 3
#: ... or, as a last resort against a plugin that never stops making work, after this long.
SETTLE_LAST_RESORT = 1800.0
_EDIT_PATH = re.compile(r"/library/sections/\d+/all")
_HOOKS = {"performer": "Performer.Update.Post", "studio": "Studio.Update.Post", "tag": "Tag.Update.Post"}


def command(seconds: float, seed: int, scenes: int) -> str:
    return f"python bench/bench_chaos.py --minutes {seconds / 60:g} --seed {seed} --scenes {scenes}"


@dataclass
class Report:
    seed: int
    seconds: float
    scenes: int
    findings: Findings
    figures: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.findings.ok

    def text(self) -> str:
        lines = [f"chaos soak: seed {self.seed}, {self.seconds:g} s of chaos, {self.scenes} scenes: "
                 + ("PASS" if self.ok else "FAIL")]
        lines += [f"  {name:<28} {value}" for name, value in self.figures.items()]
        if not self.ok:
            lines.append(self.findings.text())
            lines.append(f"reproduce: {command(self.seconds, self.seed, self.scenes)}")
        return "\n".join(lines)


class Soak:
    """Runs one schedule against a stage and keeps the record the checks read."""

    def __init__(self, st: Stage, log: Callable[[str], None] = lambda _m: None) -> None:
        self.st = st
        self.log = log
        self.lock = threading.Lock()
        self.events: list[dict[str, Any]] = []
        self.cuts: list[float] = []
        self.kills: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()
        self.tasks: Counter[str] = Counter()
        self.versions: Counter[int] = Counter()
        self.entity_versions: Counter[tuple[str, int]] = Counter()
        self.deleted: set[int] = set()
        self.threads: list[threading.Thread] = []
        self.task_queue: queue.Queue[Action | None] = queue.Queue()
        self.task_runner = threading.Thread(target=self._run_tasks, name="chaos-tasks", daemon=True)
        self.owner = {st.plex_item(sid).rating_key: sid for sid in st.library.sorted_ids()}

    # --- set-up ----------------------------------------------------------------------------

    def mark_library(self) -> None:
        """Every scene's title and details start with its marker, so each edit Plex receives
        says whose data it carries."""
        lib = self.st.library
        with self.st.stash.write_lock:
            for sid in lib.sorted_ids():
                scene = lib.scenes[sid]
                scene.title = f"{scene_mark(sid, 0)} {scene.title}" if scene.title else None
                scene.details = f"{scene_mark(sid, 0)} {scene.details or ''}".strip()
            lib.revision += 1

    # --- the timeline ----------------------------------------------------------------------

    def run(self, actions: list[Action]) -> float:
        """Plays the schedule; returns when its last action was started."""
        self.task_runner.start()
        start = time.monotonic()
        for action in actions:
            wait = start + action.at - time.monotonic()
            if wait > 0:
                time.sleep(wait)  # the schedule's own clock: when to act, not what to wait for
            self.do(action)
        return time.monotonic() - start

    def do(self, a: Action) -> None:
        if a.kind in ("save", "rename", "delete"):
            # Off the timeline: two hundred hooks take a loaded machine seconds to start.
            self.background({"save": self.save, "rename": self.rename, "delete": self.delete}[a.kind], a)
        elif a.kind == "task":
            if self.task_queue.qsize() < 2:  # Stash's job queue; more would only pile up
                self.task_queue.put(a)
            else:
                self.tasks["skipped (busy)"] += 1
        elif a.kind == "kill":
            self.background(self.kill, a)  # finding the processes reads /proc: slow when loaded
        else:
            self.switch(a)

    def switch(self, a: Action) -> None:
        """A fault on (counted) or off."""
        plex, stash = self.st.plex.faults, self.st.stash.faults
        if a.kind in FAULTS:
            self.faults[a.kind] += 1
        if a.kind in ("plex_down", "plex_up"):
            if a.kind == "plex_down":
                self.cut()  # every open connection is reset
            plex.down = a.kind == "plex_down"
        elif a.kind in ("revoke", "restore"):
            (plex.revoke_token if a.kind == "revoke" else plex.restore_token)()
        elif a.kind in ("plex_slow", "plex_fast"):
            plex.latency = a.value if a.kind == "plex_slow" else 0.0
        elif a.kind == "plex_errors":
            plex.error_burst(a.n, int(a.value))
        elif a.kind == "plex_429":
            plex.rate_limit(a.n, a.value)
        elif a.kind == "plex_calm":
            plex.clear_answers()
        elif a.kind in ("stash_down", "stash_up"):
            stash.down = a.kind == "stash_down"
        else:
            raise ValueError(f"unknown action {a.kind!r}")

    def background(self, act: Callable[[Action], None], a: Action) -> None:
        thread = threading.Thread(target=act, args=(a,), daemon=True)
        thread.start()
        with self.lock:
            self.threads.append(thread)

    def cut(self) -> None:
        with self.lock:
            self.cuts.append(time.time())

    # --- Stash changes and their hooks ------------------------------------------------------

    def save(self, a: Action) -> None:
        lib = self.st.library
        rng = random.Random(int(a.pick * 2**32))
        saved = []
        with self.st.stash.write_lock:
            for sid in a.scenes:
                if sid not in lib.scenes:
                    continue
                self.versions[sid] += 1
                version = self.versions[sid]
                scene = lib.scenes[sid]
                words = (scene.title or "untitled").split("] ", 1)[-1]
                fields: dict[str, Any] = {
                    "title": f"{scene_mark(sid, version)} {words}",
                    "details": f"{scene_mark(sid, version)} {(scene.details or '').split('] ', 1)[-1]}".strip(),
                }
                if rng.random() < 0.3 and lib.tags:
                    tag = rng.choice(sorted(lib.tags))
                    fields["tag_ids"] = ([t for t in scene.tag_ids if t != tag] if tag in scene.tag_ids
                                         else [*scene.tag_ids, tag])
                if rng.random() < 0.2 and lib.performers:
                    who = rng.choice(sorted(lib.performers))
                    fields["performer_ids"] = ([p for p in scene.performer_ids if p != who]
                                               if who in scene.performer_ids else [*scene.performer_ids, who])
                if rng.random() < 0.15:
                    fields["studio_id"] = rng.choice([None, *sorted(lib.studios)])
                lib.update_scene(sid, **fields)
                saved.append((sid, version))
        now = time.time()
        for sid, version in saved:
            self.fire("Scene.Update.Post", sid, {"t": now, "kind": "save", "scene": sid, "version": version})

    def rename(self, a: Action) -> None:
        assert a.entity is not None
        kind, entity_id = a.entity
        lib = self.st.library
        table: dict[int, Any] = {"performer": lib.performers, "studio": lib.studios, "tag": lib.tags}[kind]
        with self.st.stash.write_lock:
            if entity_id not in table:
                return
            self.entity_versions[a.entity] += 1
            version = self.entity_versions[a.entity]
            table[entity_id].name = entity_name(kind, entity_id, version)
            table[entity_id].updated_at = time.time()
            lib.revision += 1
        self.fire(_HOOKS[kind], entity_id, {"t": time.time(), "kind": "rename", "entity": a.entity,
                                            "version": version})

    def delete(self, a: Action) -> None:
        sid = a.scenes[0]
        lib = self.st.library
        with self.st.stash.write_lock:
            if sid not in lib.scenes:
                return
            lib.remove_scene(sid)
            self.deleted.add(sid)
        self.fire("Scene.Destroy.Post", sid, {"t": time.time(), "kind": "delete", "scene": sid})

    def fire(self, trigger: str, object_id: int, event: dict[str, Any]) -> None:
        """Runs the hook in its own thread, as Stash runs one process per hook."""
        event["acked"] = False
        event["trigger"], event["id"] = trigger, object_id
        with self.lock:
            self.events.append(event)

        def go() -> None:
            (result,) = self.st.host.run_hook(trigger, object_id)
            event["acked"] = (result.returncode == 0 and isinstance(result.output, dict)
                              and result.output.get("recorded") == {"trigger": trigger, "id": object_id})

        thread = threading.Thread(target=go, daemon=True)
        thread.start()
        with self.lock:
            self.threads.append(thread)

    # --- tasks and kills --------------------------------------------------------------------

    def _run_tasks(self) -> None:
        while (a := self.task_queue.get()) is not None:
            result = self.st.task(a.mode or "process_queue", cancel_after=a.cancel_after)
            self.log(f"task {a.mode}: {result.wall_time:.1f} s, exit {result.returncode}, "
                     f"{'cancelled' if result.killed else result.error or 'ok'}; "
                     + " | ".join(result.lines("error") + result.lines("warning"))[:300])
            if result.killed:
                self.cut()
                self.tasks[f"{a.mode} cancelled"] += 1
            else:
                self.tasks[f"{a.mode}" + ("" if result.returncode == 0 else " killed")] += 1

    def kill(self, a: Action) -> None:
        pick, st = a.pick, self.st
        runs, workers = st.run_pids(), st.worker_pids()
        pids = [(pid, "hook or task") for pid in runs] + [(pid, "worker") for pid in workers]
        if not pids:
            self.kills["missed (nothing running)"] += 1
            return
        pid, role = pids[min(len(pids) - 1, int(pick * len(pids)))]
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            self.kills["missed (exited)"] += 1
            return
        self.cut()
        self.kills[role] += 1

    def join(self, timeout: float) -> None:
        """Waits for every hook the schedule started, then cancels the task still running, as
        a user pressing Cancel would (Stash kills it): on a loaded machine a task started late
        may run for minutes, and the checks run their own Process Queue anyway."""
        self.task_queue.put(None)
        deadline = time.monotonic() + timeout
        while True:  # a save's thread starts its hooks' threads: look again until none runs
            with self.lock:
                running = [t for t in self.threads if t.is_alive()]
            if not running:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"hooks still running {timeout:g} s after the schedule ended")
            running[0].join(max(0.1, deadline - time.monotonic()))
        while self.task_runner.is_alive():
            for pid in self.st.run_pids():  # no hook runs any more: these are the task
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            self.task_runner.join(0.5)
            if time.monotonic() > deadline:
                raise TimeoutError(f"the last task did not end {timeout:g} s after the schedule ended")

    # --- settling and repair ----------------------------------------------------------------

    def settle(self, timeout: float) -> list[str]:
        """No faults, then Process Queue (backoffs skipped) until the plugin holds no work, or
        `STALLED_ROUNDS` runs in a row leave the queue as it was. A slow machine only makes it
        take longer: it stops on no progress, not on a clock (`timeout` is a last resort).
        Returns the errors those runs said (with no fault left, none is right)."""
        st = self.st
        self.faults_off()
        deadline = time.monotonic() + timeout
        said: list[str] = []
        rounds = stalled = 0
        last: dict[str, int] | None = None
        while True:
            if self.quiet():
                self.log(f"settled after {rounds} Process Queue run(s), {timeout - deadline + time.monotonic():.1f} s")
                return said
            counts = self.queue_counts()
            stalled = stalled + 1 if counts == last else 0
            last = counts
            if stalled >= STALLED_ROUNDS or time.monotonic() > deadline:
                return said  # `stuck` reports what is left
            try:
                st.age(3600)
            except TimeoutError:
                continue  # a worker mid-job did not hand over in time: ask again
            result = st.task("process_queue")
            rounds += 1
            said += [line for line in result.lines("error")]
            self.log(f"settling: Process Queue {result.wall_time:.1f} s, {result.error or 'ok'}; "
                     f"{self.queue_counts()}, worker {'running' if st.worker_running() else 'gone'}")

    def left_alone(self, timeout: float = 30.0) -> dict[str, int]:
        """Faults off, then what the plugin leaves once its own worker has exited: work that
        waits for the next save or task (a worker that Stash going away stopped exits). A
        worker still running (asleep until a deferred job is due) leaves nothing behind."""
        self.faults_off()
        with contextlib.suppress(TimeoutError):
            self.st.wait_until(lambda: not self.st.worker_running(), timeout=timeout, poll=0.2)
        if self.st.worker_running():
            return {}
        return {what: n for what, n in self.queue_counts().items() if n}

    def faults_off(self) -> None:
        self.st.plex.faults.clear()
        self.st.stash.faults.down = False

    def quiet(self) -> bool:
        c = self.queue_counts()
        return not any(c.values()) and not self.st.worker_running()

    def queue_counts(self) -> dict[str, int]:
        from sync_queue.jobs import JobQueue

        q = JobQueue(self.st.data_dir)
        try:
            c = q.report.counts(time.time())
        finally:
            q.close(compact=False)
        return {"due jobs": c.due, "deferred jobs": c.deferred, "jobs in flight": c.in_flight,
                "inbox events": c.inbox, "fan-out rows": c.fanout}

    def dead_letters(self) -> dict[int, str]:
        from sync_queue.jobs import JobQueue

        q = JobQueue(self.st.data_dir)
        try:
            return {d.scene_id: d.error_class for d in q.dlq.list_all()}
        finally:
            q.close(compact=False)

    def repair(self) -> int:
        """Fires again, once, each hook whose last firing a kill cut short before it
        recorded anything: a user saving again. Returns how many."""
        last = {(e["trigger"], e["id"]): e for e in self.events}
        again = [(trigger, oid) for (trigger, oid), e in last.items() if not e["acked"]
                 and not (trigger == "Scene.Update.Post" and oid in self.deleted)]
        for trigger, oid in again:
            (result,) = self.st.host.run_hook(trigger, oid)
            if result.returncode != 0:
                raise RuntimeError(f"repair hook {trigger} {oid} failed: {result.stderr[-500:]}")
        return len(again)

    # --- what the checks read ---------------------------------------------------------------

    def stash_views(self) -> dict[int, SceneView]:
        lib = self.st.library
        with self.st.stash.write_lock:
            out = {}
            for sid, s in lib.scenes.items():
                studio = lib.studios[s.studio_id].name if s.studio_id in lib.studios else None
                out[sid] = SceneView(
                    title=s.title, studio=studio,
                    tags=tuple(lib.tags[t].name for t in s.tag_ids if t in lib.tags),
                    performers=tuple(lib.performers[p].name for p in s.performer_ids if p in lib.performers),
                    groups=tuple(lib.groups[g].name for g, _index in s.groups if g in lib.groups),
                    entities=frozenset([("tag", t) for t in s.tag_ids] + [("performer", p) for p in s.performer_ids]
                                       + ([("studio", s.studio_id)] if s.studio_id else [])))
            return out

    def plex_views(self) -> dict[int, ItemView | None]:
        out: dict[int, ItemView | None] = {}
        by_scene = {sid: key for key, sid in self.owner.items()}
        with self.st.plex.lock:
            for sid, key in by_scene.items():
                item = self.st.plex.library.items.get(key)
                out[sid] = None if item is None else ItemView(
                    title=item.title, studio=item.fields.get("studio"),
                    genres=tuple(item.tag_names("genre")), actors=tuple(item.tag_names("actor")),
                    collections=tuple(item.tag_names("collection")))
        return out

    def writes(self) -> list[Write]:
        with self.st.plex.lock:
            records = list(self.st.plex.requests)
        return [Write(r.t, key, dict(r.query)) for r in records
                if r.method == "PUT" and r.status == 200 and _EDIT_PATH.fullmatch(r.path)
                and r.query.get("type") != "18"  # a collection's own edit: not a scene's
                for key in r.rating_keys]

    def event_records(self) -> list[Event]:
        return [Event(t=e["t"], kind=e["kind"], scene=e.get("scene"), entity=e.get("entity"),
                      version=e.get("version", 0), acked=e["acked"]) for e in self.events]


def run_soak(seconds: float = CI_SECONDS, seed: int = DEFAULT_SEED, scenes: int = 240,
             work_dir: Path | None = None, on_result: Callable[[RunResult], None] | None = None,
             log: Callable[[str], None] = lambda _m: None) -> Report:
    """One soak; the report says what failed, never raises for a finding."""
    work = Path(work_dir) if work_dir is not None else Path(tempfile.mkdtemp(prefix="s2p-chaos-"))
    started = time.monotonic()
    findings = Findings()
    with stage(scenes, seed=seed, work_dir=work, settings=SETTINGS, on_result=on_result,
               stash_options={"port": restartable_port()}, plex_options={"port": restartable_port()}) as st:
        soak = Soak(st, log)
        soak.mark_library()
        first = st.task("all")
        if first.error is not None or soak.queue_counts()["due jobs"]:
            raise RuntimeError(f"the clean Sync All before the chaos failed: {first.error} {first.stderr[-1000:]}")
        lib = st.library
        actions = plan(seed, seconds, lib.sorted_ids(),
                       {"performer": sorted(lib.performers), "studio": sorted(lib.studios), "tag": sorted(lib.tags)})
        log(f"chaos: seed {seed}, {len(actions)} actions over {seconds:g} s: {counts(actions)}")
        chaos_from = time.time()
        chaos_s = soak.run(actions)
        chaos_to = time.time()
        soak.join(timeout=max(120.0, seconds))
        log(f"chaos over after {chaos_s:.1f} s; settling")
        settle_ceiling = SETTLE_LAST_RESORT
        unhelped = soak.left_alone()
        said = soak.settle(settle_ceiling)

        stash_now, plex_now = soak.stash_views(), soak.plex_views()
        dead = soak.dead_letters()
        alive = set(stash_now)
        in_plex = {sid for sid, item in plex_now.items() if item is not None}
        faults_seen = set(soak.faults)
        findings.add("left after settling", stuck(soak.queue_counts(), {}, alive, faults_seen, in_plex))
        excused = {sid for sid in dead if not stuck({}, {sid: dead[sid]}, alive, faults_seen, in_plex)}
        events = soak.event_records()
        findings.add("lost events", lost_events(events, stash_now, plex_now, excused))

        repaired = soak.repair()
        said += soak.settle(settle_ceiling)
        stash_now, plex_now = soak.stash_views(), soak.plex_views()
        dead = soak.dead_letters()
        alive = set(stash_now)
        excused = {sid for sid in dead if not stuck({}, {sid: dead[sid]}, alive, faults_seen, in_plex)}
        findings.add("Plex differs from Stash",
                     differences({sid: v for sid, v in stash_now.items() if sid not in excused}, plex_now))
        writes = soak.writes()
        findings.add("written with another scene's data", foreign_writes(writes, soak.owner))
        findings.add("stuck", stuck(soak.queue_counts(), dead, alive, faults_seen, in_plex))
        findings.add("duplicated jobs", repeated_writes(writes, soak.cuts))
        findings.add("errors from Process Queue once the faults ended", said)

        latencies = save_latencies(events, writes, soak.owner)
        per_scene = writes_per_scene(writes, soak.owner)
        fired = len(events)
        figures = {
            "wall time (s)": f"{time.monotonic() - started:.1f} (chaos {chaos_s:.1f})",
            "kills": f"{sum(v for k, v in soak.kills.items() if not k.startswith('missed'))} {dict(soak.kills)}",
            "faults": dict(soak.faults),
            "tasks": dict(soak.tasks),
            "hooks fired": f"{fired} ({sum(e.acked for e in events)} recorded, {repaired} fired again after a kill)",
            "scenes deleted": len(soak.deleted),
            "Plex edits": (f"{len(writes)}: {sum(chaos_from <= w.t < chaos_to for w in writes)} during the chaos, "
                           f"{sum(w.t >= chaos_to for w in writes)} after it"),
            "writes per scene": (f"mean {sum(per_scene.values()) / max(1, len(soak.owner)):.2f}, "
                                 f"max {max(per_scene.values(), default=0)}"),
            "save to Plex (s)": (f"worst {max(latencies, default=0):.1f}, p95 {percentile(latencies, 95):.1f}, "
                                 f"median {percentile(latencies, 50):.2f} over {len(latencies)} saves"),
            "dead letters": dict(Counter(dead.values())),
            "left for a save or task": unhelped or "nothing",
        }
        if not findings.ok:
            figures["Plex requests"] = str(dump_requests(st, work / "plex-requests.tsv"))
        return Report(seed, seconds, scenes, findings, figures)


def dump_requests(st: Stage, path: Path) -> Path:
    """Every request the emulated Plex answered, one per line (time, method, path, query,
    status), for reading a failed run's story; the query is already without the token."""
    with st.plex.lock:
        records = list(st.plex.requests)
    path.write_text("".join(f"{r.t:.3f}\t{r.method}\t{r.path}\t{r.query}\t{r.status}\n" for r in records),
                    encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=CI_SECONDS / 60, help="minutes of chaos (default 1)")
    parser.add_argument("--seed", type=int, default=None, help="the schedule's seed (default: a random one)")
    parser.add_argument("--scenes", type=int, default=240, help="library size (at least 200, the burst)")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1_000_000)
    report = run_soak(args.minutes * 60, seed, args.scenes, log=lambda m: print(m, flush=True))
    print(report.text())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
