"""Reconcile of a 100,000-scene library, printed as a table (Sync All: bench_sync_all.py).

    .venv/bin/python bench/bench_reconcile.py [--reconcile-scenes N] [--gaps N] [--profile DIR]

The task runs through the Stash host exactly as Stash runs them (the plugin is a
subprocess reading stdin and writing Stash's log protocol), against the emulated Stash and
Plex served from this process. Peak memory is the plugin process's peak resident set size
(VmHWM, sampled from /proc while it runs), so the emulators' own memory is not counted;
"plugin CPU s" is that process's user + system time (`getrusage(RUSAGE_CHILDREN)` deltas),
which a busy machine inflates less than the wall time (the emulators share this process's
CPU with each other, not with the plugin); "emulator CPU s" is this process's own (both
emulators answering the plugin), less the memory sampler's. Request counts are from the emulators' logs. `--profile DIR`
runs the plugin under cProfile, one `plugin-<pid>.prof` per run in DIR (it slows the plugin).

Reconcile rows: an unchanged library (every scene synced, Plex showing what we wrote), and
the same library with `--gaps` scenes of each gap type made beforehand (their drain is part
of the row). The 100,000-scene "synced" state is set up without the plugin: every item gets
the edit a sync would send (`plex.diff.plan_edit`, applied by the emulator's own edit
code) and every scene the ledger row a sync would record: a real Sync All of that size
would take most of the run.
"""

from __future__ import annotations

import argparse
import gc
import io
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from base.protocol import StashLog
from base.settings import load_settings
from bench.figures import Figure, emit
from bench.measure import PeakSampler, child_cpu_s, own_cpu_s, profiling_python, table
from emulators.stage import Stage, stage
from emulators.stash_library import generate_library
from plex.desired import desired_state
from plex.diff import plan_edit
from plex.records import CurrentState, LedgerEntry
from plex.scene_state import ledger_hash
from stash.client import StashClient
from sync_queue import ledger as ledger_table
from sync_queue.db import connect, write_txn
from sync_queue.schema import ensure_schema

QUIET = {"sync_poster": False, "sync_background": False, "trigger_plex_scan": False}


def presync(st: Stage) -> int:
    """Give every scene the Plex edit and the ledger row a first sync would leave; how many."""
    settings = load_settings(dict(st.settings), warn=lambda m: None)
    client = StashClient(st.stash.connection(), StashLog(io.StringIO()))
    conn = connect(st.data_dir)
    ensure_schema(conn)
    now = time.time()
    done = 0
    rows: list[tuple[Any, ...]] = []
    for scene in client.iter_scenes(page_size=1000):
        item = st.plex_item(scene.id)
        desired = desired_state(scene, settings)
        bare = CurrentState(rating_key=str(item.rating_key), section_id=str(item.section),
                            title=item.title or "", files=tuple(item.files))
        plan = plan_edit(desired, bare, None, lock=settings.lock_synced_fields, preserve=settings.preserve_plex_edits)
        if plan.params:
            with st.plex.lock:
                st.plex.library.edit(item.section, [item.rating_key],
                                     {k: str(v) for k, v in {**plan.params, "type": 1}.items()}, int(now))
        digest = ledger_hash(desired, settings, scene)
        record = LedgerEntry(plex_key=str(item.rating_key), state_hash=digest, written=dict(plan.written))
        rows.append((scene.id, digest, str(item.rating_key), record.to_dict()))
        done += 1
        if len(rows) >= 5000:
            _write_ledger(conn, rows, now)
    _write_ledger(conn, rows, now)
    conn.close()
    return done


def _write_ledger(conn: Any, rows: list[tuple[Any, ...]], now: float) -> None:
    with write_txn(conn) as txn:
        for scene_id, digest, key, written in rows:
            ledger_table.put(txn, scene_id, digest, key, None, None, written, now)
    rows.clear()


def make_gaps(st: Stage, per_type: int) -> None:
    """`per_type` scenes each: edited in Stash, lost by Plex, reset by an agent refresh,
    edited by hand in Plex, and new in Stash and Plex."""
    lib = st.library
    ids = [s for s in lib.sorted_ids() if lib.scenes[s].title and lib.scenes[s].details]
    stale, missing, empty, drifted = (ids[i * per_type:(i + 1) * per_type] for i in range(4))
    now = int(time.time())
    for sid in stale:
        lib.update_scene(sid, title=f"Renamed {sid}")
    with st.plex.lock:
        for sid in missing:
            st.plex.library.remove_item(st.plex_item(sid).rating_key)
        for sid in empty:
            st.plex.library.refresh(st.plex_item(sid).rating_key, now)
        for sid in drifted:
            item = st.plex_item(sid)
            item.fields["summary"] = "Typed in Plex"
            item.reindex()
        for section in st.plex.library.sections.values():
            section.order = None
    new = [lib.add_scene(files=[f"/data/stash/bench-new/{i}.mp4"], title=f"New {i}") for i in range(per_type)]
    st.scan_into_plex(new)


def run_task(st: Stage, mode: str) -> dict[str, Any]:
    st.plex.reset_log()
    st.stash.reset_log()
    cpu, served = child_cpu_s(), own_cpu_s()
    with PeakSampler() as peak:
        result = st.task(mode)
    cpu, served = child_cpu_s() - cpu, own_cpu_s() - served - peak.cpu_s
    if result.error is not None or not isinstance(result.output, dict):
        raise SystemExit(f"{mode} failed: {result.error}\n{result.stderr[-3000:]}")
    return {"wall": result.wall_time, "cpu": cpu, "served": served, "peak": peak.peak_mib, "stash": st.stash.count(),
            "plex": st.plex.count(), "plex_get": st.plex.count("GET"),
            "plex_item_reads": st.plex.count("GET", "/library/metadata"),
            "plex_writes": st.plex.count("PUT") + st.plex.count("POST"), "out": result.output}


def bench_reconcile(n: int, per_type: int, profile: Path | None = None) -> list[list[str]]:
    rows = []
    t0 = time.time()
    library = generate_library(n, seed=100)
    with stage(library=library, settings={**QUIET, "lock_synced_fields": False},
               work_dir=Path(tempfile.mkdtemp(prefix="s2p-bench-rec-")),
               python=profiling_python(profile, sys.executable) if profile else sys.executable) as st:
        synced = presync(st)
        print(f"(set-up: {n} scenes generated, {synced} pre-synced in {time.time() - t0:.0f} s)", file=sys.stderr)
        # The emulators' model of the library is built now and lives to the end: kept out of
        # the collector's full passes, which otherwise walk it again and again while the
        # emulators answer, on the cores the plugin runs on.
        gc.collect()
        gc.freeze()
        first = run_task(st, "reconcile_all")
        gaps = first["out"]["gaps"]
        if any(gaps.values()):
            print(f"warning: the unchanged library shows gaps {gaps}", file=sys.stderr)
        rows.append(_row(f"reconcile_all, {n} scenes, unchanged", first))
        print(f"(row: {rows[-1]})", file=sys.stderr, flush=True)
        emit(Figure(f"Reconcile of {n:,} unchanged scenes", _figure(first)))
        if per_type:
            make_gaps(st, per_type)
            second = run_task(st, "reconcile_all")
            rows.append(_row(f"reconcile_all, {n}+{per_type} scenes, {per_type} of each gap type", second))
            out = second["out"]
            emit(Figure(f"Reconcile of {n:,} scenes with {per_type:,} of each of five gap types, the drain included",
                        f"{_figure(second)}; queued {out['queued']:,}, synced {out['summary']['synced']:,}"))
    return rows


def _row(name: str, r: dict[str, Any]) -> list[str]:
    out = r["out"]
    gaps = " ".join(f"{k}={v}" for k, v in out["gaps"].items() if v) or "none"
    return [name, f"{r['wall']:.1f}", f"{r['cpu']:.1f}", f"{r['served']:.1f}", f"{r['peak']:.0f}", str(r["stash"]),
            f"{r['plex']} ({r['plex_item_reads']} item reads, {r['plex_writes']} writes)",
            f"{gaps}; queued {out['queued']}, synced {out['summary']['synced']}"]


def _figure(r: dict[str, Any]) -> str:
    return (f"{r['wall']:.0f} s (plugin {r['cpu']:.0f} s CPU, emulators {r['served']:.0f} s), {r['peak']:.0f} MiB, "
            f"{r['stash']:,} Stash and {r['plex']:,} Plex requests, {r['plex_writes']:,} writes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reconcile-scenes", type=int, default=100_000)
    parser.add_argument("--gaps", type=int, default=100, help="scenes per gap type in the second reconcile row")
    parser.add_argument("--profile", type=Path, help="run the plugin under cProfile, its profiles in this folder")
    args = parser.parse_args()
    print("Through the Stash host (plugin as a subprocess), emulators in this process.\n", flush=True)
    rec = bench_reconcile(args.reconcile_scenes, args.gaps, args.profile)
    print(table(["run", "wall s", "plugin CPU s", "emulator CPU s", "peak MiB", "Stash requests", "Plex requests", "result"], rec))


if __name__ == "__main__":
    main()
