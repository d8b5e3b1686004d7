"""Plex request budget of plex.sync against the emulated Plex, printed as a table: internals.

    .venv/bin/python bench/bench_plex_requests.py [--scenes N]

It calls `plex.sync.PlexSync` in this process, not the plugin as Stash runs it, and its
whole-library row prefetches pages of items first, which only Dry Run does: no row is the
cost of Sync All or of the drain (`bench_sync_all.py` measures those), and every printed
row says so.

Rows: first sync of one fully tagged scene (index amortised, i.e. built beforehand; tags,
performers with photos, rating, studio collection, cover), the same scene unchanged, the
same scene after its Stash rating changed (the rating rides in the one edit: no
`/:/rate`), a first sync whose cover Stash answers 404 for (no upload), and a whole-library
first sync without images (prefetch + sync per scene, every request counted including the
index and the server root). Limits from issue 6: <= 3 + images, <= 1 read and no write,
<= 1.2 per scene.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from base.settings import load_settings
from bench.figures import Figure, emit
from emulators.plex_server import PlexEmulator
from plex.connection import PlexConnection
from plex.sync import PlexSync
from stash.records import Performer, Scene, SceneFile, Studio

SETTINGS = load_settings({"plex_url": "x", "plex_token": "t", "path_map": "/data/stash=>/media/stash"},
                         warn=lambda m: None)


def scene(i: int, cover: str | None = "http://stash/scene/{i}/screenshot?t=1", rating100: int = 60) -> Scene:
    return Scene(id=i, title=f"Scene {i}", details="d" * 300, date="2021", code=f"C-{i}", rating100=rating100,
                 files=(SceneFile(f"/data/stash/lib/{i % 97}/{i}.mp4", 1000 + i, 60.0),),
                 studio=Studio("1", f"Studio {i % 7}"),
                 performers=tuple(Performer(str(p), f"Performer {p}", f"http://stash.lan/performer/{p}/image")
                                  for p in range(i % 5 + 1)),
                 tags=tuple(f"Tag {t}" for t in range(i % 20 + 5)),
                 screenshot_url=cover.format(i=i) if cover else None)


def run(n: int) -> list[tuple[str, float, str, bool]]:
    rows = []
    with PlexEmulator() as plex, tempfile.TemporaryDirectory() as tmp:
        for i in range(1, n + 1):
            plex.add_item(f"/media/stash/lib/{i % 97}/{i}.mp4", size=1000 + i)
        conn = PlexConnection(plex.url, plex.token, data_dir=Path(tmp))
        sync = PlexSync(conn, SETTINGS, lambda url: None if "/404/" in url else b"\x89PNG" + url.encode())
        sync.build_index(now=0.0)
        before = len(plex.requests)
        out = sync.sync(scene(1), None, now=1.0)
        cost = len(plex.requests) - before
        rows.append(("first sync, fully tagged, 2 images (index amortised)", cost, "<= 3 + 2", cost <= 5))
        before = len(plex.requests)
        sync.sync(scene(1), out.ledger, now=2.0)
        reads = len(plex.requests) - before
        writes = sum(1 for r in plex.requests[before:] if r.method != "GET")
        rows.append(("unchanged scene: requests (writes)", reads, f"<= 1 ({writes} writes)",
                     reads <= 1 and writes == 0))
        before = len(plex.requests)
        sync.sync(scene(1, rating100=85), out.ledger, now=3.0)
        cost = len(plex.requests) - before
        rates = sum(1 for r in plex.requests[before:] if r.path == "/:/rate")
        rows.append(("Stash rating changed: read + one edit", cost, f"<= 2 ({rates} /:/rate)",
                     cost <= 2 and rates == 0))
        before = len(plex.requests)
        gone = sync.sync(scene(2, cover="http://stash/404/{i}/screenshot"), None, now=4.0)
        cost = len(plex.requests) - before
        rows.append(("first sync, cover 404 in Stash: no upload", cost,
                     f"<= 3 ({len(gone.images_uploaded)} uploads)", cost <= 3 and not gone.images_uploaded))
    with PlexEmulator() as plex, tempfile.TemporaryDirectory() as tmp:
        for i in range(1, n + 1):
            plex.add_item(f"/media/stash/lib/{i % 97}/{i}.mp4", size=1000 + i)
        plex.reset_log()
        conn = PlexConnection(plex.url, plex.token, data_dir=Path(tmp))
        sync = PlexSync(conn, SETTINGS, lambda url: b"")
        scenes = [scene(i, None) for i in range(1, n + 1)]
        for start in range(0, n, 200):  # as a bulk run would: prefetch a page, then sync it
            chunk = scenes[start:start + 200]
            sync.prefetch(chunk, now=float(start))
            for s in chunk:
                sync.sync(s, None, now=float(start) + 1)
        per = len(plex.requests) / n
        rows.append((f"prefetch + sync, {n} scenes, no images: per scene", round(per, 3),
                     "<= 1.2", per <= 1.2))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scenes", type=int, default=2000)
    n = parser.parse_args().scenes
    rows = run(n)
    print("INTERNALS: plex.sync called in-process (the last row prefetches, as only Dry Run does);\n"
          "not the plugin's Sync All or drain path. Sync All's figures: bench/bench_sync_all.py\n")
    print(f"{'case':<74} {'requests':>9}  {'limit':<20} ok")
    for name, value, limit, ok in rows:
        print(f"{'internals: ' + name:<74} {value:>9}  {limit:<20} {'yes' if ok else 'NO'}")
    first, unchanged, _, _, bulk = rows
    emit(Figure("`plex.sync`, first sync of a fully tagged scene with poster and background",
                f"{first[1]} Plex requests (reload, edit, 2 uploads)", internals=True))
    emit(Figure("`plex.sync`, unchanged scene", f"{unchanged[1]} read, 0 writes", internals=True))
    emit(Figure(f"`plex.sync` after `prefetch`, {n:,} scenes without images (Dry Run reads this way; "
                f"Sync All's drain reads its batches alike, measured through the host in the first table)", f"{bulk[1]} Plex requests per scene", internals=True))
    return 0 if all(r[3] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
