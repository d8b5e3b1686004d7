"""Import Plex Watch History of 100,000 plays, printed as a table.

    .venv/bin/python bench/bench_watch_history.py [--plays N] [--scenes N] [--daily N]

The task runs through the Stash host exactly as Stash runs it, against the emulated Stash
and Plex served from this process. Rows: the first import of `--plays` history entries
spread over `--scenes` scenes (the sync ledger knows every item, as after a Sync All; a
tenth of the items also have a resume offset), a second run with nothing new, and a daily
run with `--daily` new plays. Peak memory is the plugin process's peak resident set
(VmHWM, sampled from /proc), so the emulators' memory is not counted; request counts are
from the emulators' logs; "in emulated Stash" is the time the emulated Stash spent
answering, most of the wall time (graphql-core runs each of the 100,000 mutations in Python).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.figures import Figure, emit
from bench.measure import PeakSampler, child_cpu_s
from emulators.stage import Stage, stage
from emulators.stash_library import generate_library
from sync_queue import ledger as ledger_table
from sync_queue.db import connect, write_txn
from sync_queue.schema import ensure_schema

SETTINGS = {"sync_poster": False, "sync_background": False, "trigger_plex_scan": False,
            "import_watch_history": True}
T0 = 1_600_000_020


def seed_ledger(st: Stage) -> None:
    """The ledger rows a Sync All would leave: here only the item key matters."""
    conn = connect(st.data_dir)
    ensure_schema(conn)
    now = time.time()
    with write_txn(conn) as txn:
        for sid in st.library.sorted_ids():
            ledger_table.put(txn, sid, "bench", str(st.plex_item(sid).rating_key), None, None, {}, now)
    conn.close()


def make_plays(st: Stage, plays: int, start: int) -> int:
    """`plays` history rows, round-robin over the scenes, 37 s apart; the next start time."""
    ids = st.library.sorted_ids()
    keys = [st.plex_item(sid).rating_key for sid in ids]
    for i in range(plays):
        st.plex.play(keys[i % len(keys)], start + 37 * i)
    return start + 37 * plays


class StashClock:
    """Seconds the emulated Stash spent answering GraphQL (graphql-core in Python is far
    slower than Stash's Go server, so this part of the wall time is the emulator's)."""

    def __init__(self, st: Stage) -> None:
        self.total = 0.0
        self._started: dict[int, float] = {}
        st.stash.faults.intercept = self.intercept

    def intercept(self, record: Any, phase: str) -> bool:
        if phase == "before":
            self._started[id(record)] = time.perf_counter()
        else:
            self.total += time.perf_counter() - self._started.pop(id(record), time.perf_counter())
        return False


def run(st: Stage) -> dict[str, Any]:
    st.plex.reset_log()
    st.stash.reset_log()
    clock = StashClock(st)
    cpu = child_cpu_s()
    with PeakSampler() as peak:
        result = st.task("import_watch_history")
    cpu = child_cpu_s() - cpu
    st.stash.faults.intercept = None
    if result.error is not None or not isinstance(result.output, dict):
        raise SystemExit(f"import failed: {result.error}\n{result.stderr[-3000:]}")
    return {"wall": result.wall_time, "cpu": cpu, "peak": peak.peak_kib / 1024.0, "stash": st.stash.count(),
            "stash_s": clock.total, "plex": st.plex.count(), "out": result.output["watch_history"]}


def row(name: str, r: dict[str, Any]) -> list[str]:
    out = r["out"]
    return [name, f"{r['wall']:.1f}", f"{r['stash_s']:.1f}", f"{r['cpu']:.1f}", f"{r['peak']:.0f}", str(r["stash"]),
            str(r["plex"]),
            f"read {out['read']}, added {out['added']}, resume points {out['resumes_set']}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--plays", type=int, default=100_000)
    parser.add_argument("--scenes", type=int, default=10_000)
    parser.add_argument("--daily", type=int, default=500)
    args = parser.parse_args()
    t0 = time.time()
    library = generate_library(args.scenes, seed=300)
    rows = []
    with stage(library=library, settings=SETTINGS, work_dir=Path(tempfile.mkdtemp(prefix="s2p-bench-watch-"))) as st:
        seed_ledger(st)
        next_at = make_plays(st, args.plays, T0)
        ids = st.library.sorted_ids()
        for sid in ids[::10]:
            st.plex.progress(st.plex_item(sid).rating_key, 60_000, next_at)
        print(f"(set-up: {args.scenes} scenes, {args.plays} plays in {time.time() - t0:.0f} s)", file=sys.stderr)
        first = run(st)
        if first["out"]["added"] != args.plays:
            raise SystemExit(f"first import added {first['out']['added']} of {args.plays} plays")
        rows.append(row(f"first import, {args.plays} plays over {args.scenes} scenes", first))
        again = run(st)
        rows.append(row("second run, nothing new", again))
        make_plays(st, args.daily, next_at + 3600)
        daily = run(st)
        rows.append(row(f"daily run, {args.daily} new plays", daily))
        total = sum(len(s.play_history) for s in st.library.scenes.values())
        if total != args.plays + args.daily:
            raise SystemExit(f"Stash holds {total} plays, Plex recorded {args.plays + args.daily}")
    head = ["run", "wall s", "in emulated Stash s", "plugin CPU s", "peak MiB", "Stash requests", "Plex requests",
            "result"]
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    for r in [head, ["-" * w for w in widths], *rows]:
        print("| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) + " |")
    emit(Figure(f"Import Plex Watch History, {args.plays:,} plays over {args.scenes:,} scenes",
                f"{first['wall']:.0f} s ({first['stash_s']:.0f} s of it answering in the emulated Stash), "
                f"plugin {first['cpu']:.1f} s CPU, peak {first['peak']:.0f} MiB, {first['stash']:,} Stash and "
                f"{first['plex']:,} Plex requests; a run with nothing new: {again['wall']:.1f} s, {again['stash']} "
                f"and {again['plex']}; with {args.daily:,} new plays: {daily['wall']:.1f} s"))


if __name__ == "__main__":
    main()
