"""Fan-out cost: expanding one performer/studio/tag event into jobs, printed as a table.

    .venv/bin/python bench/bench_fanout.py [--scenes 10000] [--share 0.2] [--ledger 100000]

Rows: a tag rename shown by `share` of a `scenes`-scene Stash library (listing by tag, paged
by id, ledger rule with the real state hash; Stash requests and wall time), the same event
again with every scene already in sync (all skipped), and a tag delete resolved through a
`ledger`-row ledger (one full scan inside SQLite, no Stash request).
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from base.protocol import StashLog
from base.settings import load_settings
from bench.figures import Figure, emit
from emulators.stash_library import StashLibrary, Tag
from emulators.stash_server import StashEmulator
from reconciliation.fanout import expand, state_function
from stash.client import StashClient
from sync_queue.inbox import record_event
from sync_queue.jobs import JobQueue
from sync_queue.ledger import LEDGER_REFS

T0 = 1_700_000_000.0


def library(scenes: int, share: float) -> StashLibrary:
    lib = StashLibrary()
    lib.tags[1] = Tag(id=1, name="Renamed")
    lib.tags[2] = Tag(id=2, name="Other")
    every = max(1, round(1 / share))
    for i in range(1, scenes + 1):
        lib.add_scene(files=[f"/data/stash/{i}.mp4"], title=f"Scene {i}", tag_ids=[1] if i % every == 0 else [2],
                      now=T0)
    return lib


def one_event(queue: JobQueue, data_dir: Path, kind: str, entity: int, reason: str):
    record_event(data_dir, kind, entity, reason, T0)
    (event,) = queue.ingest(T0).fanout
    return event


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scenes", type=int, default=10_000)
    parser.add_argument("--share", type=float, default=0.2)
    parser.add_argument("--ledger", type=int, default=100_000)
    args = parser.parse_args()
    settings = load_settings({"plex_url": "x", "plex_token": "t"}, warn=lambda m: None)
    state_of = state_function(settings)
    rows = []
    with tempfile.TemporaryDirectory() as tmp, StashEmulator(library(args.scenes, args.share)) as stash:
        data_dir = Path(tmp)
        queue = JobQueue(data_dir)
        client = StashClient(stash.connection(), StashLog(stream=io.StringIO()))
        client.gql("query { version { version } }")  # connect once (stashapi's start-up) outside the timing
        for label in ("tag rename, first", "tag rename, again (all unchanged)"):
            stash.reset_log()
            started = time.perf_counter()
            result = expand(one_event(queue, data_dir, "tag", 1, "Tag.Update.Post"), queue, client, state_of, T0)
            wall = time.perf_counter() - started
            rows.append((label, result.scenes, result.queued, stash.count(), wall))
            if label.endswith("first"):
                # As if every job ran: the ledger now holds what the scenes ask for.
                for scene in client.iter_scenes(None):
                    queue.ledger.put(scene.id, state_of(scene), str(scene.id), None, None, {}, T0)
                queue.clear_queue()
        queue.close()

    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        queue = JobQueue(data_dir)
        batch = 5000
        for start in range(1, args.ledger + 1, batch):
            for sid in range(start, min(start + batch, args.ledger + 1)):
                refs = {"performer": [sid % 97], "studio": [sid % 13], "tag": [7] if sid % 100 == 0 else [8, 9]}
                written = {"plex_key": str(sid), "written": {"genre": ["a", "b"], "title": f"S{sid}"},
                           LEDGER_REFS: refs}
                queue.ledger.put(sid, "h", str(sid), None, None, written, T0)
        started = time.perf_counter()
        result = expand(one_event(queue, data_dir, "tag", 7, "Tag.Destroy.Post"), queue, None, None, T0)  # type: ignore[arg-type]
        wall = time.perf_counter() - started
        rows.append((f"tag delete via a {args.ledger:,}-row ledger", result.scenes, result.queued, 0, wall))
        queue.close(compact=False)

    print(f"INTERNALS: reconciliation.fanout.expand called in-process, not the plugin as Stash runs it.\n"
          f"Fan-out of one event ({args.scenes:,} scenes in Stash, {args.share:.0%} carry the tag)\n")
    print("| case (internals) | affected | queued | Stash requests | wall time |")
    print("|---|---|---|---|---|")
    for label, scenes, queued, requests, wall in rows:
        print(f"| {label} | {scenes:,} | {queued:,} | {requests} | {wall:.2f} s |")
    (_, scenes, _, requests, wall), _, (_, _, _, requests_delete, wall_delete) = rows
    emit(Figure(f"tag rename touching {scenes:,} of {args.scenes:,} scenes",
                f"{requests} Stash requests, {wall:.1f} s to queue", internals=True))
    emit(Figure(f"tag delete resolved through a {args.ledger:,}-row ledger", f"{requests_delete} Stash requests, {wall_delete:.2f} s",
                internals=True))


if __name__ == "__main__":
    main()
